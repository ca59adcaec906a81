"""The render report opens from a file in chromium with no kernel and no network: every panel
draws, client-side interaction works, markup in the prompt stays text."""

from __future__ import annotations

from pathlib import Path

from harness import screenshot
from notebook_cells import XSS


def test_report_renders_offline(lab, tmp_path):
    from interp_widgets.widgets.report import render_report

    out = render_report(prompt=f"The cat {XSS} sat on the", out=Path(tmp_path) / "report.html",
                        model_name="tiny-llama", max_feature_nodes=40, max_new_tokens=6, log=lambda m: None)
    page = lab.context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(out.as_uri())
        page.wait_for_selector("body[data-rendered='1']", timeout=30_000)
        assert page.locator(".iw-mount[data-rendered='1']").count() == 5
        assert page.locator(".iw-error:not([hidden])").count() == 0
        page.locator(".iw-lens-chart[data-drawn='1']").wait_for(timeout=30_000)
        graph = page.locator(".iw-panel").nth(4)
        page.wait_for_function("(el) => Number(el.dataset.drawn || 0) >= 1", arg=graph.element_handle())
        # client-side pruning works without a kernel
        before = int(graph.get_attribute("data-visible-nodes"))
        graph.locator("input.iw-node-thr").fill("0.1")
        page.wait_for_function("([el, n]) => Number(el.dataset.visibleNodes) < n", arg=[graph.element_handle(), before])
        assert page.evaluate("() => window.__iw_pwned === undefined")
        assert page.locator("img").count() == 0
        assert XSS in page.locator(".iw-panel textarea.iw-prompt").first.input_value()
        assert XSS in page.locator(".iw-report-meta").inner_text()
        assert all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests
        screenshot(page.locator("body"), "report")
    finally:
        page.close()
