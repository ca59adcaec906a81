// A feature's dashboard card (shared by FeatureDashboard and FeaturePanel).
// card: {dictionary, index, label, site, examples: [{tokens, acts, max_position, activation, source}],
//        hist_edges, hist_counts, density, mean_activation, max_activation, n_tokens,
//        promoted: [[token, value]], suppressed: [[token, value]], notes: [str]}

function renderCard(container, card, { model, ui, onLabel = null, onSteer = null }) {
  if (!card || card.index === undefined) { container.replaceChildren(h("div", { class: "iw-muted", text: "no feature selected" })); return; }
  const parts = [];
  const labelInput = h("input", { type: "text", class: "iw-label-input", "aria-label": "feature label", placeholder: "add a label\u2026", size: 36 });
  labelInput.value = card.label || "";
  const commit = ui.guard(() => { if (onLabel && labelInput.value !== (card.label || "")) onLabel(labelInput.value); });
  labelInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); commit(); } });
  labelInput.addEventListener("change", commit);
  if (!onLabel) labelInput.disabled = true;
  parts.push(h("div", { class: "iw-row iw-card-head" },
    h("span", { class: "iw-card-id", text: `${card.dictionary} #${card.index}` }),
    h("span", { class: "iw-muted iw-small", text: card.site ? `@ ${card.site}` : "" }),
    labelInput,
    onSteer ? h("button", { class: "iw-btn iw-primary iw-steer-btn", text: "Steer with this", onclick: ui.guard(onSteer) }) : null));
  const stats = [];
  if (card.density !== null && card.density !== undefined) stats.push(`density ${(100 * card.density).toPrecision(3)}% of ${Number(card.n_tokens).toLocaleString()} tokens`);
  if (card.mean_activation !== null && card.mean_activation !== undefined) stats.push(`mean ${fmt(card.mean_activation)}`);
  if (card.max_activation !== null && card.max_activation !== undefined) stats.push(`max ${fmt(card.max_activation)}`);
  if (stats.length) parts.push(h("div", { class: "iw-small iw-muted iw-card-stats", text: stats.join(" \u00b7 ") }));

  const cols = h("div", { class: "iw-cols" });
  // top examples
  const exBox = h("div", { class: "iw-examples" }, h("div", { class: "iw-section-title", text: "Top activating examples" }));
  const maxAct = card.max_activation || Math.max(1e-9, ...(card.examples || []).map((e) => e.activation));
  for (const ex of card.examples || []) {
    const strip = tokenStrip(ex.tokens, ex.acts, { max: maxAct, title: (i, v) => `${JSON.stringify(ex.tokens[i])}: ${fmt(v)}` });
    const maxTok = strip.children[ex.max_position];
    if (maxTok) maxTok.classList.add("iw-max");
    exBox.append(h("div", { class: "iw-example" }, h("span", { class: "iw-num iw-small", text: fmt(ex.activation) }), strip));
  }
  if (!(card.examples || []).length) exBox.append(h("div", { class: "iw-muted iw-small", text: "no examples" }));
  // histogram + logit effects
  const side = h("div", {});
  const hist = h("div", { class: "iw-chart iw-hist", style: { minHeight: "180px" } });
  if ((card.hist_counts || []).length) {
    side.append(h("div", { class: "iw-section-title", text: "Activation histogram (non-zero)" }), hist);
    getPlotly(model).then(ui.guard((Plotly) => {
      const e = card.hist_edges, c = card.hist_counts;
      const x = c.map((_, i) => (e[i] + e[i + 1]) / 2);
      const th = themeColors(container);
      Plotly.react(hist, [{ type: "bar", x, y: c, width: c.map((_, i) => e[i + 1] - e[i]), marker: { color: "rgb(255,127,14)" },
        hovertemplate: "activation %{x:.3g}<br>%{y} tokens<extra></extra>" }],
      mergeLayout(plotlyTheme(container), { height: 180, margin: { l: 40, r: 10, t: 6, b: 30 },
        font: { color: th.fg, size: 10 }, yaxis: { type: "log", title: { text: "tokens" } }, xaxis: { title: { text: "activation" } }, bargap: 0.02 }),
      { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"] }).then(() => { hist.dataset.drawn = "1"; });
    })).catch((e) => ui.showError(e));
  }
  const effList = (rows, sign, title, cls) => {
    const m = Math.max(1e-9, ...(rows || []).map((r) => Math.abs(r[1])));
    return h("div", { class: cls }, h("div", { class: "iw-section-title", text: title }),
      h("div", { class: "iw-list" }, (rows || []).map(([t, v]) => h("div", { class: "iw-item" },
        h("span", { class: "iw-item-name iw-tok", text: showToken(t), title: JSON.stringify(t) }), bar(v / m, sign), h("span", { class: "iw-num", text: fmt(v) })))));
  };
  if ((card.promoted || []).length || (card.suppressed || []).length) {
    side.append(effList(card.promoted, 1, "Promotes", "iw-promoted"), effList(card.suppressed, -1, "Suppresses", "iw-suppressed"));
  }
  cols.append(exBox, side);
  parts.push(cols);
  for (const n of card.notes || []) parts.push(h("div", { class: "iw-small iw-muted iw-note", text: n }));
  container.replaceChildren(...parts);
}
