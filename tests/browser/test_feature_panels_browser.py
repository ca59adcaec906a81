"""FeaturePanel + FeatureDashboard + SteeringPanel in JupyterLab, linked by one Selection:
type a prompt, click a token, click a feature (the dashboard follows), steer with it, move the
strength slider (debounced; the newest result wins)."""

from __future__ import annotations

from harness import screenshot
from notebook_cells import index


def test_feature_panel_prompt_token_feature_dashboard(nb):
    panel = nb.panel(index("features"))
    panel.locator(".iw-fp-tokens .iw-tok").first.wait_for(timeout=30_000)
    box = panel.locator("textarea.iw-prompt")
    box.fill("Paris is the capital of France")
    box.press("Enter")
    toks = nb.wait_kernel("panel.tokens", lambda v: "".join(v) == "Paris is the capital of France")
    nb.page.wait_for_function("([el, n]) => el.querySelectorAll('.iw-fp-tokens .iw-tok').length === n",
                              arg=[panel.element_handle(), len(toks)])
    # click the third token: its top features come back from the kernel
    panel.locator(".iw-fp-tokens .iw-tok").nth(2).click()
    nb.wait_kernel("panel.selected_token", lambda v: v == 2)
    want = nb.wait_kernel("[r['feature'] for r in panel.token_features]",
                          lambda v: v == nb.kernel_eval("panel.acts.top_features(2, k=12)['feature'].tolist()"))
    items = panel.locator(".iw-token-features .iw-item")
    nb.page.wait_for_function("([el, f]) => { const x = el.querySelector('.iw-token-features .iw-item'); return x && x.dataset.feature === String(f); }",
                              arg=[panel.element_handle(), want[0]])
    assert items.count() == len(want)
    # click the second feature: the panel colours by it, the linked dashboard shows it
    f = want[1]
    items.nth(1).click()
    nb.wait_kernel("panel.feature", lambda v: v == f)
    nb.wait_kernel("dash.feature", lambda v: v == f)
    dash = nb.panel(index("dashboard"))
    nb.page.wait_for_function("([el, f]) => (el.querySelector('.iw-card-id') || {}).textContent === `sae.L1 #${f}`",
                              arg=[dash.element_handle(), f])
    assert panel.locator(".iw-card-id").inner_text() == f"sae.L1 #{f}"
    # edit the label in the dashboard: written back to the dictionary
    label = dash.locator("input.iw-label-input")
    label.fill("my browser label")
    label.press("Enter")
    nb.wait_kernel(f"sae.labels.get({f})", lambda v: v == "my browser label")
    # search by label
    panel.locator("input.iw-search").fill("cats and")
    nb.wait_kernel("[r['feature'] for r in panel.search_results]", lambda v: v == [5])
    panel.locator(".iw-search-results .iw-item").first.wait_for()
    screenshot(panel, "feature_panel")
    screenshot(dash, "feature_dashboard")


def test_steering_slider_debounced_newest_wins(nb):
    st = nb.panel(index("steering"))
    nb.wait_kernel("steering.result_id", lambda v: v >= 1 and v == nb.kernel_eval("steering.request_id"))
    st.locator(".iw-steered-out .iw-steer-tok").first.wait_for(timeout=30_000)
    n_before = nb.kernel_eval("steering.request_id")
    # "steer with this" from the dashboard adds a row
    dash = nb.panel(index("dashboard"))
    dash.locator("button.iw-steer-btn").click()
    rows = nb.wait_kernel("len(steering.rows)", lambda v: v == 2)
    st.locator(".iw-steer-row").nth(rows - 1).wait_for()
    nb.wait_kernel("steering.result_id == steering.request_id", lambda v: v)
    start = nb.kernel_eval("steering.request_id")
    # drag the first slider with the keyboard: many input events, one debounced request
    slider = st.locator(".iw-steer-row").first.locator("input.iw-strength")
    slider.focus()
    for _ in range(15):
        nb.page.keyboard.press("ArrowRight")
    final = float(slider.input_value())
    nb.wait_kernel("steering.rows[0]['strength']", lambda v: abs(v - final) < 1e-6)
    done = nb.wait_kernel("[steering.request_id, steering.result_id]", lambda v: v[0] == v[1] and v[0] > start)
    assert done[0] - start <= 3     # 15 key presses, debounced into very few requests
    assert done[0] > n_before
    want = nb.kernel_eval("list(steering.result.steered.str_tokens[0])")
    nb.page.wait_for_function("([el, n]) => el.querySelectorAll('.iw-steered-out .iw-steer-tok').length === n",
                              arg=[st.element_handle(), len(want)])
    got = st.locator(".iw-steered-out .iw-steer-tok")
    differs = nb.kernel_eval("steering.differs")
    assert [got.nth(i).get_attribute("data-differs") == "1" for i in range(len(want))] == differs
    assert "showing result #" in st.locator(".iw-request-line").inner_text()
    # dose-response for the first row
    nb.kernel_exec("steering.dose_target = ' the'")
    st.locator(".iw-steer-row").first.locator("button.iw-dose-btn").click()
    nb.wait_kernel("steering.dose.get('row')", lambda v: v == 0)
    st.locator(".iw-dose-chart[data-drawn='1']").wait_for(timeout=30_000)
    screenshot(st, "steering_panel")
