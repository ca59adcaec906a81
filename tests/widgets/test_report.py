"""Static HTML export and the render report (tiny model): self-contained, offline, escaped."""

from __future__ import annotations

import json
import re

from toy_graph import toy_graph

import interp_widgets as iw
from interp_widgets.cli import main as cli_main
from interp_widgets.widgets.report import CSP, static_html, write_static_html

XSS = '<img src=x onerror="window.__iw_pwned=1"></script><script>window.__iw_pwned=2</script>'


def _state(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="iw-state">(.*?)</script>', page, re.S)
    assert m, "no state block"
    return json.loads(m.group(1))


def test_static_page_is_self_contained_and_escaped(tiny_llama):
    lens = iw.LogitLens(tiny_llama, XSS)
    view = iw.CircuitView(toy_graph(60, 200), selection=iw.Selection())
    page = static_html([lens, view], title="t <b>", subtitle=XSS)
    assert CSP in page and "default-src 'none'" in CSP
    assert "http://" not in page and "https://" not in page          # nothing to fetch
    assert "<img" not in page and page.count("<script") == 2          # only our two script blocks
    assert "t &lt;b&gt;" in page
    st = _state(page)
    assert set(st["models"]) >= {lens.model_id, view.model_id}
    lm = st["models"][lens.model_id]
    assert lm["prompt"] == XSS and lm["tokens"] == lens.tokens
    assert "$b64" in lm["top_probs"] and "$b64" in st["models"][view.model_id]["edge_w"]
    plotly_id = lm["_plotly"][len("IPY_MODEL_"):]
    assert len(st["models"][plotly_id]["source_gz"]["$b64"]) > 1_000_000   # plotly.js, once
    assert page.count('"source_gz"') == 1


def test_to_html_and_cli_render(tiny_llama, tmp_path, capsys):
    lens = iw.LogitLens(tiny_llama, "Hello")
    out = lens.to_html(tmp_path / "lens.html")
    assert out.is_file() and _state(out.read_text())["panels"] == [{"id": lens.model_id}]
    assert write_static_html([lens], tmp_path / "sub" / "x.html").is_file()
    rc = cli_main(["render", "--prompt", "The cat sat on the", "--out", str(tmp_path / "r.html"), "--model", "tiny-llama"])
    assert rc == 0
    page = (tmp_path / "r.html").read_text()
    st = _state(page)
    kinds = [st["models"][p["id"]]["_anywidget_id"].rsplit(".", 1)[-1] for p in st["panels"]]
    assert kinds == ["LogitLens", "FeaturePanel", "FeatureDashboard", "SteeringPanel", "CircuitView"]
    steer = st["models"][st["panels"][3]["id"]]
    assert steer["result_id"] == 1 and steer["steered"] and steer["baseline"]
    graph = st["models"][st["panels"][4]["id"]]
    assert len(graph["node_ids"]) > 10 and graph["selected"]
    assert "wrote" in capsys.readouterr().out
