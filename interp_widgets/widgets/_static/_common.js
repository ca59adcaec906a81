// interp_widgets shared helpers. Python prepends this file to every panel's ES module (no build step).
// Rule: every string that came from a model or a user goes into the DOM with textContent (via h()),
// never innerHTML.

/** Create an element. props: class, text, style (object), on<event> handlers, other attributes. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = String(v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A typed array view over a bytes trait (DataView in JupyterLab, ArrayBuffer/Uint8Array elsewhere). */
function typed(v, Ctor) {
  if (v === null || v === undefined) return new Ctor(0);
  let buf, off, len;
  if (v instanceof ArrayBuffer) { buf = v; off = 0; len = v.byteLength; }
  else if (ArrayBuffer.isView(v)) { buf = v.buffer; off = v.byteOffset; len = v.byteLength; }
  else return new Ctor(0);
  const n = Math.floor(len / Ctor.BYTES_PER_ELEMENT);
  if (off % Ctor.BYTES_PER_ELEMENT !== 0) {  // typed arrays need aligned offsets: copy
    const copy = new Uint8Array(n * Ctor.BYTES_PER_ELEMENT);
    copy.set(new Uint8Array(buf, off, copy.length));
    return new Ctor(copy.buffer);
  }
  return new Ctor(buf, off, n);
}
const f32 = (v) => typed(v, Float32Array);
const i32 = (v) => typed(v, Int32Array);
const u8 = (v) => typed(v, Uint8Array);

/** Make Enter / Space activate a focusable element like a click (keyboard access). */
function activatable(el, fn, label) {
  el.setAttribute("tabindex", "0");
  el.setAttribute("role", el.getAttribute("role") || "button");
  if (label) el.setAttribute("aria-label", label);
  el.addEventListener("click", fn);
  el.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fn(e); }
  });
  return el;
}

/** Set a trait and send it to the kernel. */
function push(model, name, value) {
  model.set(name, value);
  model.save_changes();
}

/** The panel frame: title, busy indicator, progress bar, error box (from Python or from JS). */
function shell(model, el, title) {
  el.classList.add("iw-host");
  const titleEl = h("span", { class: "iw-title", text: title });
  const spinner = h("span", { class: "iw-busy", role: "status", "aria-live": "polite", hidden: true },
    h("span", { class: "iw-spinner", "aria-hidden": "true" }), h("span", { class: "iw-status" }));
  const bar = h("div", { class: "iw-progress", hidden: true }, h("div", { class: "iw-progress-fill" }));
  const errText = h("span", { class: "iw-error-text" });
  const errBox = h("div", { class: "iw-error", role: "alert", hidden: true }, errText,
    h("button", { class: "iw-error-close", "aria-label": "dismiss error", text: "\u00d7",
      onclick: () => { jsError = ""; if (model.get("error")) push(model, "error", ""); sync(); } }));
  const body = h("div", { class: "iw-body" });
  // data-lm-suppress-shortcuts: JupyterLab leaves keys inside the panel alone (sliders, arrows, Enter)
  const staticNote = globalThis.__iwStatic ? h("span", { class: "iw-static-note", text: "static view (no kernel): recomputing is off" }) : null;
  const root = h("div", { class: "iw-panel", role: "region", "aria-label": title, "data-lm-suppress-shortcuts": "true" },
    h("div", { class: "iw-head" }, titleEl, spinner, staticNote), bar, errBox, body);
  root.iwGet = (name) => model.get(name);  // for tests and debugging: the browser-side state
  // the notebook's own keydown handlers (cell navigation) would swallow arrows meant for our controls
  root.addEventListener("keydown", (e) => e.stopPropagation());
  el.replaceChildren(root);
  let jsError = "";
  const sync = () => {
    const busy = !!model.get("busy");
    spinner.hidden = !busy;
    root.classList.toggle("iw-is-busy", busy);
    root.setAttribute("aria-busy", busy ? "true" : "false");
    spinner.querySelector(".iw-status").textContent = busy ? (model.get("status") || "working\u2026") : "";
    const p = Number(model.get("progress"));
    bar.hidden = !(busy && p >= 0);
    bar.firstChild.style.width = `${Math.round(Math.max(0, Math.min(1, p)) * 100)}%`;
    const msg = model.get("error") || jsError;
    errBox.hidden = !msg;
    errText.textContent = msg || "";
  };
  for (const k of ["busy", "status", "progress", "error"]) model.on(`change:${k}`, sync);
  sync();
  const api = {
    root, body, titleEl,
    setTitle(t) { titleEl.textContent = t; },
    showError(e) { jsError = `browser: ${e && e.message ? e.message : e}`; sync(); console.error(e); },
    clearError() { jsError = ""; sync(); },
    /** Wrap a handler: a JS exception shows in the error box instead of breaking the panel. */
    guard(fn) {
      return (...args) => {
        try { const r = fn(...args); if (r && r.catch) r.catch((e) => api.showError(e)); return r; }
        catch (e) { api.showError(e); }
      };
    },
  };
  return api;
}

/** Listen to trait changes with the handler guarded. */
function listen(model, ui, names, fn) {
  const g = ui.guard(fn);
  for (const n of names) model.on(`change:${n}`, g);
  return g;
}

/** plotly.js, loaded once per page from the shared PlotlyJS widget (gzipped bytes). */
async function getPlotly(model) {
  if (globalThis.Plotly) return globalThis.Plotly;
  if (!globalThis.__iwPlotlyLoading) {
    globalThis.__iwPlotlyLoading = (async () => {
      const ref = String(model.get("_plotly") || "");
      if (!ref) throw new Error("no plotly.js attached to this panel");
      const id = ref.replace(/^IPY_MODEL_/, "").replace(/^anywidget:/, "");
      const lib = await model.widget_manager.get_model(id);
      const gz = u8(lib.get("source_gz"));
      const stream = new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"));
      const text = await new Response(stream).text();
      // shadow module/exports/define so plotly's UMD wrapper takes its global-assignment path
      (new Function("module", "exports", "define", text)).call(globalThis, undefined, undefined, undefined);
      if (!globalThis.Plotly) throw new Error("plotly.js did not load");
      return globalThis.Plotly;
    })();
    globalThis.__iwPlotlyLoading.catch(() => { globalThis.__iwPlotlyLoading = null; });
  }
  return globalThis.__iwPlotlyLoading;
}

/** Plotly parses a little HTML in its strings; entity-escape so model text stays text. */
function plotlyText(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Colours from JupyterLab's theme (light or dark) for charts drawn outside CSS. */
function themeColors(el) {
  const cs = getComputedStyle(el);
  const v = (name, fb) => (cs.getPropertyValue(name) || "").trim() || fb;
  return {
    fg: v("--jp-ui-font-color1", "#222"),
    fg2: v("--jp-ui-font-color2", "#666"),
    bg: v("--jp-layout-color0", "#fff"),
    bg1: v("--jp-layout-color1", "#fafafa"),
    border: v("--jp-border-color1", "#ccc"),
    accent: v("--jp-brand-color1", "#1976d2"),
    pos: "255,127,14",
    neg: "31,119,180",
  };
}

/** Call fn when JupyterLab switches between light and dark themes (charts re-read the colours). */
function onThemeChange(ui, fn) {
  if (typeof MutationObserver === "undefined" || !document.body) return;
  const g = ui.guard(fn);
  const obs = new MutationObserver(() => g());
  obs.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
  ui.root.addEventListener("iw-dispose", () => obs.disconnect());
}

/** Axis / grid / font colours for plotly from the current theme. */
function plotlyTheme(el, axes = ["xaxis", "yaxis"]) {
  const c = themeColors(el);
  const out = { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: c.fg } };
  for (const a of axes) out[a] = { gridcolor: c.border, zerolinecolor: c.fg2, linecolor: c.border, tickfont: { color: c.fg } };
  return out;
}

/** Merge plotly layout objects one level deep (axis dicts are merged, not replaced). */
function mergeLayout(...parts) {
  const out = {};
  for (const p of parts) for (const [k, v] of Object.entries(p || {})) {
    out[k] = v && typeof v === "object" && !Array.isArray(v) && out[k] && typeof out[k] === "object" ? { ...out[k], ...v } : v;
  }
  return out;
}

/** Background for an activation / signed value in [-max, max]: orange positive, blue negative. */
function actColor(v, max) {
  if (!(max > 0) || !Number.isFinite(v) || v === 0) return "transparent";
  const a = Math.min(1, Math.abs(v) / max);
  return v > 0 ? `rgba(255,127,14,${(0.08 + 0.72 * a).toFixed(3)})` : `rgba(31,119,180,${(0.08 + 0.72 * a).toFixed(3)})`;
}

/** Show a token so whitespace and newlines are visible. */
function showToken(t) {
  return String(t).replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/^ /, "\u00b7").replace(/ /g, "\u00b7") || "\u2205";
}

function fmt(x, d = 3) {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
  return x.toFixed(d);
}

/** A row of focusable tokens coloured by values; onPick(i) on click / Enter. */
function tokenStrip(tokens, values, { selected = -1, onPick = null, max = null, title = null, sink = -1 } = {}) {
  const m = max ?? Math.max(1e-9, ...Array.from(values || [], (x) => Math.abs(x) || 0));
  const strip = h("div", { class: "iw-tokens", role: "list" });
  tokens.forEach((t, i) => {
    const v = values ? values[i] : 0;
    const span = h("span", {
      class: "iw-tok" + (i === selected ? " iw-selected" : "") + (i === sink ? " iw-sink" : ""),
      role: "listitem", "data-pos": i, title: title ? title(i, v) : `pos ${i}: ${fmt(v)}`,
      style: { background: actColor(v, m) },
    }, showToken(t));
    if (onPick) activatable(span, () => onPick(i), `token ${i} ${t}`);
    strip.append(span);
  });
  return strip;
}

/** A small horizontal bar (0-1 of width), for lists of features / tokens. */
function bar(frac, sign = 1) {
  const w = Math.max(0, Math.min(1, Math.abs(frac)));
  return h("span", { class: "iw-bar" }, h("span", {
    class: sign >= 0 ? "iw-bar-fill" : "iw-bar-fill iw-neg", style: { width: `${(w * 100).toFixed(1)}%` },
  }));
}

/** Call fn at most once per `ms` after the last call (slider moves). */
function debounce(fn, ms) {
  let t = null;
  const d = (...args) => { clearTimeout(t); t = setTimeout(() => { t = null; fn(...args); }, ms); };
  d.flush = (...args) => { clearTimeout(t); t = null; fn(...args); };
  return d;
}

/** A prompt box: textarea + Run button; Enter runs, Shift+Enter is a newline. */
function promptBox(model, ui, trait = "prompt", label = "prompt") {
  const ta = h("textarea", { class: "iw-prompt", rows: 2, "aria-label": label, spellcheck: "false" });
  ta.value = model.get(trait) || "";
  const run = ui.guard(() => { if (ta.value !== model.get(trait)) push(model, trait, ta.value); });
  const btn = h("button", { class: "iw-btn iw-run", text: "Run", onclick: run });
  ta.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); run(); } });
  model.on(`change:${trait}`, () => { if (document.activeElement !== ta) ta.value = model.get(trait) || ""; });
  return h("div", { class: "iw-prompt-row" }, ta, btn);
}
