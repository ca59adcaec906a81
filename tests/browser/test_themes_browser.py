"""Panels follow JupyterLab's light and dark themes (CSS variables): readable text in both."""

from __future__ import annotations

from harness import screenshot
from notebook_cells import index

CONTRAST = """(el) => {
  const lum = (c) => { const m = c.match(/[\\d.]+/g).map(Number); const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(m[0]) + 0.7152 * f(m[1]) + 0.0722 * f(m[2]); };
  const cs = getComputedStyle(el); const a = lum(cs.color), b = lum(cs.backgroundColor);
  return [(Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), b];
}"""


def _set_theme(nb, name, light):
    nb.page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", name)
    nb.page.wait_for_function("(v) => document.body.dataset.jpThemeLight === v", arg="true" if light else "false", timeout=30_000)


def test_dark_and_light_themes(nb):
    try:
        _set_theme(nb, "JupyterLab Dark", light=False)
        for name in ("lens", "features", "steering", "graph"):
            panel = nb.panel(index(name))
            ratio, bg = panel.evaluate(CONTRAST)
            assert bg < 0.1, f"{name}: background should be dark in the dark theme"
            assert ratio > 7, f"{name}: text contrast {ratio:.1f} too low in the dark theme"
        screenshot(nb.panel(index("features")), "feature_panel_dark")
        screenshot(nb.panel(index("graph")), "circuit_view_dark")
    finally:
        _set_theme(nb, "JupyterLab Light", light=True)
    ratio, bg = nb.panel(index("features")).evaluate(CONTRAST)
    assert bg > 0.8 and ratio > 7
