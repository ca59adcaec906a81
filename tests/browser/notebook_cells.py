"""The notebook the browser suite opens: one cell per panel, on tiny in-process models."""

from __future__ import annotations

from pathlib import Path

XSS = '<img src=x onerror="window.__iw_pwned=1"><script>window.__iw_pwned=2</script>'
TOY_GRAPH = (Path(__file__).parent.parent / "widgets" / "toy_graph.py").read_text()

SETUP = f"""
import json
import interp_widgets as iw
model = iw.load_model("tiny-llama")
sae = iw.SAE.random(d_in=model.d_model, n_features=96, site="resid_post.1", architecture="topk", k=6, seed=1)
sae.name = "sae.L1"
sae.labels[5] = "cats and mats"
TEXTS = ["The cat sat on the mat. The dog sat on the log.", "Paris is the capital of France."] * 6
index = iw.scan(model, sae, iw.Corpus.from_strings(TEXTS), max_tokens=400, seq_len=16, window=8, top_k=6,
                batch_size=4, progress=False)
sel = iw.Selection()
XSS = {XSS!r}
"""

CELLS: dict[str, str] = {
    "setup": SETUP,
    "toy_graph": TOY_GRAPH,
    "lens": "lens = iw.LogitLens(model, 'Hello world, this is')\nlens",
    "graph": "graph = toy_graph(600, 5000, n_layers=6, n_pos=8, seed=1)\nview = iw.CircuitView(graph, selection=iw.Selection())\nview",
    "features": "panel = iw.FeaturePanel(model, sae, prompt='The cat sat on the mat', index=index, selection=sel)\npanel",
    "dashboard": "dash = iw.FeatureDashboard(sae, 5, index=index, selection=sel)\ndash",
    "steering": "steering = iw.SteeringPanel(model, sae, prompt='The cat sat on the', steers=[sae[5]], max_new_tokens=8, selection=sel)\nsteering",
    "xss": (
        "sae.labels[7] = XSS\n"
        "gx = toy_graph(40, 100, tokens=[XSS, ' b', XSS])\n"
        "gx.labels[gx.nodes['node_id'][12]] = XSS\n"
        "xsel = iw.Selection()\n"
        "xss_panels = [iw.LogitLens(model, XSS), iw.FeaturePanel(model, sae, prompt=XSS, selection=xsel),\n"
        "              iw.FeatureDashboard(sae, 7, index=index, selection=xsel),\n"
        "              iw.SteeringPanel(model, sae, prompt=XSS, steers=[sae[7]], max_new_tokens=4, selection=xsel),\n"
        "              iw.CircuitView(gx, selection=xsel, node_threshold=1.0)]\n"
        "import ipywidgets\n"
        "ipywidgets.VBox(xss_panels)"
    ),
}


def index(name: str) -> int:
    return list(CELLS).index(name)
