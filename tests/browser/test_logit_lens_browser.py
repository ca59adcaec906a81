"""LogitLens in JupyterLab: heatmap drawn, typing a prompt re-runs it, clicking a token selects."""

from __future__ import annotations

import json

from harness import screenshot, wait_until
from notebook_cells import index


def test_lens_draws_reruns_and_selects(nb):
    panel = nb.panel(index("lens"))
    panel.locator(".iw-lens-chart[data-drawn='1'] .main-svg").first.wait_for(timeout=30_000)
    assert panel.locator(".iw-lens-tokens .iw-tok").count() == len(nb.kernel_eval("lens.tokens"))

    box = panel.locator("textarea.iw-prompt")
    box.fill("The cat sat on the mat")
    box.press("Enter")
    want = nb.wait_kernel("lens.tokens", lambda v: "".join(v) == "The cat sat on the mat", what="the new prompt to run")
    # the kernel has the new tokens; the browser redraws after the next state sync, so wait for the
    # new row of tokens (the old prompt's row can already hold len(want) tokens or more)
    toks = panel.locator(".iw-lens-tokens .iw-tok")
    strip = panel.locator(".iw-lens-tokens")
    wait_until(
        lambda: toks.count() == len(want) and "mat" in strip.inner_text() and "Hello" not in strip.inner_text(),
        timeout=30,
        what=f"the lens to redraw with the new prompt's {len(want)} tokens",
    )

    # click the second token: selection goes to the kernel, the detail list follows
    panel.locator(".iw-lens-tokens .iw-tok").nth(1).click()
    sel = nb.wait_kernel("lens.selected", lambda v: v[1] == 1)
    assert sel[0] == nb.kernel_eval("model.n_layers") - 1
    detail = panel.locator(".iw-lens-detail .iw-item-name")
    top1 = nb.kernel_eval("lens.selected_top()[0][0]")
    assert detail.first.get_attribute("title") == json.dumps(top1, ensure_ascii=False)

    # keyboard: focus a token and press Enter
    panel.locator(".iw-lens-tokens .iw-tok").nth(0).focus()
    nb.page.keyboard.press("Enter")
    nb.wait_kernel("lens.selected", lambda v: v[1] == 0)

    # Python -> browser: set the layer from the kernel, the slider follows
    nb.kernel_exec("lens.selected = [1, 2]")
    nb.page.wait_for_function("(el) => el.value === '1'", arg=panel.locator("input.iw-lens-layer").element_handle())
    screenshot(panel, "logit_lens")
