"""The README's quickstart must stay true: its Python block runs as written on the default model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_quickstart_and_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert _python_blocks(), "README must show a Python quickstart"
    quick = _python_blocks()[0]
    code_lines = [ln for ln in quick.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(code_lines) <= 12, "the quickstart should stay about ten lines"


@pytest.mark.smollm
def test_readme_quickstart_runs(smollm, monkeypatch):
    import interp_widgets as iw

    quick = _python_blocks()[0]
    # reuse the session's model instead of loading a second copy
    monkeypatch.setattr(iw, "load_model", lambda *a, **k: smollm)
    ns: dict = {}
    exec(compile(quick, str(README) + ":quickstart", "exec"), ns)
    model = ns["model"]
    out = model.generate("The Eiffel Tower is in the city of", max_new_tokens=5)
    assert "Paris" in out[0]  # the comment in the README claims this continuation
    assert ns["cache"]["resid_post.12"].shape[-1] == model.d_model


def test_readme_starter_pack_block_runs():
    import interp_widgets as iw

    block = next(b for b in _python_blocks() if 'load_transcoders("starter")' in b)
    ns: dict = {"iw": iw}
    exec(compile(block, str(README) + ":starter", "exec"), ns)
    assert str(ns["sae"].site) == "resid_post.12" and ns["sae"].labels
    assert ns["transcoders"].layers == list(range(30))
    assert "STARTER_SUMMARY" not in README.read_text(encoding="utf-8")
