"""Every tutorial notebook runs top to bottom on the embedded SmolLM2 with nbclient.

A failing cell fails the test with its traceback; the asserts inside the notebooks tie the prose
to what the model does; every exercise check accepts its solution and rejects a wrong answer.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbrun import NOTEBOOKS, TIMINGS, execute_notebook

pytestmark = [pytest.mark.notebooks, pytest.mark.smollm]

NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, notebook_kernel, tmp_path):
    run = execute_notebook(NOTEBOOKS / name, tmp_path, notebook_kernel)
    TIMINGS[name] = {"seconds": run.seconds, "cpu": run.kernel_cpu_seconds, "rss": run.max_rss_mb}
    keep = os.environ.get("IW_NOTEBOOK_OUTPUTS")  # a folder to keep the executed copies in (CI artifacts)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        nbformat.write(run.notebook, str(Path(keep) / name))
    assert run.checks >= 2, f"{name} has {run.checks} exercise checks"
    code = [c for c in run.notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    # nothing wrote to stderr but progress bars and known-harmless warnings
    errs = [o["text"] for c in code for o in c.outputs
            if o.get("output_type") == "stream" and o.get("name") == "stderr" and "Traceback" in o["text"]]
    assert not errs, errs
