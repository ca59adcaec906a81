"""The notebook the browser suite opens: one cell per panel, on tiny in-process models."""

from __future__ import annotations

XSS = '<img src=x onerror="window.__iw_pwned=1"><script>window.__iw_pwned=2</script>'

SETUP = f"""
import json
import interp_widgets as iw
model = iw.load_model("tiny-llama")
XSS = {XSS!r}
"""

CELLS: dict[str, str] = {
    "setup": SETUP,
    "lens": "lens = iw.LogitLens(model, 'Hello world, this is')\nlens",
    "lens_xss": "lens_xss = iw.LogitLens(model, XSS)\nlens_xss",
}


def index(name: str) -> int:
    return list(CELLS).index(name)
