#!/usr/bin/env python
"""Build the tutorial notebooks from their reviewable sources, or check they are in sync.

The source of ``notebooks/NN_name.ipynb`` is ``notebooks/src/NN_name.py`` in the "percent"
format that Jupytext, VS Code and PyCharm read: ``# %%`` starts a code cell, ``# %% [markdown]``
a markdown cell (its lines start with ``# ``), and cell metadata follows the marker as
``key=<json>`` pairs, e.g. ``# %% tags=["check"] jupyter={"source_hidden": true}``.
Built notebooks carry no outputs and no execution counts, and their cell ids are stable, so a
diff of an ``.ipynb`` shows only what changed in the source.

    $ python scripts/build_notebooks.py            # src/*.py -> *.ipynb
    $ python scripts/build_notebooks.py --check    # exit 1 if a notebook differs from its source
    $ python scripts/build_notebooks.py --from-ipynb notebooks/03_steering.ipynb
                                                   # edited in Jupyter? write the change back to src/
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = NOTEBOOKS / "src"
HEADER = ("# Source of notebooks/{name}.ipynb: edit here, then run `python scripts/build_notebooks.py`\n"
          "# (cells: `# %%` code, `# %% [markdown]` text; metadata as key=<json> after the marker).\n")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
LANGUAGE_INFO = {"name": "python"}
MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?P<meta>.*)$")

# cell metadata kept when stripping (everything else is editor state: collapsed, scrolled, ...)
KEEP_CELL_METADATA = ("tags", "jupyter")


# ----------------------------------------------------------------------------- percent <-> cells
def _parse_meta(text: str, where: str) -> dict[str, Any]:
    """``tags=["check"] jupyter={"source_hidden": true}`` -> dict."""
    meta: dict[str, Any] = {}
    dec = json.JSONDecoder()
    i, text = 0, text.strip()
    while i < len(text):
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=", text[i:])
        if not m:
            raise ValueError(f"{where}: cannot read cell metadata {text[i:]!r}: write key=<json>")
        i += m.end()
        value, end = dec.raw_decode(text, i)
        meta[m.group(1)] = value
        i = end
    return meta


def _format_meta(meta: dict[str, Any]) -> str:
    return "".join(f" {k}={json.dumps(v, separators=(', ', ': '))}" for k, v in meta.items())


def parse_percent(text: str, where: str = "source") -> list[dict[str, Any]]:
    """Cells ``{"cell_type", "source", "metadata"}`` from a percent-format file."""
    cells: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    lines: list[str] = []

    def flush() -> None:
        if cur is None:
            return
        while lines and not lines[-1].strip():
            lines.pop()
        if cur["cell_type"] == "markdown":
            body = []
            for ln in lines:
                if ln == "#":
                    body.append("")
                elif ln.startswith("# "):
                    body.append(ln[2:])
                else:
                    raise ValueError(f"{where}: markdown line {ln!r} must start with '# ' (or be '#')")
            lines[:] = body
        cur["source"] = "\n".join(lines)
        cells.append(cur)

    for n, line in enumerate(text.splitlines(), 1):
        m = MARKER.match(line)
        if m:
            flush()
            cur = {"cell_type": "markdown" if m.group("md") else "code",
                   "metadata": _parse_meta(m.group("meta"), f"{where}:{n}")}
            lines = []
        elif cur is not None:
            lines.append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"{where}:{n}: code before the first '# %%' marker")
    flush()
    return cells


def to_percent(cells: list[dict[str, Any]], name: str) -> str:
    """The percent-format text of ``cells`` (inverse of :func:`parse_percent`)."""
    out = [HEADER.format(name=name)]
    for c in cells:
        src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
        meta = {k: v for k, v in c.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
        if c["cell_type"] == "markdown":
            body = "\n".join("#" if not ln else f"# {ln}" for ln in src.split("\n"))
            out.append(f"\n# %% [markdown]{_format_meta(meta)}\n{body}\n")
        else:
            out.append(f"\n# %%{_format_meta(meta)}\n{src}\n")
    return "".join(out)


# ----------------------------------------------------------------------------- notebooks
def strip(nb: Any) -> Any:
    """Remove outputs, execution counts and editor state from a notebook (in place); return it."""
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for c in nb.cells:
        c.metadata = {k: v for k, v in c.metadata.items() if k in KEEP_CELL_METADATA}
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
    return nb


def build(source: Path) -> Any:
    """The notebook (nbformat node) built from one percent-format source file."""
    import nbformat

    name = source.stem
    nb = nbformat.v4.new_notebook()
    for i, c in enumerate(parse_percent(source.read_text(encoding="utf-8"), str(source))):
        make = nbformat.v4.new_code_cell if c["cell_type"] == "code" else nbformat.v4.new_markdown_cell
        cell = make(c["source"], metadata=c["metadata"])
        cell.id = f"{name[:40]}-{i:02d}".replace(".", "-")
        nb.cells.append(cell)
    strip(nb)
    nbformat.validate(nb)
    return nb


def dumps(nb: Any) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def sources() -> list[Path]:
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="report notebooks that differ from their sources")
    ap.add_argument("--from-ipynb", nargs="+", metavar="NOTEBOOK",
                    help="write these notebooks' cells back to their percent sources")
    args = ap.parse_args(argv)
    if args.from_ipynb:
        import nbformat

        for p in map(Path, args.from_ipynb):
            nb = nbformat.read(str(p), as_version=4)
            target = SOURCES / f"{p.stem}.py"
            target.write_text(to_percent(nb.cells, p.stem), encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
        return 0
    bad = []
    for src in sources():
        out = NOTEBOOKS / f"{src.stem}.ipynb"
        text = dumps(build(src))
        if args.check:
            if not out.is_file() or out.read_text(encoding="utf-8") != text:
                bad.append(out.relative_to(ROOT))
        elif not out.is_file() or out.read_text(encoding="utf-8") != text:
            out.write_text(text, encoding="utf-8")
            print(f"wrote {out.relative_to(ROOT)}")
    if bad:
        print("out of date (run `python scripts/build_notebooks.py`): " + ", ".join(map(str, bad)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
