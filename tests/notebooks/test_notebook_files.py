"""The committed notebooks: built from their sources, outputs stripped, shaped like lessons.

Fast (no kernel): runs with the unit tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
from nbrun import NOTEBOOKS, ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import build_notebooks as bn  # noqa: E402

EXPECTED = ["01_quickstart", "02_features", "03_steering", "04_circuits", "05_biology",
            "06_your_model_and_ndif"]
PATHS = [NOTEBOOKS / f"{n}.ipynb" for n in EXPECTED]


def _read(path):
    return nbformat.read(str(path), as_version=4)


def test_every_tutorial_exists_with_a_source():
    assert [p.stem for p in bn.sources()] == EXPECTED
    assert sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) == EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=EXPECTED)
def test_committed_notebook_has_no_outputs(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    for i, c in enumerate(raw["cells"]):
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None, f"cell {i} has outputs"
        assert set(c.get("metadata", {})) <= set(bn.KEEP_CELL_METADATA), f"cell {i}: {c['metadata']}"
    assert raw["metadata"]["kernelspec"]["name"] == "python3"
    nbformat.validate(_read(path))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_notebook_in_the_folder_is_stripped(path):
    """Also notebooks without a percent source (e.g. linked_panels.ipynb)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(raw["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; strip them (scripts/build_notebooks.strip)"
    assert "widgets" not in raw["metadata"], f"{path.name} carries saved widget state"


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_matches_its_source(name):
    built = bn.dumps(bn.build(bn.SOURCES / f"{name}.py"))
    assert (NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8") == built, (
        f"notebooks/{name}.ipynb differs from notebooks/src/{name}.py: run "
        f"`python scripts/build_notebooks.py` (or --from-ipynb after editing in Jupyter)")


@pytest.mark.parametrize("path", PATHS, ids=EXPECTED)
def test_notebook_is_a_lesson(path):
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "**You will learn**" in first.source
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Exercises" in md
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert len(checks) == 1, "one hidden check cell with the exercise checks"
    check = checks[0]
    assert check.cell_type == "code" and check.metadata["jupyter"] == {"source_hidden": True}
    assert "CHECKS = {" in check.source
    # the check cell comes after the exercises and their answer cell
    i = nb.cells.index(check)
    assert any(c.cell_type == "markdown" and "## Exercises" in c.source for c in nb.cells[:i])
    assert "answer_1 = ..." in nb.cells[i - 1].source


def test_quickstart_has_under_ten_code_cells_and_one_cell_per_panel():
    nb = _read(NOTEBOOKS / "01_quickstart.ipynb")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) < 10
    for panel in ("iw.LogitLens(", "iw.FeaturePanel(", "iw.SteeringPanel(", "iw.CircuitView("):
        assert sum(panel in c for c in code) == 1, panel


def test_percent_round_trip_and_strip(tmp_path):
    for src in bn.sources():
        nb = bn.build(src)
        assert bn.parse_percent(bn.to_percent(nb.cells, src.stem)) == [
            {"cell_type": c.cell_type, "source": c.source, "metadata": dict(c.metadata)} for c in nb.cells]
        assert bn.to_percent(nb.cells, src.stem) == src.read_text(encoding="utf-8")
    # an executed notebook with editor state strips back to the built one
    nb = bn.build(bn.SOURCES / "01_quickstart.py")
    dirty = nbformat.from_dict(json.loads(bn.dumps(nb)))
    dirty.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for c in dirty.cells:
        c.metadata["collapsed"] = False
        if c.cell_type == "code":
            c.execution_count = 3
            c.outputs = [nbformat.v4.new_output("stream", text="hi")]
    assert bn.dumps(bn.strip(dirty)) == bn.dumps(nb)


def test_percent_parser_reports_bad_input():
    with pytest.raises(ValueError, match="markdown line"):
        bn.parse_percent("# %% [markdown]\nnot a comment\n")
    with pytest.raises(ValueError, match="key=<json>"):
        bn.parse_percent("# %% tags\nx = 1\n")
    with pytest.raises(ValueError, match="before the first"):
        bn.parse_percent("x = 1\n# %%\ny = 2\n")


def test_build_script_check_mode_passes_on_the_committed_tree():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_notebooks.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
