// FeatureDashboard: a dictionary / feature picker and the feature's card.

function renderDashboard({ model, el }) {
  const ui = shell(model, el, "Feature dashboard");
  const dictSel = h("select", { class: "iw-dict", "aria-label": "dictionary" });
  const featIn = h("input", { type: "number", class: "iw-feature-input", min: 0, step: 1, "aria-label": "feature id", style: { width: "7em" } });
  const prev = h("button", { class: "iw-btn iw-prev", text: "\u2190", "aria-label": "previous feature" });
  const next = h("button", { class: "iw-btn iw-next", text: "\u2192", "aria-label": "next feature" });
  const cardBox = h("div", { class: "iw-card iw-dim-when-busy" });
  ui.body.append(h("div", { class: "iw-row" }, h("span", { class: "iw-label", text: "dictionary" }), dictSel,
    h("span", { class: "iw-label", text: "feature" }), prev, featIn, next), cardBox);

  const syncControls = () => {
    const names = model.get("dictionary_names") || [];
    if (dictSel.options.length !== names.length || [...dictSel.options].some((o, i) => o.value !== names[i])) {
      dictSel.replaceChildren(...names.map((n) => h("option", { value: n, text: n })));
    }
    dictSel.value = model.get("dictionary_name");
    if (document.activeElement !== featIn) featIn.value = String(model.get("feature"));
    const card = model.get("card") || {};
    if (card.n_features) featIn.max = String(card.n_features - 1);
  };
  const draw = () => {
    syncControls();
    renderCard(cardBox, model.get("card"), {
      model, ui,
      onLabel: (text) => push(model, "label", text),
      onSteer: () => model.send({ action: "steer" }),
    });
  };
  dictSel.addEventListener("change", ui.guard(() => push(model, "dictionary_name", dictSel.value)));
  const goto = ui.guard((v) => { if (Number.isInteger(v) && v >= 0) push(model, "feature", v); });
  featIn.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); goto(Number(featIn.value)); } });
  featIn.addEventListener("change", () => goto(Number(featIn.value)));
  prev.addEventListener("click", () => goto(Math.max(0, model.get("feature") - 1)));
  next.addEventListener("click", () => goto(model.get("feature") + 1));
  listen(model, ui, ["card", "dictionary_names"], draw);
  listen(model, ui, ["feature", "dictionary_name"], syncControls);
  onThemeChange(ui, draw);
  ui.guard(draw)();
}

export default { render: renderDashboard };
