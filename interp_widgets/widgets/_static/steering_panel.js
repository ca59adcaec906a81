// SteeringPanel: intervention rows (strength slider, mode, positions), generation settings,
// baseline vs steered continuations with differing tokens marked and per-token log-prob change,
// next-token shift, and a dose-response chart. Slider moves are debounced before they reach the
// kernel; the kernel numbers requests and only shows the newest result.

function renderSteering({ model, el }) {
  const ui = shell(model, el, "Steering");
  const rowsBox = h("div", { class: "iw-steer-rows", role: "list", "aria-label": "interventions" });
  const addDict = h("select", { class: "iw-add-dict", "aria-label": "dictionary to add a feature from" });
  const addFeat = h("input", { type: "number", min: 0, step: 1, class: "iw-add-feature", "aria-label": "feature id to add", style: { width: "6em" } });
  const addBtn = h("button", { class: "iw-btn iw-add", text: "Add feature" });
  const maxNew = h("input", { type: "number", min: 1, max: 512, step: 1, class: "iw-max-new", "aria-label": "new tokens", style: { width: "5em" } });
  const temp = h("input", { type: "number", min: 0, max: 5, step: 0.1, class: "iw-temperature", "aria-label": "temperature", style: { width: "5em" } });
  const seed = h("input", { type: "number", step: 1, class: "iw-seed", "aria-label": "seed", style: { width: "5em" } });
  const reqLine = h("div", { class: "iw-small iw-muted iw-request-line", "aria-live": "polite" });
  const outBase = h("div", { class: "iw-steer-out iw-baseline-out" });
  const outSteer = h("div", { class: "iw-steer-out iw-steered-out" });
  const shiftBox = h("div", { class: "iw-shift" });
  const doseBox = h("div", { class: "iw-dose" });
  const doseChart = h("div", { class: "iw-chart iw-dose-chart", style: { minHeight: "0" } });
  const results = h("div", { class: "iw-cols iw-dim-when-busy iw-steer-results" },
    h("div", {}, h("div", { class: "iw-section-title", text: "Baseline" }), outBase),
    h("div", {}, h("div", { class: "iw-section-title", text: "Steered" }), outSteer));
  ui.body.append(
    promptBox(model, ui),
    rowsBox,
    h("div", { class: "iw-row" }, addDict, addFeat, addBtn,
      h("span", { class: "iw-label", text: "new tokens" }), maxNew,
      h("span", { class: "iw-label", text: "temperature" }), temp,
      h("span", { class: "iw-label", text: "seed" }), seed),
    reqLine, results, shiftBox, doseBox, doseChart,
  );

  // ---- rows: rebuilt when their structure changes, updated in place while a slider moves
  let structure = "";
  let pending = null;  // rows edited locally, waiting for the debounce
  const sendRows = debounce(() => { if (pending) { const rows = pending; pending = null; push(model, "rows", rows); } }, 300);
  const editRow = (i, changes, immediate) => {
    const rows = (pending || model.get("rows") || []).map((r) => ({ ...r }));
    Object.assign(rows[i], changes);
    pending = rows;
    if (immediate) sendRows.flush(); else sendRows();
  };
  function drawRows() {
    const rows = model.get("rows") || [];
    const key = JSON.stringify(rows.map((r) => [r.id, r.label, r.mode, r.lo, r.hi]));
    if (key === structure && !pending) {  // values only: update in place (keeps a dragged slider alive)
      rows.forEach((r, i) => {
        const line = rowsBox.children[i]; if (!line) return;
        const s = line.querySelector(".iw-strength"), v = line.querySelector(".iw-strength-val");
        if (document.activeElement !== s) s.value = String(r.strength);
        v.textContent = fmt(Number(r.strength), 2);
        line.querySelector(".iw-positions").value = r.positions;
        line.querySelector(".iw-enabled").checked = !!r.enabled;
      });
      return;
    }
    structure = key;
    if (!rows.length) {
      rowsBox.replaceChildren(h("div", { class: "iw-muted iw-small", text: "no interventions: add a feature below, or press \u201cSteer with this\u201d in a feature dashboard" }));
      return;
    }
    rowsBox.replaceChildren(...rows.map((r, i) => {
      const mode = h("select", { class: "iw-mode", "aria-label": `mode of ${r.label}` }, ["add", "scale", "clamp", "ablate"].map((m) => h("option", { value: m, text: m })));
      mode.value = r.mode;
      const slider = h("input", { type: "range", class: "iw-strength", min: r.lo, max: r.hi, step: (r.hi - r.lo) / 200, "aria-label": `strength of ${r.label}` });
      slider.value = String(r.strength);
      slider.disabled = r.mode === "ablate";
      const val = h("span", { class: "iw-num iw-strength-val", text: fmt(Number(r.strength), 2) });
      const pos = h("input", { type: "text", class: "iw-positions", list: "iw-pos-choices", size: 9, "aria-label": `positions of ${r.label}`, title: "all, prompt, generated, last, 2,5 or token:Paris" });
      pos.value = r.positions;
      const en = h("input", { type: "checkbox", class: "iw-enabled", "aria-label": `enable ${r.label}` });
      en.checked = !!r.enabled;
      slider.addEventListener("input", ui.guard(() => { val.textContent = fmt(Number(slider.value), 2); editRow(i, { strength: Number(slider.value) }, false); }));
      mode.addEventListener("change", ui.guard(() => editRow(i, { mode: mode.value }, true)));
      pos.addEventListener("change", ui.guard(() => editRow(i, { positions: pos.value }, true)));
      en.addEventListener("change", ui.guard(() => editRow(i, { enabled: en.checked }, true)));
      return h("div", { class: "iw-row iw-steer-row", role: "listitem", "data-row": i },
        en, h("span", { class: "iw-item-name iw-steer-label", text: r.label, title: r.label, style: { minWidth: "12em", maxWidth: "22em" } }),
        mode, slider, val, h("span", { class: "iw-label", text: "at" }), pos,
        h("button", { class: "iw-btn iw-small iw-dose-btn", text: "Dose-response", onclick: ui.guard(() => model.send({ action: "dose", row: i })) }),
        h("button", { class: "iw-btn iw-small iw-remove", text: "\u00d7", "aria-label": `remove ${r.label}`, onclick: ui.guard(() => model.send({ action: "remove", id: r.id })) }));
    }), h("datalist", { id: "iw-pos-choices" }, ["all", "prompt", "generated", "last"].map((p) => h("option", { value: p }))));
  }

  function drawSettings() {
    const info = model.get("targets_info") || [];
    if (addDict.options.length !== info.length) addDict.replaceChildren(...info.map((d) => h("option", { value: d.dictionary, text: `${d.dictionary} (${d.n_features})` })));
    addDict.disabled = addFeat.disabled = addBtn.disabled = !info.length;
    if (document.activeElement !== maxNew) maxNew.value = String(model.get("max_new_tokens"));
    if (document.activeElement !== temp) temp.value = String(model.get("temperature"));
    if (document.activeElement !== seed) seed.value = String(model.get("seed"));
  }
  addBtn.addEventListener("click", ui.guard(() => {
    const f = Number(addFeat.value);
    if (!Number.isInteger(f) || f < 0) throw new Error("type a feature id (a whole number) to add");
    model.send({ action: "add", dictionary: addDict.value, feature: f });
  }));
  const num = (input, trait, int) => input.addEventListener("change", ui.guard(() => {
    const v = Number(input.value);
    if (!Number.isFinite(v) || (int && !Number.isInteger(v))) throw new Error(`${trait} must be a ${int ? "whole " : ""}number`);
    push(model, trait, v);
  }));
  num(maxNew, "max_new_tokens", true); num(temp, "temperature", false); num(seed, "seed", true);

  function drawOutput() {
    const ptoks = model.get("prompt_tokens") || [];
    const base = model.get("baseline") || [];
    const st = model.get("steered") || [];
    const differs = model.get("differs") || [];
    const diff = f32(model.get("logprob_diff"));
    const req = model.get("request_id"), shown = model.get("result_id");
    reqLine.textContent = shown ? `showing result #${shown}${req > shown ? ` (request #${req} running\u2026)` : ""} \u00b7 mean KL ${fmt(model.get("kl"))}` : (req ? `request #${req} running\u2026` : "");
    results.classList.toggle("iw-stale", req > shown);
    const promptPart = h("span", { class: "iw-muted iw-prompt-echo", text: ptoks.join("") });
    outBase.replaceChildren(h("div", { class: "iw-tokens" }, promptPart.cloneNode(true),
      ...base.map((t, i) => h("span", { class: "iw-tok iw-base-tok", "data-pos": i, text: showToken(t) }))));
    const m = Math.max(1e-6, ...Array.from(diff, (x) => Math.abs(x)));
    outSteer.replaceChildren(h("div", { class: "iw-tokens" }, promptPart,
      ...st.map((t, i) => h("span", {
        class: "iw-tok iw-steer-tok" + (differs[i] ? " iw-diff" : ""), "data-pos": i, "data-differs": differs[i] ? "1" : "0",
        title: `${JSON.stringify(t)}: log p steered - log p baseline = ${fmt(diff[i] ?? 0)}${differs[i] ? " (differs from baseline)" : ""}`,
        style: { background: actColor(diff[i] ?? 0, m) }, text: showToken(t),
      }))),
      st.length ? h("div", { class: "iw-small iw-muted", text: "colour: log-prob change of each steered token (orange more likely, blue less); dashed: differs from the baseline" }) : null);
  }

  function drawShift() {
    const nt = model.get("next_token") || {};
    if (!nt.up) { shiftBox.replaceChildren(); return; }
    const list = (rows, title, sign) => {
      const m = Math.max(1e-12, ...rows.map((r) => Math.abs(r.p_steer - r.p_base)));
      return h("div", {}, h("div", { class: "iw-section-title", text: title }),
        h("div", { class: "iw-list" }, rows.map((r) => h("div", { class: "iw-item iw-shift-item", title: `p baseline ${fmt(r.p_base)} \u2192 steered ${fmt(r.p_steer)}` },
          h("span", { class: "iw-item-name iw-tok", text: showToken(r.token) }),
          bar(Math.abs(r.p_steer - r.p_base) / m, sign), h("span", { class: "iw-num", text: `${fmt(r.p_base)} \u2192 ${fmt(r.p_steer)}` })))));
    };
    shiftBox.replaceChildren(h("div", { class: "iw-small iw-muted", text: `next token after the prompt: KL ${fmt(nt.kl)}` }),
      h("div", { class: "iw-cols" }, list(nt.up.slice(0, 6), "More likely", 1), list(nt.down.slice(0, 6), "Less likely", -1)));
  }

  const drawDose = ui.guard(async () => {
    const d = model.get("dose") || {};
    if (!d.strengths) { doseBox.replaceChildren(); doseChart.replaceChildren(); return; }
    doseBox.replaceChildren(h("div", { class: "iw-section-title" }, `Dose-response: ${d.label} \u2192 ${d.metric}`));
    const Plotly = await getPlotly(model);
    const c = themeColors(el);
    await Plotly.react(doseChart, [
      { x: d.strengths, y: d.values, mode: "lines+markers", name: "steered", line: { color: "rgb(255,127,14)", width: 3 } },
      { x: [Math.min(...d.strengths), Math.max(...d.strengths)], y: [d.baseline, d.baseline], mode: "lines", name: "baseline", line: { dash: "dash", color: c.fg2 } },
    ], mergeLayout(plotlyTheme(el), {
      height: 240, margin: { l: 50, r: 10, t: 10, b: 40 },
      font: { color: c.fg, size: 11 }, xaxis: { title: { text: plotlyText(d.units) } }, yaxis: { title: { text: plotlyText(`log p(${JSON.stringify(d.target)})`) } },
      shapes: [{ type: "line", x0: d.current, x1: d.current, yref: "paper", y0: 0, y1: 1, line: { color: c.accent, width: 1, dash: "dot" } }],
      legend: { orientation: "h" },
    }), { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"] });
    doseChart.dataset.drawn = "1";
  });

  listen(model, ui, ["rows"], drawRows);
  listen(model, ui, ["targets_info", "max_new_tokens", "temperature", "seed"], drawSettings);
  listen(model, ui, ["baseline", "steered", "differs", "logprob_diff", "request_id", "result_id", "prompt_tokens", "kl"], drawOutput);
  listen(model, ui, ["next_token"], drawShift);
  listen(model, ui, ["dose"], drawDose);
  onThemeChange(ui, drawDose);
  ui.guard(() => { drawRows(); drawSettings(); drawOutput(); drawShift(); drawDose(); })();
}

export default { render: renderSteering };
