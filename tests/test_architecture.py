"""Architecture guard: imports go one way only, widgets -> analysis -> dictionaries -> models.

Reads every module's source with ``ast`` (lazy imports inside functions count too) and checks each
``interp_widgets`` import against the layer table below. See ../shared/STYLE.md, section 1.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import interp_widgets

PACKAGE = Path(interp_widgets.__file__).resolve().parent
BOTTOM = {"errors", "files", "corpus", "exercises"}  # importable by anything
# layer -> the layers it may import (besides itself and BOTTOM)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "files": set(),
    "corpus": set(),
    "exercises": set(),
    "models": set(),
    "dictionaries": {"models"},
    "analysis": {"models", "dictionaries"},
    "widgets": {"models", "dictionaries", "analysis"},
    "cli": {"models", "dictionaries", "analysis", "widgets"},
    "__init__": set(),  # the public API map imports lazily, by name (checked below)
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_static" not in p.parts)


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module name that ``path`` imports from interp_widgets (with line numbers)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _dotted(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None or mod == "interp_widgets":
                # `from . import x` / `from interp_widgets import x`: x may be a submodule
                for a in node.names:
                    sub = PACKAGE.parent.joinpath(*mod.split("."), a.name)
                    is_module = sub.is_dir() or sub.with_suffix(".py").is_file()
                    found.append((node.lineno, f"{mod}.{a.name}" if is_module else mod))
            else:
                found.append((node.lineno, mod))
    return [(n, m) for n, m in found if m == "interp_widgets" or m.startswith("interp_widgets.")]


def _violations() -> list[str]:
    out = []
    for path in _modules():
        me = _layer(_dotted(path))
        if me not in ALLOWED:
            out.append(f"{path.relative_to(PACKAGE)}: unknown layer {me!r}; add it to ALLOWED")
            continue
        for line, target in _imports(path):
            them = _layer(target)
            if them in (me, *BOTTOM) or them in ALLOWED[me] or them == "__init__":
                continue
            out.append(f"{path.relative_to(PACKAGE)}:{line}: {me} imports {target} ({them} is above {me})")
    return out


def test_imports_go_one_way_only():
    bad = _violations()
    assert not bad, "layering violations (widgets -> analysis -> dictionaries -> models):\n" + "\n".join(bad)


def test_the_guard_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself must catch what it is meant to catch."""
    fake = tmp_path / "interp_widgets"
    (fake / "models").mkdir(parents=True)
    (fake / "widgets").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "widgets" / "__init__.py").write_text("")
    (fake / "models" / "__init__.py").write_text("from .. import widgets\n")
    (fake / "models" / "bad.py").write_text(
        "def f():\n    from ..analysis.steering import steer\n    import interp_widgets.dictionaries.base\n"
    )
    (fake / "models" / "ok.py").write_text("from ..errors import SiteError\nfrom .sites import Site\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    bad = "\n".join(_violations())
    assert "models/__init__.py:1: models imports interp_widgets.widgets" in bad
    assert "models/bad.py:2: models imports interp_widgets.analysis.steering" in bad
    assert "models/bad.py:3: models imports interp_widgets.dictionaries.base" in bad
    assert "ok.py" not in bad


def test_widgets_never_touch_torch():
    """A widget calls analysis, which owns the tensors (STYLE.md: widgets render, they don't compute)."""
    bad = []
    for path in _modules():
        if _layer(_dotted(path)) != "widgets":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            bad += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {n}" for n in names if n.split(".")[0] == "torch"]
    assert not bad, "widgets import torch:\n" + "\n".join(bad)


def test_public_api_map_points_inside_the_package():
    for name, target in interp_widgets._LAZY.items():
        module = target.removesuffix(":module")
        assert module.startswith("interp_widgets."), (name, target)
        assert _layer(module) in ALLOWED, (name, target)


@pytest.mark.parametrize(
    "code",
    [
        "import interp_widgets",
        "import interp_widgets as iw; iw.errors.SiteError; iw.__version__",
        "from interp_widgets import errors",
    ],
)
def test_importing_the_package_does_not_import_torch(code):
    out = subprocess.run(
        [sys.executable, "-c", code + "; import sys; print(sorted(m for m in ('torch', 'transformers', "
         "'nnsight', 'anywidget', 'plotly', 'pandas') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"`{code}` imported heavy modules: {out.stdout.strip()}"


def test_lazy_names_resolve_on_first_use():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, interp_widgets as iw; iw.Site; print('torch' in sys.modules, iw.Site.__module__)"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "interp_widgets.models.sites"]
