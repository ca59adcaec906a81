"""Load on live panels: a steering slider dragged through 50 values, then 20 prompt edits typed in
a row into the steering panel and the logit lens. The kernel stays responsive, what is shown at
the end is the result of the last input, and no exception reaches the browser console or the
kernel's log."""

from __future__ import annotations

import time

from notebook_cells import index

PROMPTS = [f"The cat number {i} sat on the" for i in range(20)]

CAPTURE_LOG = """
import logging
class _IwCapture(logging.Handler):
    def emit(self, record):
        _iw_log.append(f"{record.name}: {record.getMessage()}")
_iw_log = []
_iw_handler = _IwCapture(level=logging.WARNING)
logging.getLogger().addHandler(_iw_handler)
"""


def _console_errors(lab, start: int) -> list[str]:
    return [m for m in lab.console[start:] if m.startswith(("error:", "pageerror:"))]


def _responsive(nb, limit: float = 5.0) -> float:
    t = time.monotonic()
    assert nb.kernel_eval("1 + 1") == 2
    took = time.monotonic() - t
    assert took < limit, f"the kernel took {took:.1f} s to answer during the burst"
    return took


def test_fast_slider_and_typing_end_on_the_last_input(nb, lab):
    page = nb.page
    st = nb.panel(index("steering"))
    lens = nb.panel(index("lens"))
    nb.wait_kernel("steering.result_id == steering.request_id and steering.result_id > 0", lambda v: v, timeout=60)
    old_prompt, old_strength = nb.kernel_eval("[steering.prompt, steering.rows[0]['strength']]")
    old_lens = nb.kernel_eval("lens.prompt")
    nb.kernel_exec(CAPTURE_LOG)
    start_console = len(lab.console)
    start_req = nb.kernel_eval("steering.request_id")

    # ---- drag the first strength slider through 50 positions, fast
    slider = st.locator(".iw-steer-row").first.locator("input.iw-strength")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 2, y)
    page.mouse.down()
    seen = set()
    for i in range(50):
        page.mouse.move(box["x"] + 2 + (box["width"] - 4) * (i + 1) / 50, y)
        seen.add(slider.input_value())
    page.mouse.up()
    assert len(seen) >= 40  # the slider really went through ~50 values
    final_strength = float(slider.input_value())
    _responsive(nb)

    # ---- 20 prompt edits in a row in the steering panel and in the lens, each sent with Enter
    sbox = st.locator("textarea.iw-prompt")
    lbox = lens.locator("textarea.iw-prompt")
    for p in PROMPTS:
        sbox.fill(p)
        sbox.press("Enter")
        lbox.fill(p)
        lbox.press("Enter")
    _responsive(nb)

    # ---- the end state answers the last input of each kind
    last = PROMPTS[-1]
    done = nb.wait_kernel("[steering.request_id, steering.result_id, steering.busy]",
                          lambda v: v[0] == v[1] and not v[2], timeout=120, what="the last steering request to show")
    assert nb.kernel_eval("steering.rows[0]['strength']") == final_strength
    assert nb.kernel_eval("steering.result.prompts[0]") == last
    assert nb.kernel_eval("float(steering.result.specs[0].strength)") == final_strength
    runs = done[0] - start_req
    assert 1 <= nb.kernel_eval("steering.runs") and runs <= 60  # superseded requests were skipped
    want = nb.kernel_eval("list(steering.result.steered.str_tokens[0])")
    page.wait_for_function(
        "([el, want]) => { const t = [...el.querySelectorAll('.iw-steered-out .iw-steer-tok')].map(x => x.textContent);"
        " return t.length === want.length; }", arg=[st.element_handle(), want], timeout=30_000)
    assert st.locator(".iw-steered-out .iw-prompt-echo").inner_text() == last
    assert f"showing result #{done[1]}" in st.locator(".iw-request-line").inner_text()
    nb.wait_kernel("''.join(lens.tokens)", lambda v: v == last, timeout=60, what="the lens to show the last prompt")
    n_tok = len(nb.kernel_eval("lens.tokens"))
    page.wait_for_function("([el, n]) => el.querySelectorAll('.iw-lens-tokens .iw-tok').length === n",
                           arg=[lens.element_handle(), n_tok])
    assert "".join(lens.locator(".iw-lens-tokens .iw-tok").all_inner_texts()).replace("\u00b7", " ").strip() != ""

    # ---- nothing went wrong anywhere
    assert nb.kernel_eval("[steering.error, lens.error]") == ["", ""]
    assert _console_errors(lab, start_console) == []
    assert nb.kernel_eval("_iw_log") == []

    # leave the shared notebook as the next tests expect it
    nb.kernel_exec("logging.getLogger().removeHandler(_iw_handler)")
    nb.kernel_exec(f"steering.set_strength(0, {old_strength!r}); steering.prompt = {old_prompt!r}; "
                   f"lens.prompt = {old_lens!r}")
    nb.wait_kernel("[steering.request_id == steering.result_id, steering.busy]", lambda v: v[0] and not v[1],
                   timeout=120)
