"""notebooks/linked_panels.ipynb (how panels link through a Selection) runs top to bottom."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "linked_panels.ipynb"


def test_notebook_is_stripped():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.smollm
def test_linked_panels_notebook_runs(tmp_path):
    path = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, path)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "assert dash.current == panel.current          # the dashboard followed the panel\n"
        "assert steering.rows and steering.result_id == steering.request_id\n"
        "assert graph.supernodes['top two'] == top\n"
        "import os; assert os.path.getsize('linked_panels.html') > 100_000\n"
        "print('IW_LINKED_OK')"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "IW_LINKED_OK" in out
