"""The notebook the browser suite opens: one cell per panel, on tiny in-process models."""

from __future__ import annotations

from pathlib import Path

XSS = '<img src=x onerror="window.__iw_pwned=1"><script>window.__iw_pwned=2</script>'
TOY_GRAPH = (Path(__file__).parent.parent / "widgets" / "toy_graph.py").read_text()

SETUP = f"""
import json
import interp_widgets as iw
model = iw.load_model("tiny-llama")
XSS = {XSS!r}
"""

CELLS: dict[str, str] = {
    "setup": SETUP,
    "toy_graph": TOY_GRAPH,
    "lens": "lens = iw.LogitLens(model, 'Hello world, this is')\nlens",
    "graph": "graph = toy_graph(600, 5000, n_layers=6, n_pos=8, seed=1)\nview = iw.CircuitView(graph, selection=iw.Selection())\nview",
    "lens_xss": "lens_xss = iw.LogitLens(model, XSS)\nlens_xss",
    "graph_xss": "gx = toy_graph(40, 100, tokens=[XSS, ' b', XSS])\ngx.nodes.loc[5, 'label'] = XSS\nview_xss = iw.CircuitView(gx, selection=iw.Selection(), node_threshold=1.0)\nview_xss",
}


def index(name: str) -> int:
    return list(CELLS).index(name)
