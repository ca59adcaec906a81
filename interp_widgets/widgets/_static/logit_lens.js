// LogitLens panel: heatmap (layers up, positions across) of the top-1 token's probability,
// the top-k list for the selected (layer, position), and the prompt's tokens.

function renderLens({ model, el }) {
  const ui = shell(model, el, "Logit lens");
  const chart = h("div", { class: "iw-chart iw-lens-chart", "aria-label": "logit lens heatmap" });
  const detail = h("div", { class: "iw-lens-detail" });
  const tokensBox = h("div", { class: "iw-lens-tokens" });
  const layerInput = h("input", { type: "range", min: 0, max: 0, step: 1, value: 0, "aria-label": "layer", class: "iw-lens-layer" });
  const layerLabel = h("span", { class: "iw-num" });
  const head = h("div", { class: "iw-row iw-small iw-muted" });
  ui.body.append(
    promptBox(model, ui),
    head,
    tokensBox,
    h("div", { class: "iw-row" }, h("span", { class: "iw-label", text: "layer" }), layerInput, layerLabel),
    h("div", { class: "iw-cols" }, chart, detail),
  );

  const data = () => {
    const tokens = model.get("tokens") || [];
    const layers = model.get("layers") || [];
    const k = model.get("k") || 1;
    return { tokens, layers, k, tt: model.get("top_tokens") || [], probs: f32(model.get("top_probs")),
      fin: f32(model.get("final_prob")), finTok: model.get("final_tokens") || [] };
  };
  const sel = () => {
    const [layer, pos] = model.get("selected") || [-1, -1];
    return { layer, pos };
  };
  const select = (layer, pos) => push(model, "selected", [layer, pos]);

  let bound = false;
  const drawChart = ui.guard(async () => {
    const { tokens, layers, k, tt, probs } = data();
    if (!tokens.length || !layers.length) { chart.replaceChildren(h("div", { class: "iw-muted", text: "type a prompt and press Enter" })); return; }
    const P = tokens.length;
    const z = layers.map((_, li) => tokens.map((__, p) => probs[(li * P + p) * k]));
    const text = layers.map((_, li) => tokens.map((__, p) => plotlyText(showToken((tt[li] && tt[li][p] && tt[li][p][0]) || ""))));
    const c = themeColors(el);
    const Plotly = await getPlotly(model);
    const trace = {
      type: "heatmap", z, x: tokens.map((_, i) => i), y: layers, text, texttemplate: "%{text}",
      textfont: { size: 10 }, colorscale: [[0, "rgba(31,119,180,0.04)"], [1, "rgba(31,119,180,1)"]], zmin: 0, zmax: 1, hoverongaps: false,
      colorbar: { title: { text: "p(top-1)" }, thickness: 10 },
      hovertemplate: "layer %{y}, pos %{x}<br>top-1 %{text}: %{z:.3f}<extra></extra>",
    };
    const layout = mergeLayout(plotlyTheme(el), {
      height: Math.max(240, 90 + layers.length * 18),
      margin: { l: 40, r: 10, t: 10, b: 70 },
      font: { color: c.fg, size: 11 },
      xaxis: { tickmode: "array", tickvals: tokens.map((_, i) => i), ticktext: tokens.map((t) => plotlyText(showToken(t))), tickangle: -45 },
      yaxis: { title: { text: "layer" }, dtick: layers.length > 16 ? 2 : 1 },
    });
    trace.colorbar.tickfont = { color: c.fg };
    await Plotly.react(chart, [trace], layout, { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"] });
    if (!bound) {
      bound = true;
      chart.on("plotly_click", ui.guard((ev) => { const p = ev.points[0]; select(Number(p.y), Number(p.x)); }));
    }
    chart.dataset.drawn = "1";
  });

  const drawDetail = ui.guard(() => {
    const { tokens, layers, k, tt, probs, fin, finTok } = data();
    const { layer, pos } = sel();
    const li = layers.indexOf(layer);
    layerInput.max = String(Math.max(0, layers.length - 1));
    if (li >= 0) layerInput.value = String(li);
    layerLabel.textContent = li >= 0 ? String(layer) : "";
    head.replaceChildren(`${model.get("model_name")} \u2014 ${tokens.length} tokens \u00d7 ${layers.length} layers; colour: p(final prediction) at the chosen layer`);
    // tokens coloured by how much the chosen layer already believes the final prediction
    const P = tokens.length;
    const vals = tokens.map((_, p) => (li >= 0 ? fin[li * P + p] : 0));
    tokensBox.replaceChildren(tokenStrip(tokens, vals, {
      selected: pos, max: 1, onPick: (i) => select(layer >= 0 ? layer : layers[layers.length - 1], i),
      title: (i, v) => `pos ${i}: final prediction ${JSON.stringify(finTok[i] || "")} has p=${fmt(v)} here`,
    }));
    if (li < 0 || pos < 0 || pos >= P) { detail.replaceChildren(); return; }
    const list = h("div", { class: "iw-list", role: "list" });
    for (let r = 0; r < k; r++) {
      const p = probs[(li * P + pos) * k + r];
      const t = (tt[li] && tt[li][pos] && tt[li][pos][r]) || "";
      list.append(h("div", { class: "iw-item", role: "listitem" },
        h("span", { class: "iw-item-name iw-tok", text: showToken(t), title: JSON.stringify(t) }), bar(p), h("span", { class: "iw-num", text: fmt(p) })));
    }
    detail.replaceChildren(
      h("div", { class: "iw-section-title" }, `layer ${layer}, after `, h("span", { class: "iw-tok", text: showToken(tokens[pos]) })),
      list,
      h("div", { class: "iw-small iw-muted" }, `final prediction `, h("span", { class: "iw-tok", text: showToken(finTok[pos] || "") }), `: p=${fmt(fin[li * P + pos])} at this layer`),
    );
  });

  layerInput.addEventListener("input", ui.guard(() => {
    const layers = model.get("layers") || [];
    select(layers[Number(layerInput.value)] ?? -1, sel().pos);
  }));
  listen(model, ui, ["tokens", "top_probs", "top_tokens", "layers"], () => { drawChart(); drawDetail(); });
  listen(model, ui, ["selected", "final_prob"], drawDetail);
  onThemeChange(ui, drawChart);
  drawChart();
  drawDetail();
  return () => { try { globalThis.Plotly && globalThis.Plotly.purge(chart); } catch (e) { /* already gone */ } };
}

export default { render: renderLens };
