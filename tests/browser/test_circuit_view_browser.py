"""CircuitView in JupyterLab: canvas drawn, slider prunes (browser and kernel agree), click
selects, shift-click + Group makes a supernode in graph.supernodes, pin survives pruning."""

from __future__ import annotations

from harness import screenshot
from notebook_cells import index


def _center(nb, panel, node_id):
    panel.locator("canvas.iw-graph-overlay").scroll_into_view_if_needed()
    return nb.page.evaluate("([el, id]) => el.iwNodeCenter(id)", [panel.element_handle(), node_id])


def test_graph_prune_select_group_pin(nb):
    panel = nb.panel(index("graph"))
    nb.page.wait_for_function("(el) => Number(el.dataset.drawn || 0) >= 1 && Number(el.dataset.visibleNodes) > 0", arg=panel.element_handle(), timeout=30_000)
    # the browser's pruning agrees with the kernel's
    py = nb.kernel_eval("view.visible_count")
    assert [int(panel.get_attribute("data-visible-nodes")), int(panel.get_attribute("data-visible-edges"))] == py

    slider = panel.locator("input.iw-node-thr")
    slider.focus()
    for _ in range(30):
        nb.page.keyboard.press("ArrowLeft")   # 0.80 -> 0.50
    nb.wait_kernel("view.node_threshold", lambda v: abs(v - 0.5) < 1e-6, what="the slider value to reach the kernel")
    py = nb.wait_kernel("view.visible_count", lambda v: v[0] == int(panel.get_attribute("data-visible-nodes")))
    assert py[1] == int(panel.get_attribute("data-visible-edges"))
    assert py[0] < 600

    # click the most influential feature node
    top = nb.kernel_eval("view.graph.nodes.query(\"kind == 'feature'\").sort_values('influence').iloc[-1]['node_id']")
    c = _center(nb, panel, top)
    assert c["visible"]
    nb.page.mouse.move(c["x"], c["y"])
    tip = panel.locator(".iw-graph-tip")
    tip.wait_for(state="visible")
    assert nb.kernel_eval(f"view.graph.nodes.set_index('node_id').loc[{top!r}, 'label']") in tip.inner_text()
    nb.page.mouse.click(c["x"], c["y"])
    nb.wait_kernel("view.selected", lambda v: v == [top])
    detail = panel.locator(".iw-detail-label")
    detail.wait_for()
    det = nb.wait_kernel("view.node_detail", lambda v: v.get("id") == top)
    assert detail.inner_text() == det["label"]
    n_in = len(det["incoming"])
    assert panel.locator(".iw-graph-detail .iw-list").first.locator(".iw-item").count() == min(8, n_in)

    # shift-click a second node, group them
    second = nb.kernel_eval("view.graph.nodes.query(\"kind == 'feature'\").sort_values('influence').iloc[-2]['node_id']")
    c2 = _center(nb, panel, second)
    nb.page.keyboard.down("Shift")
    nb.page.mouse.click(c2["x"], c2["y"])
    nb.page.keyboard.up("Shift")
    nb.wait_kernel("view.selected", lambda v: v == [top, second])
    panel.locator("input.iw-group-name").fill("my pair")
    panel.locator("button.iw-group").click()
    assert nb.wait_kernel("graph.supernodes", lambda v: "my pair" in v) == {"my pair": [top, second]}
    try:
        panel.locator(".iw-supernode[data-name='my pair']").wait_for(timeout=15_000)
    except Exception:  # say which side lost the update before failing
        js = nb.page.evaluate("(el) => JSON.stringify(el.iwGet('supernodes'))", panel.element_handle())
        raise AssertionError(f"supernode not drawn; browser state {js}, kernel {nb.kernel_eval('view.supernodes')}, "
                             f"console {nb.lab.console[-5:]}") from None

    # pin the pair, prune everything else away: pinned nodes stay
    panel.locator("button.iw-pin").click()
    nb.wait_kernel("sorted(graph.pinned)", lambda v: v == sorted([top, second]))
    panel.locator("button.iw-clear").click()
    nb.wait_kernel("view.selected", lambda v: v == [])
    nb.kernel_exec("view.node_threshold = 0.0")
    nb.page.wait_for_function("(el) => el.querySelector('input.iw-node-thr').value === '0'", arg=panel.element_handle())
    assert _center(nb, panel, top)["visible"] and _center(nb, panel, second)["visible"]
    py = nb.wait_kernel("view.visible_count", lambda v: v[0] == int(panel.get_attribute("data-visible-nodes")))
    assert py[0] == 8 + 3 + 2  # embeddings, logits, the two pins
    nb.kernel_exec("view.node_threshold = 0.8")
    nb.page.wait_for_function("(el) => el.querySelector('input.iw-node-thr').value === '0.8'", arg=panel.element_handle())
    nb.kernel_exec(f"view.selected = [{top!r}]")
    panel.locator(".iw-detail-label").wait_for()
    screenshot(panel, "circuit_view")
