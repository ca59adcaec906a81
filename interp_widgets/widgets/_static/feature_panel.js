// FeaturePanel: prompt box, tokens coloured by the selected feature, the clicked token's top
// features, search, dictionary chooser, and the selected feature's dashboard card.

function renderFeaturePanel({ model, el }) {
  const ui = shell(model, el, "Feature activations");
  const dictSel = h("select", { class: "iw-dict", "aria-label": "dictionary (layer)" });
  const search = h("input", { type: "search", class: "iw-search", placeholder: "search features: id, name#id or label", "aria-label": "search features", size: 30 });
  const featLine = h("div", { class: "iw-small iw-muted iw-feature-line" });
  const tokensBox = h("div", { class: "iw-fp-tokens" });
  const featList = h("div", { class: "iw-list iw-token-features", role: "list", "aria-label": "top features at the selected token" });
  const results = h("div", { class: "iw-list iw-search-results", role: "list", "aria-label": "search results" });
  const cardBox = h("div", { class: "iw-card iw-dim-when-busy" });
  const tokTitle = h("div", { class: "iw-section-title" });
  ui.body.append(
    promptBox(model, ui),
    h("div", { class: "iw-row" }, h("span", { class: "iw-label", text: "dictionary" }), dictSel, search),
    results,
    featLine,
    tokensBox,
    h("div", { class: "iw-cols" }, h("div", { style: { flex: "0 1 360px" } }, tokTitle, featList), cardBox),
  );

  const pick = (dictionary, feature) => model.send({ action: "pick", dictionary, feature });
  const featureRow = (r, m, selected) => activatable(
    h("div", { class: "iw-item" + (selected ? " iw-selected" : ""), role: "listitem", "data-feature": r.feature, "data-dictionary": r.dictionary || "" },
      h("span", { class: "iw-item-name", text: `#${r.feature} ${r.label || ""}`, title: r.label || `feature ${r.feature}` }),
      bar(r.activation / m), h("span", { class: "iw-num", text: fmt(r.activation) })),
    ui.guard(() => pick(r.dictionary || model.get("dictionary"), r.feature)), `feature ${r.feature} ${r.label || ""}`);

  const drawDicts = () => {
    const info = model.get("dictionaries_info") || [];
    dictSel.replaceChildren(...info.map((d) => h("option", { value: d.name, text: `${d.name} (${d.site}, ${d.n_features})` })));
    dictSel.value = model.get("dictionary");
  };
  const drawTokens = () => {
    const tokens = model.get("tokens") || [];
    const vals = f32(model.get("token_values"));
    const sinks = model.get("is_sink") || [];
    const sel = model.get("selected_token");
    const scale = model.get("value_scale") || 1;
    const f = model.get("feature");
    featLine.textContent = f >= 0 ? `colour: activation of ${model.get("dictionary")} #${f} (scale ${fmt(scale)}); dotted underline = attention sink` : "click a token, then a feature";
    const strip = tokenStrip(tokens, vals.length === tokens.length ? vals : null, {
      selected: sel, max: scale, onPick: (i) => push(model, "selected_token", i),
      title: (i, v) => `pos ${i} ${JSON.stringify(tokens[i])}: ${fmt(v || 0)}${sinks[i] ? " (sink)" : ""}`,
    });
    sinks.forEach((s, i) => { if (s && strip.children[i]) strip.children[i].classList.add("iw-sink"); });
    tokensBox.replaceChildren(strip);
  };
  const drawFeatures = () => {
    const rows = model.get("token_features") || [];
    const tokens = model.get("tokens") || [];
    const sel = model.get("selected_token");
    tokTitle.replaceChildren("Top features at ", h("span", { class: "iw-tok", text: showToken(tokens[sel] ?? "") }), ` (pos ${sel})`);
    const m = Math.max(1e-9, ...rows.map((r) => Math.abs(r.activation)));
    const f = model.get("feature");
    featList.replaceChildren(...(rows.length ? rows.map((r) => featureRow(r, m, r.feature === f)) : [h("div", { class: "iw-muted iw-small", text: "no active features here" })]));
  };
  const drawResults = () => {
    const rows = model.get("search_results") || [];
    const q = model.get("query");
    const m = Math.max(1e-9, ...rows.map((r) => Math.abs(r.activation)));
    results.replaceChildren(...(q && !rows.length ? [h("div", { class: "iw-muted iw-small", text: `no feature matches ${JSON.stringify(q)}` })] : rows.map((r) => featureRow(r, m, false))));
  };
  const drawCard = () => renderCard(cardBox, model.get("card"), {
    model, ui,
    onLabel: (label) => model.send({ action: "label", label }),
    onSteer: () => model.send({ action: "steer" }),
  });

  dictSel.addEventListener("change", ui.guard(() => push(model, "dictionary", dictSel.value)));
  const sendQuery = debounce(() => push(model, "query", search.value), 250);
  search.addEventListener("input", sendQuery);
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); sendQuery.flush(); } });
  search.value = model.get("query") || "";

  listen(model, ui, ["dictionaries_info", "dictionary"], drawDicts);
  listen(model, ui, ["tokens", "token_values", "selected_token", "is_sink", "value_scale", "feature"], drawTokens);
  listen(model, ui, ["token_features", "feature", "selected_token"], drawFeatures);
  listen(model, ui, ["search_results", "query"], drawResults);
  listen(model, ui, ["card"], drawCard);
  onThemeChange(ui, drawCard);
  ui.guard(() => { drawDicts(); drawTokens(); drawFeatures(); drawResults(); drawCard(); })();
}

export default { render: renderFeaturePanel };
