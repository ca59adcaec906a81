"""Static, kernel-free HTML: any panels' last state in one self-contained page, and the
``interp-widgets render`` report (activations, steering example, circuit) for one prompt.

The page inlines each panel's ES module and CSS, its state (binary traits as base64) and, once,
plotly.js (gzipped); a small host script plays the part of the widget manager. A Content Security
Policy forbids every network request, so the page works offline and cannot leak.

    >>> iw.widgets.report.write_static_html([lens, view], Path("panels.html"))
    >>> render_report(prompt="The Eiffel Tower is in the city of", out=Path("report.html"))
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from ._base import Panel, PlotlyJS, plotly_js_gz

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval' blob:; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src data: blob:; base-uri 'none'; form-action 'none'")

_PAGE_CSS = """
:root { --jp-layout-color0: #fff; --jp-layout-color1: #fafafa; --jp-layout-color2: #eee;
  --jp-ui-font-color1: #1f1f1f; --jp-ui-font-color2: #5f5f5f; --jp-border-color1: #bdbdbd;
  --jp-border-color2: #e0e0e0; --jp-brand-color1: #1976d2; --jp-error-color1: #d32f2f; }
@media (prefers-color-scheme: dark) { :root { --jp-layout-color0: #111; --jp-layout-color1: #1b1b1b;
  --jp-layout-color2: #2a2a2a; --jp-ui-font-color1: #e6e6e6; --jp-ui-font-color2: #a8a8a8;
  --jp-border-color1: #555; --jp-border-color2: #333; --jp-brand-color1: #64b5f6; } }
body { margin: 0; padding: 16px 24px; background: var(--jp-layout-color0); color: var(--jp-ui-font-color1);
  font-family: system-ui, sans-serif; }
header { margin-bottom: 12px; } header h1 { font-size: 20px; margin: 0 0 4px; }
.iw-report-meta { color: var(--jp-ui-font-color2); font-size: 12px; white-space: pre-wrap; }
section.iw-static-panel { margin: 18px 0; } section.iw-static-panel > h2 { font-size: 15px; margin: 0 0 6px; }
section.iw-static-panel > p { font-size: 12px; color: var(--jp-ui-font-color2); margin: 0 0 6px; }
"""

# The host: static models (get/set/on/off; save_changes and send are no-ops without a kernel).
_HOST_JS = r"""
const STATE = JSON.parse(document.getElementById("iw-state").textContent);
globalThis.__iwStatic = true;
function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v && typeof v === "object") {
    if (typeof v.$b64 === "string") {
      const bin = atob(v.$b64); const u = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
      return new DataView(u.buffer);
    }
    const o = {}; for (const [k, x] of Object.entries(v)) o[k] = revive(x); return o;
  }
  return v;
}
const models = new Map();
const manager = { get_model: async (id) => models.get(String(id).replace(/^IPY_MODEL_/, "")) };
class StaticModel {
  constructor(id, state) { this.id = id; this.attrs = revive(state); this.handlers = []; this.widget_manager = manager; }
  get(k) { return this.attrs[k]; }
  set(k, v) { const old = this.attrs[k]; this.attrs[k] = v; if (old !== v) this.emit("change:" + k); }
  emit(ev) { for (const [e, fn] of this.handlers.slice()) if (e === ev) { try { fn(); } catch (err) { console.error(err); } } }
  on(ev, fn) { for (const e of ev.split(" ")) this.handlers.push([e, fn]); }
  off(ev, fn) { this.handlers = this.handlers.filter(([e, f]) => !((ev == null || e === ev) && (fn == null || f === fn))); }
  save_changes() {}
  send() {}
}
for (const [id, st] of Object.entries(STATE.models)) models.set(id, new StaticModel(id, st));
const modules = new Map();
async function load(src) {
  if (!modules.has(src)) modules.set(src, import(URL.createObjectURL(new Blob([src], { type: "text/javascript" }))));
  return modules.get(src);
}
const styled = new Set();
for (const p of STATE.panels) {
  const model = models.get(p.id);
  const css = model.get("_css");
  if (css && !styled.has(css)) { styled.add(css); const s = document.createElement("style"); s.textContent = css; document.head.append(s); }
  const el = document.getElementById("iw-mount-" + p.id);
  try {
    const mod = await load(model.get("_esm"));
    const def = mod.default;
    const widget = typeof def === "function" ? await def() : def;
    if (widget.initialize) await widget.initialize({ model });
    await widget.render({ model, el });
    el.dataset.rendered = "1";
  } catch (err) {
    el.textContent = "could not render this panel: " + (err && err.message ? err.message : err);
    console.error(err);
  }
}
document.body.dataset.rendered = "1";
"""


def _jsonable_state(state: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray, memoryview)):
            return {"$b64": base64.b64encode(bytes(v)).decode("ascii")}
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return conv(state)


def static_html(panels: Sequence[Panel], *, title: str = "interp_widgets", subtitle: str = "",
                sections: Sequence[tuple[str, str]] | None = None) -> str:
    """The HTML of a page showing ``panels`` (their current state) without a kernel.

    ``sections``: optional (heading, note) per panel.
    """
    models: dict[str, Any] = {}
    plotly_id = None
    for p in panels:
        state = p.get_state()
        models[p.model_id] = _jsonable_state(state)
        ref = state.get("_plotly")
        if isinstance(ref, str) and ref.startswith("IPY_MODEL_"):
            plotly_id = ref[len("IPY_MODEL_"):]
    if plotly_id is not None:
        # one copy of plotly.js for the whole page, whichever PlotlyJS instance the panels point at
        models[plotly_id] = {"source_gz": {"$b64": base64.b64encode(plotly_js_gz()).decode("ascii")},
                             "version": PlotlyJS.version.default_value}
    data = json.dumps({"models": models, "panels": [{"id": p.model_id} for p in panels]}, separators=(",", ":"))
    # no "<" at all inside the JSON block: "</script>" or "<!--" in a prompt cannot end or bend it
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    secs = []
    for i, p in enumerate(panels):
        head, note = (sections[i] if sections and i < len(sections) else (type(p).__name__, ""))
        secs.append(
            f'<section class="iw-static-panel" id="iw-section-{i}"><h2>{html.escape(head)}</h2>'
            + (f"<p>{html.escape(note)}</p>" if note else "")
            + f'<div class="iw-mount" id="iw-mount-{html.escape(p.model_id)}"></div></section>'
        )
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_PAGE_CSS}</style></head><body>"
        f'<header><h1>{html.escape(title)}</h1><div class="iw-report-meta">{html.escape(subtitle)}</div></header>'
        + "".join(secs)
        + f'<script type="application/json" id="iw-state">{data}</script>'
        + f'<script type="module">{_HOST_JS}</script></body></html>'
    )


def write_static_html(panels: Sequence[Panel], out: Path, *, title: str = "interp_widgets", subtitle: str = "",
                      sections: Sequence[tuple[str, str]] | None = None) -> Path:
    """Write :func:`static_html` to ``out`` atomically; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, static_html(panels, title=title, subtitle=subtitle, sections=sections))
    return out


def render_report(prompt: str, out: Path, model_name: str | None = None, *, max_feature_nodes: int = 192,
                  max_new_tokens: int = 16, steer_strength: float | None = None, log: Any = print) -> Path:
    """The ``interp-widgets render`` report: logit lens, feature activations and a dashboard,
    a steering example with the prompt's strongest feature, and its attribution graph.

        $ interp-widgets render --prompt "The Eiffel Tower is in the city of" --out report.html
    """
    from ..analysis.attribution import attribute
    from ..analysis.attribution.replacement import default_transcoders
    from ..models import load_model
    from .circuit_view import CircuitView
    from .dashboard import FeatureDashboard
    from .feature_panel import FeaturePanel
    from .logit_lens import LogitLens
    from .selection import Selection
    from .steering_panel import SteeringPanel

    t0 = time.perf_counter()
    step = lambda msg: log(f"[{time.perf_counter() - t0:5.1f}s] {msg}")  # noqa: E731
    step(f"loading {model_name or 'the default model'}")
    model = load_model(model_name)
    model.check_prompts(prompt)
    transcoders = default_transcoders(model)
    sel = Selection()
    step("logit lens")
    lens = LogitLens(model, prompt)
    step("feature activations")
    panel = FeaturePanel(model, transcoders, prompt, selection=sel, dictionary=_middle(transcoders))
    for p in (lens, panel):
        if p.error:
            raise RuntimeError(f"{type(p).__name__}: {p.error}")
    feat = panel.current
    dash = FeatureDashboard(transcoders, feat, model=model, selection=sel)
    step(f"steering with {feat.dictionary.name}#{feat.index}")
    strength = steer_strength if steer_strength is not None else _default_strength(panel)
    steering = SteeringPanel(model, transcoders, prompt, selection=sel, max_new_tokens=max_new_tokens, live=False)
    steering.add(feat, strength=strength, run=False)
    steering.request()
    steering.wait()
    if steering.error:
        raise RuntimeError(f"SteeringPanel: {steering.error}")
    step("attribution graph")
    graph = attribute(model, prompt, transcoders, max_feature_nodes=max_feature_nodes, progress=False)
    # its own selection: selecting the top node must not move the panels above off their feature
    view = CircuitView(graph, selection=Selection(), dictionaries=transcoders, model=model)
    top = graph.top(1)["node_id"].tolist()
    if top:
        view.selected = top
    step("writing the page")
    kind = getattr(next(iter(transcoders.values()), None), "kind", "dictionary") if hasattr(transcoders, "values") else "dictionary"
    sections = [
        ("Logit lens", "Top token per layer (rows) and position (columns); click a cell for the top-k."),
        ("Feature activations", f"Tokens coloured by {feat.dictionary.name}#{feat.index}, the strongest feature at the last token."),
        ("Feature dashboard", "What the feature promotes and suppresses (corpus examples need an index)."),
        ("Steering", f"Adding {strength:g} x the feature's decoder direction; differing tokens dashed."),
        ("Attribution graph", f"{graph!r}"),
    ]
    sub = (f"prompt: {prompt!r}\nmodel: {model.name} \u00b7 dictionaries: {kind} ({len(transcoders)} layers) \u00b7 "
           f"built in {time.perf_counter() - t0:.0f}s \u00b7 static view: no kernel; hover, zoom and client-side selection work")
    path = write_static_html([lens, panel, dash, steering, view], Path(out), title="interp_widgets report",
                             subtitle=sub, sections=sections)
    for p in (lens, panel, dash, steering, view):
        p.close()
    step(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


def _middle(transcoders: Any) -> str | None:
    layers = sorted(getattr(transcoders, "layers", None) or [])
    if not layers:
        return None
    tc = transcoders[layers[len(layers) // 2]]
    return getattr(tc, "name", None)


def _default_strength(panel: Any) -> float:
    """Four times the feature's activation at the last token: visible but not absurd."""
    top = panel.token_features[:1]
    act = float(top[0]["activation"]) if top else 1.0
    return round(4.0 * max(act, 1.0), 1)
