"""A prompt / label / token holding <img onerror> and <script> renders as text in every panel
and never executes."""

from __future__ import annotations

from harness import screenshot
from notebook_cells import XSS, index


def test_markup_in_model_strings_is_text_everywhere(nb):
    cell = nb.cell(index("xss"))
    page = nb.page
    cell.locator(".iw-panel").nth(4).wait_for(timeout=30_000)
    panels = cell.locator(".iw-panel")
    assert panels.count() == 5
    # wait until each panel has its data (lens chart, feature tokens, dashboard card, steering output, graph)
    cell.locator(".iw-lens-chart[data-drawn='1']").wait_for(timeout=30_000)
    cell.locator(".iw-fp-tokens .iw-tok").first.wait_for()
    cell.locator(".iw-card-id").first.wait_for()
    nb.wait_kernel("xss_panels[3].result_id", lambda v: v >= 1)
    cell.locator(".iw-steered-out .iw-steer-tok").first.wait_for()
    # interact so labels render in tooltips and detail panes
    graph = panels.nth(4)
    node = nb.kernel_eval("gx.nodes['node_id'][12]")
    graph.locator("canvas.iw-graph-overlay").scroll_into_view_if_needed()
    c = page.evaluate("([el, id]) => el.iwNodeCenter(id)", [graph.element_handle(), node])
    page.mouse.move(c["x"], c["y"])
    graph.locator(".iw-graph-tip").wait_for(state="visible")
    assert XSS in graph.locator(".iw-graph-tip").inner_text()
    page.mouse.click(c["x"], c["y"])
    nb.wait_kernel("xss_panels[4].selected", lambda v: v == [node])
    graph.locator(".iw-detail-label").wait_for()
    assert graph.locator(".iw-detail-label").inner_text() == XSS
    nb.kernel_exec("xss_panels[1].pick('sae.L1', 7)")
    nb.wait_kernel("xss_panels[1].card.get('index')", lambda v: v == 7)
    fp = panels.nth(1)
    page.wait_for_function("(el) => (el.querySelector('.iw-card-id') || {}).textContent === 'sae.L1 #7'", arg=fp.element_handle())
    assert fp.locator("input.iw-label-input").input_value() == XSS

    # nothing ran, no element was injected, and the markup is visible as text
    assert page.evaluate("() => window.__iw_pwned === undefined")
    assert cell.locator(".iw-panel img").count() == 0
    assert cell.locator(".iw-panel script").count() == 0
    text = cell.inner_text()
    assert text.count("<img src=x onerror=") >= 3   # LogitLens tokens, FeaturePanel tokens, steering prompt, graph
    assert "<script>window.__iw_pwned=2</script>" in text
    # plotly tick labels are entity-escaped text, not markup (its heatmap raster is its own data: URI)
    assert cell.locator("[src='x'], [href='x']").count() == 0
    ticks = " ".join(cell.locator(".iw-lens-chart .xtick text").all_text_contents())
    assert "<img" in ticks.replace(" ", "")
    screenshot(cell, "xss_panels")
