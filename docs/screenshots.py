"""Regenerate the README screenshots from the render report on the default model (SmolLM2).

    python docs/screenshots.py            # writes docs/panels.png

Needs Debian's chromium (/usr/bin/chromium) and Playwright for Python (no browser download).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "browser"))

PROMPT = "The Eiffel Tower is in the city of"


def main() -> int:
    from harness import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    from interp_widgets.widgets.report import render_report

    import tempfile

    html = render_report(prompt=PROMPT, out=Path(tempfile.mkdtemp()) / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(html.as_uri())
        page.wait_for_selector("body[data-rendered='1']", timeout=60_000)
        page.wait_for_selector(".iw-lens-chart[data-drawn='1']", timeout=60_000)
        # the README image: the logit lens, steering and the circuit (dashboards are in the report)
        page.add_style_tag(content="#iw-section-1, #iw-section-2 { display: none; }")
        page.wait_for_timeout(800)
        page.screenshot(path=str(HERE / "panels.png"), full_page=True)
        browser.close()
    print(f"wrote {HERE / 'panels.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
