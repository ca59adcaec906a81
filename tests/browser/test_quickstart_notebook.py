"""notebooks/01_quickstart.ipynb in JupyterLab: run every cell in chromium, and find every panel
rendered with its data (logit lens chart, coloured feature tokens, steered text, circuit canvas).

Opens its own page in the session's JupyterLab (the shared ``nb`` page stays on its notebook).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from harness import ARTIFACTS, Notebook, screenshot

pytestmark = pytest.mark.smollm

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "01_quickstart.ipynb"
PANELS = {"lens": "iw.LogitLens(", "features": "iw.FeaturePanel(", "steering": "iw.SteeringPanel(",
          "circuit": "iw.CircuitView("}


class _OwnPage:
    """The session's Lab, seen through another chromium page (what Notebook needs of a Lab)."""

    def __init__(self, lab, page):
        self._lab, self.page = lab, page
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def __getattr__(self, name):
        return getattr(self._lab, name)


@pytest.fixture(scope="module")
def quickstart(lab):
    cells = nbformat.read(str(QUICKSTART), as_version=4).cells
    shutil.copy(QUICKSTART, lab.root / QUICKSTART.name)
    page = lab.context.new_page()
    view = _OwnPage(lab, page)
    nb = Notebook(view, QUICKSTART.name, sum(c.cell_type == "code" for c in cells))
    where = {k: next(i for i, c in enumerate(cells) if marker in c.source) for k, marker in PANELS.items()}
    yield nb, where, cells, view
    nb.close()
    page.close()


def test_quickstart_runs_in_jupyterlab_and_every_panel_renders(quickstart):
    nb, where, cells, view = quickstart
    page = nb.page
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # the last code cell (the exercise checks) defines CHECKS: every cell before it has run
    nb.wait_kernel("'CHECKS' in globals()", bool, timeout=900, what="the quickstart to run to its last cell")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t.split("\n")[0]]
    assert not tracebacks, "a quickstart cell failed:\n" + "\n---\n".join(tracebacks)
    assert nb.kernel_eval("[lens.error, features.error, steering.error, circuit.error]") == ["", "", "", ""]

    # logit lens: the heatmap is drawn, one token chip per prompt token
    lens = nb.panel(where["lens"])
    lens.locator(".iw-lens-chart[data-drawn='1'] .main-svg").first.wait_for(timeout=60_000)
    assert lens.locator(".iw-lens-tokens .iw-tok").count() == len(nb.kernel_eval("lens.tokens"))

    # feature panel: tokens coloured, the clicked token's features listed, the card open
    feats = nb.panel(where["features"])
    n_tokens = len(nb.kernel_eval("features.tokens"))
    page.wait_for_function("([el, n]) => el.querySelectorAll('.iw-fp-tokens .iw-tok').length === n",
                           arg=[feats.element_handle(), n_tokens], timeout=60_000)
    want = nb.kernel_eval("[r['feature'] for r in features.token_features]")
    page.wait_for_function("([el, n]) => el.querySelectorAll('.iw-token-features .iw-item').length === n",
                           arg=[feats.element_handle(), len(want)], timeout=60_000)
    assert feats.locator(".iw-token-features .iw-item").first.get_attribute("data-feature") == str(want[0])
    feats.locator(".iw-card-id").first.wait_for(timeout=60_000)

    # steering panel: baseline and steered continuations, differing tokens marked as in Python
    steer = nb.panel(where["steering"])
    want_tokens = nb.kernel_eval("list(steering.steered)")
    page.wait_for_function("([el, n]) => el.querySelectorAll('.iw-steered-out .iw-steer-tok').length === n",
                           arg=[steer.element_handle(), len(want_tokens)], timeout=60_000)
    differs = nb.kernel_eval("steering.differs")
    got = steer.locator(".iw-steered-out .iw-steer-tok")
    assert [got.nth(i).get_attribute("data-differs") == "1" for i in range(len(want_tokens))] == differs

    # circuit view: the canvas drew the pruned graph, and the browser's pruning agrees with Python
    circuit = nb.panel(where["circuit"])
    page.wait_for_function("(el) => Number(el.dataset.drawn || 0) >= 1 && Number(el.dataset.visibleNodes) > 0",
                           arg=circuit.element_handle(), timeout=60_000)
    visible = nb.kernel_eval("circuit.visible_count")
    assert [int(circuit.get_attribute("data-visible-nodes")), int(circuit.get_attribute("data-visible-edges"))] == visible

    for name in PANELS:
        screenshot(nb.panel(where[name]), f"quickstart_{name}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "quickstart_notebook.png"), full_page=True)
    assert not [m for m in view.console if m.startswith("pageerror")], view.console
