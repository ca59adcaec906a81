"""CircuitView payload and drawing in chromium (Debian's, driven by Playwright).

Cases, for random attribution graphs of 1k / 5k / 20k nodes with 20 edges per node (quick: 1k):
- bytes sent per edge: our binary buffers (uint16/uint32 indices + float32 weight) vs the JSON
  lists a `.tolist()` widget would send (``baseline`` column holds the JSON size, in bytes).
- first draw of a static page (no kernel): decode the buffers, lay out, prune, draw on canvas,
  vs the same edges drawn as one SVG ``<line>`` per edge (what a d3-style view does) from the
  same buffers. Both wait for the next animation frame after drawing.
- full runs only: in JupyterLab, the time from executing ``CircuitView(graph)`` in a cell to the
  canvas being drawn (kernel -> websocket -> browser), and the redraw time after a pan.

    python -m benchmarks widget_payload            # full (by hand; starts JupyterLab)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import compare, machine

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "widgets"), str(ROOT / "tests" / "browser")]

SVG_PAGE = """<!doctype html><html><body><div id="host"></div><script>
window.drawSvg = (srcB64, dstB64, wB64, idxBytes, nNodes, layers, pos, nLayers, nPos) => {
  const dec = (b) => { const s = atob(b); const u = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return u.buffer; };
  const I = idxBytes === 2 ? Uint16Array : Uint32Array;
  const src = new I(dec(srcB64)), dst = new I(dec(dstB64)), w = new Float32Array(dec(wB64));
  const L = new Int32Array(dec(layers)), P = new Int32Array(dec(pos));
  const W = 900, H = 560, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg"); svg.setAttribute("width", W); svg.setAttribute("height", H);
  const x = (i) => 40 + (P[i] + 0.5) * (W - 50) / nPos + (i % 7) * 3, y = (i) => H - 40 - (L[i] + 1.5) * (H - 60) / (nLayers + 2);
  let m = 1e-9; for (let e = 0; e < w.length; e++) m = Math.max(m, Math.abs(w[e]));
  for (let e = 0; e < w.length; e++) {
    const l = document.createElementNS(ns, "line");
    l.setAttribute("x1", x(src[e])); l.setAttribute("y1", y(src[e])); l.setAttribute("x2", x(dst[e])); l.setAttribute("y2", y(dst[e]));
    l.setAttribute("stroke", w[e] >= 0 ? "rgb(255,127,14)" : "rgb(31,119,180)");
    l.setAttribute("stroke-opacity", 0.2 + 0.6 * Math.abs(w[e]) / m);
    svg.appendChild(l);
  }
  document.getElementById("host").replaceChildren(svg);
  return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(svg.childNodes.length))));
};
</script></body></html>"""


def _graph(n: int, quick: bool) -> Any:
    from toy_graph import toy_graph

    return toy_graph(n, 20 * n, n_layers=12 if quick else 30, n_pos=16, seed=0)


def _json_bytes(view: Any) -> int:
    return len(json.dumps([view._src.tolist(), view._dst.tolist(), view._w.tolist()]).encode())


def run(quick: bool) -> list[dict]:
    import base64

    from harness import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    import interp_widgets as iw
    from interp_widgets.widgets.report import write_static_html

    sizes = [1000] if quick else [1000, 5000, 20_000]
    repeats = 1 if quick else 5
    out: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="iw-bench-"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for n in sizes:
            g = _graph(n, quick)
            view = iw.CircuitView(g, selection=iw.Selection())
            m = len(view._w)
            # -- bytes per edge (binary vs JSON)
            ours_b = view.bytes_per_edge
            json_b = _json_bytes(view) / m
            out.append({"name": f"circuit payload bytes/edge, {n} nodes / {m} edges",
                        "ours_median_s": None, "baseline_median_s": None, "ratio": ours_b / json_b,
                        "ours_bytes_per_edge": ours_b, "baseline_bytes_per_edge": json_b,
                        "notes": f"ours {ours_b:.1f} B/edge (binary buffers) vs {json_b:.1f} B/edge as JSON lists; "
                                 f"ratio is bytes, not time", "machine": machine()})
            # -- first draw, static page (no kernel)
            html_path = write_static_html([view], tmp / f"g{n}.html", title=f"{n} nodes")
            draw_ms: list[float] = []

            def ours(html_path: Path = html_path, draw_ms: list[float] = draw_ms) -> None:
                page.goto(html_path.as_uri())
                page.wait_for_function("() => { const el = document.querySelector('.iw-panel'); return el && Number(el.dataset.drawn || 0) >= 1; }",
                                       timeout=120_000)
                page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r()))")
                draw_ms.append(float(page.locator(".iw-panel").get_attribute("data-draw-ms")))

            b64 = {k: base64.b64encode(bytes(getattr(view, k))).decode() for k in ("edge_src", "edge_dst", "edge_w", "node_layer", "node_pos")}

            def baseline(b64: dict[str, str] = b64, view: Any = view) -> None:
                page.set_content(SVG_PAGE)
                page.evaluate("(a) => drawSvg(...a)", [b64["edge_src"], b64["edge_dst"], b64["edge_w"], view.edge_index_bytes,
                                                        len(view.node_ids), b64["node_layer"], b64["node_pos"], view.n_layers, len(view.tokens)])

            r = compare(f"CircuitView first draw (static page), {n} nodes / {m} edges", ours=ours, baseline=baseline,
                        repeats=repeats, warmup=1 if not quick else 0, units=m, unit_name="edges")
            r["canvas_draw_ms_median"] = statistics.median(draw_ms)
            r["all_edges_draw_ms_median"] = _all_edges_draw_ms(page, html_path, 1 if quick else 5)
            r["html_bytes"] = html_path.stat().st_size
            r["notes"] = (f"ours: load page, decode base64 buffers, layout, prune, canvas draw (draw itself "
                          f"{r['canvas_draw_ms_median']:.0f} ms pruned, {r['all_edges_draw_ms_median']:.0f} ms with all "
                          f"{m} edges shown); baseline: same buffers drawn as one SVG <line> per edge")
            r["machine"] = machine()
            out.append(r)
        browser.close()
    if not quick:
        out += _jupyterlab_times(sizes, tmp)
    return out


def _all_edges_draw_ms(page: Any, html_path: Path, repeats: int) -> float:
    """Canvas redraw time with pruning off (every edge drawn), via the sliders, median of pans."""
    page.goto(html_path.as_uri())
    page.wait_for_function("() => { const el = document.querySelector('.iw-panel'); return el && Number(el.dataset.drawn || 0) >= 1; }",
                           timeout=120_000)
    page.locator("input.iw-node-thr").fill("1")
    page.locator("input.iw-edge-thr").fill("1")
    times = []
    for _ in range(repeats):
        n0 = int(page.locator(".iw-panel").get_attribute("data-drawn"))
        box = page.locator("canvas.iw-graph-overlay").bounding_box()
        page.mouse.move(box["x"] + 300, box["y"] + 300)
        page.mouse.down()
        page.mouse.move(box["x"] + 330, box["y"] + 310, steps=1)
        page.mouse.up()
        page.wait_for_function("(n) => Number(document.querySelector('.iw-panel').dataset.drawn) > n", arg=n0)
        times.append(float(page.locator(".iw-panel").get_attribute("data-draw-ms")))
    return statistics.median(times)


def _jupyterlab_times(sizes: list[int], tmp: Path) -> list[dict]:
    """Execute CircuitView(graph) in a real JupyterLab and time it to the drawn canvas."""
    from harness import Lab

    toy = (ROOT / "tests" / "widgets" / "toy_graph.py").read_text()
    graphs = "\n".join(f"g{n} = toy_graph({n}, {20 * n}, n_layers=30, n_pos=16, seed=0)" for n in sizes)
    # a small view first, so loading anywidget and our module is not counted in the first size
    cells = ["import time, interp_widgets as iw\n" + toy + "\n" + graphs,
             "iw.CircuitView(toy_graph(50, 200), selection=iw.Selection())"]
    cells += [f"t0_{n} = time.time(); v{n} = iw.CircuitView(g{n}, selection=iw.Selection()); v{n}" for n in sizes]
    lab = Lab(tmp / "lab")
    rows = []
    try:
        nb = lab.open_notebook("bench.ipynb", cells)
        nb.run_cell(0, timeout=600)
        nb.run_cell(1)
        nb.page.wait_for_function("(el) => Number(el.dataset.drawn || 0) >= 1", arg=nb.panel(1).element_handle(), timeout=120_000)
        for k, n in enumerate(sizes):
            nb.run_cell(2 + k, timeout=600)  # one at a time: each is timed alone
            panel = nb.panel(2 + k)
            nb.page.wait_for_function("(el) => Number(el.dataset.drawn || 0) >= 1 && Number(el.dataset.visibleNodes) > 0",
                                      arg=panel.element_handle(), timeout=120_000)
            drawn_at = float(panel.get_attribute("data-drawn-at")) / 1000
            t0 = nb.kernel_eval(f"t0_{n}")
            total = drawn_at - t0
            # redraw after a pan (what dragging costs per frame)
            panel.locator("canvas.iw-graph-overlay").scroll_into_view_if_needed()
            box = panel.locator("canvas.iw-graph-overlay").bounding_box()
            redraws = []
            for _ in range(5):
                nb.page.mouse.move(box["x"] + 300, box["y"] + 300)
                nb.page.mouse.down()
                nb.page.mouse.move(box["x"] + 320, box["y"] + 310, steps=2)
                nb.page.mouse.up()
                nb.page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r()))")
                redraws.append(float(panel.get_attribute("data-draw-ms")))
            m = nb.kernel_eval(f"len(v{n}._w)")
            rows.append({"name": f"CircuitView(graph) executed -> drawn in JupyterLab, {n} nodes / {m} edges",
                         "ours_median_s": total, "baseline_median_s": None, "ratio": float("nan"),
                         "redraw_ms_median": statistics.median(redraws),
                         "notes": f"one run; kernel time.time() at execution to Date.now() when the canvas was drawn; "
                                  f"redraw after a pan {statistics.median(redraws):.0f} ms", "machine": machine()})
        nb.close()
    finally:
        lab.close()
    return rows


if __name__ == "__main__":
    t = time.time()
    for r in run(quick="--full" not in sys.argv):
        print({k: v for k, v in r.items() if k != "machine"})
    print(f"{time.time() - t:.1f}s")
