"""Running the tutorial notebooks with nbclient on a kernel of this project's Python.

    >>> run = execute_notebook(NOTEBOOKS / "01_quickstart.ipynb", tmp_path, kernel_name)
    >>> run.seconds, run.kernel_cpu_seconds, run.notebook.cells[3].outputs
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL_NAME = "interp-widgets-venv"
TIMINGS: dict[str, dict[str, float]] = {}

# Appended to the executed copy only: every exercise check must accept its solution and reject
# a wrong answer, and the kernel reports the CPU time it used (wall time alone misleads on a
# loaded machine).
VERIFY_CELL = """
import json as _json, resource as _resource
for _n, (_check, _solution, _wrong) in CHECKS.items():
    _check(_solution)
    try:
        _check(_wrong)
    except AssertionError:
        pass
    else:
        raise AssertionError(f"the check of exercise {_n} accepts the wrong answer {_wrong!r}")
_ru = _resource.getrusage(_resource.RUSAGE_SELF)
print("IW_VERIFY " + _json.dumps({"checks": len(CHECKS), "cpu_s": _ru.ru_utime + _ru.ru_stime,
                                   "max_rss_mb": _ru.ru_maxrss / 1024}))
"""


@dataclass
class Run:
    notebook: Any
    seconds: float
    checks: int
    kernel_cpu_seconds: float
    max_rss_mb: float


def install_kernelspec(root: Path) -> Path:
    """A kernelspec that starts ipykernel with this interpreter (the project venv), under root."""
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (interp_widgets venv)", "language": "python",
        "metadata": {"debugger": False},
    }))
    return root


def execute_notebook(path: Path, workdir: Path, kernel_name: str, *, cell_timeout: int = 600) -> Run:
    """Execute a copy of the notebook in ``workdir``; raises nbclient's CellExecutionError (with
    the failing cell and its traceback) on the first error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(VERIFY_CELL))
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=cell_timeout, allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}}, record_timing=True)
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    line = next((ln for ln in text.splitlines() if ln.startswith("IW_VERIFY ")), None)
    if line is None:
        raise AssertionError(f"{path.name}: the verification cell printed nothing: {text[-500:]!r}")
    info = json.loads(line[len("IW_VERIFY "):])
    return Run(nb, seconds, int(info["checks"]), float(info["cpu_s"]), float(info["max_rss_mb"]))


