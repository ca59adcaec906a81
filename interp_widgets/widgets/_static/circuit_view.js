// CircuitView: attribution graph on two stacked canvases (base: edges + nodes; overlay: hover and
// selection), token positions across and layers up. Nodes and edges arrive as typed arrays; pruning,
// hit-testing, zoom and pan run here, so hover stays smooth at 5k nodes / 100k edges.

const KIND_STYLE = {
  embed: { fill: "#2ca02c", shape: "square" },
  feature: { fill: "#ff7f0e", shape: "circle" },
  error: { fill: "#8c8c8c", shape: "diamond" },
  logit: { fill: "#9467bd", shape: "square" },
  supernode: { fill: "#d62728", shape: "circle" },
};

function loadGraph(model) {
  const idx = model.get("edge_index_bytes") === 2 ? (v) => typed(v, Uint16Array) : (v) => typed(v, Uint32Array);
  const g = {
    ids: model.get("node_ids") || [],
    labels: model.get("node_labels") || [],
    kinds: model.get("kinds") || [],
    kind: u8(model.get("node_kind")),
    layer: i32(model.get("node_layer")),
    pos: i32(model.get("node_pos")),
    feature: i32(model.get("node_feature")),
    act: f32(model.get("node_act")),
    infl: f32(model.get("node_infl")),
    src: idx(model.get("edge_src")),
    dst: idx(model.get("edge_dst")),
    w: f32(model.get("edge_w")),
    tokens: model.get("tokens") || [],
    nLayers: model.get("n_layers") || 0,
  };
  g.n = g.ids.length;
  g.m = g.w.length;
  g.index = new Map(g.ids.map((x, i) => [x, i]));
  g.kindName = (i) => g.kinds[g.kind[i]] || "feature";
  g.label = (i) => g.labels[i] || g.ids[i];
  return g;
}

/** Same rule as circuit_view.keep_nodes / keep_edges in Python (same arrays, same order). */
function prune(g, nodeThr, edgeThr, alwaysIds) {
  const keep = new Uint8Array(g.n);
  const cand = [];
  for (let i = 0; i < g.n; i++) {
    const k = g.kindName(i);
    if (k === "embed" || k === "logit") keep[i] = 1; else cand.push(i);
  }
  for (const x of alwaysIds) { const i = g.index.get(x); if (i !== undefined) keep[i] = 1; }
  const rest = cand.filter((i) => !keep[i]);
  const absInfl = (i) => Math.abs(g.infl[i]);
  rest.sort((a, b) => (absInfl(b) - absInfl(a)) || (a - b));  // stable by index, like numpy's stable argsort
  let total = 0;
  for (const i of rest) total += absInfl(i);
  if (total > 0) {
    let before = 0;
    for (const i of rest) { if (before < nodeThr * total) keep[i] = 1; before += absInfl(i); }
  } else if (nodeThr >= 1) for (const i of rest) keep[i] = 1;
  const ekeep = new Uint8Array(g.m);
  let etotal = 0;
  for (let e = 0; e < g.m; e++) if (keep[g.src[e]] && keep[g.dst[e]]) etotal += Math.abs(g.w[e]);
  if (etotal > 0) {
    let before = 0;
    for (let e = 0; e < g.m; e++) {
      if (!(keep[g.src[e]] && keep[g.dst[e]])) continue;
      if (before < edgeThr * etotal) ekeep[e] = 1;
      before += Math.abs(g.w[e]);
    }
  }
  let nv = 0, ne = 0;
  for (let i = 0; i < g.n; i++) nv += keep[i];
  for (let e = 0; e < g.m; e++) ne += ekeep[e];
  return { keep, ekeep, nv, ne };
}

/** Layout: x by position, y by layer (embed row at the bottom, logits on top); a cell's nodes
 *  are spread in a small grid, most influential first. Units: layout pixels before zoom. */
function layout(g, width, height) {
  const P = Math.max(1, g.tokens.length, ...Array.from(g.pos, (p) => p + 1));
  const rows = g.nLayers + 2;
  const left = 46, right = 10, top = 12, bottom = 58;
  const colW = (width - left - right) / P;
  const rowH = (height - top - bottom) / rows;
  const x = new Float32Array(g.n), y = new Float32Array(g.n), r = new Float32Array(g.n);
  const cells = new Map();
  for (let i = 0; i < g.n; i++) {
    const k = g.kindName(i);
    const row = k === "embed" ? -1 : k === "logit" ? g.nLayers : g.layer[i];
    const key = `${row}:${g.pos[i]}`;
    if (!cells.has(key)) cells.set(key, []);
    cells.get(key).push(i);
  }
  let maxInfl = 1e-12;
  for (let i = 0; i < g.n; i++) maxInfl = Math.max(maxInfl, Math.abs(g.infl[i]));
  for (const [key, members] of cells) {
    const [row, p] = key.split(":").map(Number);
    members.sort((a, b) => Math.abs(g.infl[b]) - Math.abs(g.infl[a]) || a - b);
    const cx = left + (p + 0.5) * colW;
    const cy = top + (rows - 1 - (row + 1) + 0.5) * rowH;
    const perLine = Math.max(1, Math.ceil(Math.sqrt(members.length * (colW / Math.max(1, rowH)))));
    const lines = Math.ceil(members.length / perLine);
    members.forEach((i, j) => {
      const line = Math.floor(j / perLine), col = j % perLine;
      const inLine = Math.min(perLine, members.length - line * perLine);
      x[i] = cx + (inLine > 1 ? (col / (inLine - 1) - 0.5) * colW * 0.8 : 0);
      y[i] = cy + (lines > 1 ? (line / (lines - 1) - 0.5) * rowH * 0.7 : 0);
      r[i] = 2.5 + 7 * Math.sqrt(Math.abs(g.infl[i]) / maxInfl);
    });
  }
  return { x, y, r, P, rows, left, top, bottom, colW, rowH, width, height };
}

function drawShape(ctx, shape, x, y, r) {
  if (shape === "square") ctx.rect(x - r, y - r, 2 * r, 2 * r);
  else if (shape === "diamond") { ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath(); }
  else { ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI); }
}

function renderCircuit({ model, el }) {
  const ui = shell(model, el, "Circuit");
  const W = 760, H = 520;
  const wrap = h("div", { class: "iw-graph-wrap", style: { position: "relative", width: `${W}px`, height: `${H}px`, maxWidth: "100%" } });
  const base = h("canvas", { class: "iw-graph-base", style: { position: "absolute", left: 0, top: 0, width: `${W}px`, height: `${H}px` } });
  const over = h("canvas", { class: "iw-graph-overlay", tabindex: 0, role: "application",
    "aria-label": "attribution graph: arrow keys move between nodes, Enter selects, Shift+Enter adds to the selection, P pins, G groups",
    style: { position: "absolute", left: 0, top: 0, width: `${W}px`, height: `${H}px`, cursor: "crosshair" } });
  const tip = h("div", { class: "iw-graph-tip", role: "tooltip", hidden: true });
  wrap.append(base, over, tip);

  const nodeThr = h("input", { type: "range", min: 0, max: 1, step: 0.01, class: "iw-node-thr", "aria-label": "node pruning threshold" });
  const edgeThr = h("input", { type: "range", min: 0, max: 1, step: 0.005, class: "iw-edge-thr", "aria-label": "edge pruning threshold" });
  const nodeThrVal = h("span", { class: "iw-num" }), edgeThrVal = h("span", { class: "iw-num" });
  const counts = h("span", { class: "iw-muted iw-counts" });
  const groupName = h("input", { type: "text", placeholder: "supernode name", class: "iw-group-name", "aria-label": "supernode name", size: 14 });
  const btnGroup = h("button", { class: "iw-btn iw-group", text: "Group selection" });
  const btnPin = h("button", { class: "iw-btn iw-pin", text: "Pin / unpin" });
  const btnIntervene = h("button", { class: "iw-btn iw-intervene", text: "Intervene (ablate)" });
  const btnClear = h("button", { class: "iw-btn iw-clear", text: "Clear selection" });
  const btnReset = h("button", { class: "iw-btn iw-reset", text: "Reset view" });
  const detail = h("div", { class: "iw-graph-detail" });
  const nodeList = h("div", { class: "iw-list iw-node-list", role: "list", "aria-label": "most influential nodes" });
  const groups = h("div", { class: "iw-supernodes" });
  const interv = h("div", { class: "iw-intervention" });
  const titleLine = h("div", { class: "iw-small iw-muted iw-graph-title" });
  ui.body.append(
    titleLine,
    h("div", { class: "iw-row" },
      h("label", { class: "iw-label", text: "nodes" }), nodeThr, nodeThrVal,
      h("label", { class: "iw-label", text: "edges" }), edgeThr, edgeThrVal, counts),
    h("div", { class: "iw-row" }, groupName, btnGroup, btnPin, btnIntervene, btnClear, btnReset),
    h("div", { class: "iw-cols" }, wrap,
      h("div", { class: "iw-graph-side", style: { flex: "1 1 260px" } }, detail, interv, groups,
        h("div", { class: "iw-section-title", text: "Top nodes" }), nodeList)),
  );

  let g = null, L = null, vis = null;
  let view = { s: 1, tx: 0, ty: 0 };
  let hover = -1, focusIdx = -1;
  const dpr = globalThis.devicePixelRatio || 1;
  for (const c of [base, over]) { c.width = W * dpr; c.height = H * dpr; }
  const bctx = base.getContext("2d"), octx = over.getContext("2d");
  const selectedIdx = () => (model.get("selected") || []).map((x) => g.index.get(x)).filter((i) => i !== undefined);
  const pinnedSet = () => new Set(model.get("pinned") || []);

  const toScreen = (x, y) => [x * view.s + view.tx, y * view.s + view.ty];
  const toLayout = (sx, sy) => [(sx - view.tx) / view.s, (sy - view.ty) / view.s];

  function recompute() {
    const t0 = performance.now();
    const always = [...(model.get("pinned") || []), ...(model.get("selected") || [])];
    vis = prune(g, Number(model.get("node_threshold")), Number(model.get("edge_threshold")), always);
    counts.textContent = `${vis.nv} / ${g.n} nodes, ${vis.ne} / ${g.m} edges shown`;
    ui.root.dataset.visibleNodes = String(vis.nv);
    ui.root.dataset.visibleEdges = String(vis.ne);
    ui.root.dataset.pruneMs = (performance.now() - t0).toFixed(1);
  }

  function drawBase() {
    const t0 = performance.now();
    const c = themeColors(el);
    bctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    bctx.clearRect(0, 0, W, H);
    // position 0 is an attention sink in most models (SmolLM2: residual norm ~24,000): shade it
    { const [x0] = toScreen(L.left, 0), [x1] = toScreen(L.left + L.colW, 0);
      bctx.fillStyle = c.border; bctx.globalAlpha = 0.12; bctx.fillRect(x0, 0, x1 - x0, H - L.bottom + 4); bctx.globalAlpha = 1;
      bctx.fillStyle = c.fg2; bctx.font = "9px sans-serif"; bctx.textAlign = "center"; bctx.fillText("sink", (x0 + x1) / 2, 8); }
    // grid and axes (in screen space so text stays crisp)
    bctx.strokeStyle = c.border; bctx.globalAlpha = 0.35; bctx.lineWidth = 1;
    bctx.beginPath();
    for (let p = 0; p <= L.P; p++) { const [sx] = toScreen(L.left + p * L.colW, 0); bctx.moveTo(sx, 0); bctx.lineTo(sx, H - L.bottom + 4); }
    bctx.stroke(); bctx.globalAlpha = 1;
    bctx.fillStyle = c.fg2; bctx.font = "11px sans-serif"; bctx.textAlign = "right"; bctx.textBaseline = "middle";
    for (let row = -1; row <= g.nLayers; row++) {
      const [, sy] = toScreen(0, L.top + (L.rows - 1 - (row + 1) + 0.5) * L.rowH);
      if (sy < 0 || sy > H - L.bottom + 10) continue;
      const lab = row === -1 ? "emb" : row === g.nLayers ? "logit" : String(row);
      if (row === -1 || row === g.nLayers || L.rowH * view.s > 11 || row % 5 === 0) bctx.fillText(lab, 40, sy);
    }
    bctx.save();
    bctx.textAlign = "right"; bctx.fillStyle = c.fg;
    for (let p = 0; p < L.P; p++) {
      const [sx] = toScreen(L.left + (p + 0.5) * L.colW, 0);
      if (sx < 0 || sx > W) continue;
      bctx.save(); bctx.translate(sx, H - L.bottom + 10); bctx.rotate(-Math.PI / 4);
      bctx.fillText(showToken(g.tokens[p] ?? String(p)).slice(0, 14), 0, 0); bctx.restore();
    }
    bctx.restore();
    // edges, bucketed by sign and strength: one path per bucket (fast for 100k edges)
    bctx.setTransform(dpr * view.s, 0, 0, dpr * view.s, dpr * view.tx, dpr * view.ty);
    let maxW = 1e-12;
    for (let e = 0; e < g.m; e++) if (vis.ekeep[e]) { maxW = Math.abs(g.w[e]); break; }  // sorted: first kept is max
    const NB = 6;
    const buckets = [[], []].map(() => Array.from({ length: NB }, () => []));
    for (let e = g.m - 1; e >= 0; e--) {
      if (!vis.ekeep[e]) continue;
      const t = Math.abs(g.w[e]) / maxW;
      buckets[g.w[e] >= 0 ? 0 : 1][Math.min(NB - 1, Math.floor(t * NB))].push(e);
    }
    for (let b = 0; b < NB; b++) {
      for (const s of [0, 1]) {
        const list = buckets[s][b];
        if (!list.length) continue;
        bctx.strokeStyle = `rgba(${s === 0 ? c.pos : c.neg},${(0.18 + 0.15 * b).toFixed(2)})`;
        bctx.lineWidth = (0.5 + 0.55 * b) / view.s;
        bctx.beginPath();
        for (const e of list) { const a = g.src[e], d = g.dst[e]; bctx.moveTo(L.x[a], L.y[a]); bctx.lineTo(L.x[d], L.y[d]); }
        bctx.stroke();
      }
    }
    // supernode boxes
    const sn = model.get("supernodes") || {};
    bctx.setLineDash([4 / view.s, 3 / view.s]);
    for (const [name, members] of Object.entries(sn)) {
      const idx = members.map((x) => g.index.get(x)).filter((i) => i !== undefined);
      if (!idx.length) continue;
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const i of idx) { x0 = Math.min(x0, L.x[i] - L.r[i]); y0 = Math.min(y0, L.y[i] - L.r[i]); x1 = Math.max(x1, L.x[i] + L.r[i]); y1 = Math.max(y1, L.y[i] + L.r[i]); }
      bctx.strokeStyle = KIND_STYLE.supernode.fill; bctx.lineWidth = 1.5 / view.s;
      bctx.strokeRect(x0 - 4, y0 - 4, x1 - x0 + 8, y1 - y0 + 8);
      bctx.fillStyle = KIND_STYLE.supernode.fill; bctx.font = `${10 / view.s}px sans-serif`; bctx.textAlign = "left";
      bctx.fillText(name, x0 - 4, y0 - 7);
    }
    bctx.setLineDash([]);
    // nodes, one path per kind
    const pins = pinnedSet();
    for (const kindName of g.kinds) {
      const st = KIND_STYLE[kindName] || KIND_STYLE.feature;
      bctx.fillStyle = st.fill; bctx.beginPath();
      for (let i = 0; i < g.n; i++) if (vis.keep[i] && g.kindName(i) === kindName) drawShape(bctx, st.shape, L.x[i], L.y[i], L.r[i] / Math.sqrt(view.s));
      bctx.fill();
    }
    bctx.strokeStyle = c.fg; bctx.lineWidth = 2 / view.s;
    for (const id of pins) { const i = g.index.get(id); if (i === undefined) continue; bctx.beginPath(); bctx.arc(L.x[i], L.y[i], L.r[i] / Math.sqrt(view.s) + 3 / view.s, 0, 2 * Math.PI); bctx.stroke(); }
    ui.root.dataset.drawMs = (performance.now() - t0).toFixed(1);
    ui.root.dataset.drawn = String(Number(ui.root.dataset.drawn || 0) + 1);
    ui.root.dataset.drawnAt = String(Date.now());
  }

  function drawOverlay() {
    const c = themeColors(el);
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, W, H);
    octx.setTransform(dpr * view.s, 0, 0, dpr * view.s, dpr * view.tx, dpr * view.ty);
    const sel = selectedIdx();
    const selSet = new Set(sel);
    // incident edges of selected nodes, drawn strong
    if (sel.length) {
      let n = 0;
      for (let e = 0; e < g.m && n < 400; e++) {
        if (!(selSet.has(g.src[e]) || selSet.has(g.dst[e]))) continue;
        if (!(vis.keep[g.src[e]] && vis.keep[g.dst[e]])) continue;
        n++;
        octx.strokeStyle = `rgba(${g.w[e] >= 0 ? c.pos : c.neg},0.9)`;
        octx.lineWidth = 2 / view.s;
        octx.beginPath(); octx.moveTo(L.x[g.src[e]], L.y[g.src[e]]); octx.lineTo(L.x[g.dst[e]], L.y[g.dst[e]]); octx.stroke();
      }
    }
    const ring = (i, color, width) => {
      octx.strokeStyle = color; octx.lineWidth = width / view.s;
      octx.beginPath(); octx.arc(L.x[i], L.y[i], L.r[i] / Math.sqrt(view.s) + 4 / view.s, 0, 2 * Math.PI); octx.stroke();
    };
    for (const i of sel) ring(i, c.accent, 3);
    if (hover >= 0) ring(hover, c.fg, 2);
    if (focusIdx >= 0 && document.activeElement === over) ring(focusIdx, c.accent, 1.5);
  }

  const nodeAt = (sx, sy) => {
    const [lx, ly] = toLayout(sx, sy);
    let best = -1, bd = Infinity;
    for (let i = 0; i < g.n; i++) {
      if (!vis.keep[i]) continue;
      const dx = L.x[i] - lx, dy = L.y[i] - ly, d = dx * dx + dy * dy;
      const rr = (L.r[i] / Math.sqrt(view.s) + 4 / view.s);
      if (d < rr * rr && d < bd) { bd = d; best = i; }
    }
    return best;
  };

  function showTip(i, sx, sy) {
    if (i < 0) { tip.hidden = true; return; }
    const k = g.kindName(i);
    tip.replaceChildren(
      h("div", { class: "iw-tip-label", text: g.label(i) }),
      h("div", { class: "iw-small iw-muted" }, `${k} \u00b7 layer ${g.layer[i]} \u00b7 pos ${g.pos[i]} `, h("span", { class: "iw-tok", text: showToken(g.tokens[g.pos[i]] ?? "") })),
      h("div", { class: "iw-small" }, `activation ${fmt(g.act[i])} \u00b7 influence ${fmt(g.infl[i])}`),
    );
    tip.hidden = false;
    tip.style.left = `${Math.min(W - 220, sx + 12)}px`;
    tip.style.top = `${Math.max(0, sy - 10)}px`;
  }

  const select = (i, add) => {
    const cur = model.get("selected") || [];
    let next;
    if (i < 0) next = [];
    else if (add) next = cur.includes(g.ids[i]) ? cur.filter((x) => x !== g.ids[i]) : [...cur, g.ids[i]];
    else next = [g.ids[i]];
    push(model, "selected", next);
  };

  let frame = 0;
  const schedule = (what) => {
    if (frame) { frame |= what; return; }
    frame = what;
    requestAnimationFrame(ui.guard(() => { const f = frame; frame = 0; if (f & 1) drawBase(); drawOverlay(); }));
  };

  // --- pointer: hover, click (shift/ctrl adds), drag to pan, wheel to zoom
  let drag = null;
  over.addEventListener("mousemove", ui.guard((ev) => {
    const rect = over.getBoundingClientRect();
    const sx = ev.clientX - rect.left, sy = ev.clientY - rect.top;
    if (drag) {
      const dx = sx - drag.x, dy = sy - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      view.tx = drag.tx + dx; view.ty = drag.ty + dy; schedule(1); return;
    }
    const i = nodeAt(sx, sy);
    if (i !== hover) {
      hover = i; schedule(2);
      const id = i >= 0 ? g.ids[i] : "";
      if (id !== model.get("hovered")) push(model, "hovered", id);
    }
    showTip(i, sx, sy);
  }));
  over.addEventListener("mouseleave", () => { hover = -1; tip.hidden = true; schedule(2); });
  over.addEventListener("mousedown", (ev) => { const rect = over.getBoundingClientRect(); drag = { x: ev.clientX - rect.left, y: ev.clientY - rect.top, tx: view.tx, ty: view.ty, moved: false }; });
  over.addEventListener("mouseup", ui.guard((ev) => {
    const d = drag; drag = null;
    if (d && d.moved) return;
    const rect = over.getBoundingClientRect();
    const i = nodeAt(ev.clientX - rect.left, ev.clientY - rect.top);
    select(i, ev.shiftKey || ev.ctrlKey || ev.metaKey);
  }));
  over.addEventListener("wheel", ui.guard((ev) => {
    ev.preventDefault();
    const rect = over.getBoundingClientRect();
    const sx = ev.clientX - rect.left, sy = ev.clientY - rect.top;
    const f = Math.exp(-ev.deltaY * 0.0015);
    const s2 = Math.min(40, Math.max(0.5, view.s * f));
    view.tx = sx - (sx - view.tx) * (s2 / view.s); view.ty = sy - (sy - view.ty) * (s2 / view.s); view.s = s2;
    schedule(1);
  }), { passive: false });
  over.addEventListener("dblclick", () => { view = { s: 1, tx: 0, ty: 0 }; schedule(1); });

  // --- keyboard: arrows move between visible nodes in reading order, Enter selects
  const visibleOrder = () => {
    const order = [];
    for (let i = 0; i < g.n; i++) if (vis.keep[i]) order.push(i);
    return order.sort((a, b) => L.y[b] - L.y[a] || L.x[a] - L.x[b]);
  };
  over.addEventListener("keydown", ui.guard((ev) => {
    const order = visibleOrder();
    if (!order.length) return;
    let j = order.indexOf(focusIdx);
    if (ev.key === "ArrowRight" || ev.key === "ArrowUp") j = Math.min(order.length - 1, j + 1);
    else if (ev.key === "ArrowLeft" || ev.key === "ArrowDown") j = Math.max(0, j - 1);
    else if (ev.key === "Enter" || ev.key === " ") { if (focusIdx >= 0) select(focusIdx, ev.shiftKey); ev.preventDefault(); return; }
    else if (ev.key === "p" || ev.key === "P") { btnPin.click(); return; }
    else if (ev.key === "g" || ev.key === "G") { btnGroup.click(); return; }
    else if (ev.key === "Escape") { select(-1, false); return; }
    else return;
    ev.preventDefault();
    focusIdx = order[Math.max(0, j)];
    const [sx, sy] = toScreen(L.x[focusIdx], L.y[focusIdx]);
    showTip(focusIdx, sx, sy);
    schedule(2);
  }));
  over.addEventListener("blur", () => { tip.hidden = true; schedule(2); });

  // --- controls
  nodeThr.addEventListener("input", ui.guard(() => { nodeThrVal.textContent = Number(nodeThr.value).toFixed(2); model.set("node_threshold", Number(nodeThr.value)); recompute(); schedule(1); sendThr(); }));
  edgeThr.addEventListener("input", ui.guard(() => { edgeThrVal.textContent = Number(edgeThr.value).toFixed(3); model.set("edge_threshold", Number(edgeThr.value)); recompute(); schedule(1); sendThr(); }));
  const sendThr = debounce(() => model.save_changes(), 150);
  btnGroup.addEventListener("click", ui.guard(() => {
    const sel = model.get("selected") || [];
    if (sel.length < 2) throw new Error("select at least two nodes (shift-click) to group them");
    model.send({ action: "group", nodes: sel, name: groupName.value });
    groupName.value = "";
  }));
  btnPin.addEventListener("click", ui.guard(() => {
    const sel = model.get("selected") || [];
    if (!sel.length) throw new Error("select a node to pin");
    const cur = new Set(model.get("pinned") || []);
    for (const x of sel) { if (cur.has(x)) cur.delete(x); else cur.add(x); }
    push(model, "pinned", [...cur]);
  }));
  btnIntervene.addEventListener("click", ui.guard(() => {
    const sel = model.get("selected") || [];
    if (!sel.length) throw new Error("select feature nodes to intervene on");
    model.send({ action: "intervene", nodes: sel, scale: 0 });
  }));
  btnClear.addEventListener("click", () => select(-1, false));
  btnReset.addEventListener("click", () => { view = { s: 1, tx: 0, ty: 0 }; schedule(1); });

  // --- side panes
  const edgeRows = (i, dir) => {
    const rows = [];
    for (let e = 0; e < g.m && rows.length < 8; e++) {
      if (dir === "in" ? g.dst[e] !== i : g.src[e] !== i) continue;
      rows.push([dir === "in" ? g.src[e] : g.dst[e], g.w[e]]);
    }
    return rows;
  };
  function drawDetail() {
    const sel = selectedIdx();
    const i = sel.length ? sel[sel.length - 1] : -1;
    if (i < 0) { detail.replaceChildren(h("div", { class: "iw-muted", text: "click a node (shift-click to add); drag to pan, wheel to zoom" })); return; }
    const d = model.get("node_detail") || {};
    const edgesList = (dir) => {
      const rows = edgeRows(i, dir);
      const m = Math.max(1e-12, ...rows.map((r) => Math.abs(r[1])));
      return h("div", { class: "iw-list", role: "list" }, rows.map(([j, w]) => activatable(h("div", { class: "iw-item", role: "listitem" },
        h("span", { class: "iw-item-name", text: g.label(j), title: g.ids[j] }), bar(w / m, w), h("span", { class: "iw-num", text: fmt(w) })), () => select(j, false))));
    };
    const parts = [
      h("div", { class: "iw-section-title iw-detail-label", text: g.label(i) }),
      h("div", { class: "iw-small iw-muted" }, `${g.kindName(i)} \u00b7 layer ${g.layer[i]} \u00b7 pos ${g.pos[i]} `, h("span", { class: "iw-tok", text: showToken(g.tokens[g.pos[i]] ?? "") }),
        ` \u00b7 act ${fmt(g.act[i])} \u00b7 infl ${fmt(g.infl[i])}`),
      sel.length > 1 ? h("div", { class: "iw-small", text: `${sel.length} nodes selected` }) : null,
      h("div", { class: "iw-section-title", text: "Incoming" }), edgesList("in"),
      h("div", { class: "iw-section-title", text: "Outgoing" }), edgesList("out"),
    ];
    if (d.id === g.ids[i] && d.feature) {
      const tokList = (rows, sign) => h("div", { class: "iw-tokens" }, (rows || []).map(([t, v]) => h("span", { class: "iw-tok", title: fmt(v), style: { background: actColor(sign * Math.abs(v), Math.max(1e-9, ...(rows || []).map((r) => Math.abs(r[1])))) }, text: showToken(t) })));
      parts.push(h("div", { class: "iw-section-title" }, "Feature ", h("span", { text: `${d.feature.dictionary}#${d.feature.index}` })),
        d.feature.label ? h("div", { text: d.feature.label }) : null,
        h("div", { class: "iw-small iw-muted", text: "promotes" }), tokList(d.promoted, 1),
        h("div", { class: "iw-small iw-muted", text: "suppresses" }), tokList(d.suppressed, -1));
    }
    detail.replaceChildren(...parts.filter(Boolean));
  }
  function drawLists() {
    const order = [];
    for (let i = 0; i < g.n; i++) if (vis.keep[i] && g.kindName(i) !== "embed") order.push(i);
    order.sort((a, b) => Math.abs(g.infl[b]) - Math.abs(g.infl[a]));
    const m = Math.max(1e-12, ...order.slice(0, 1).map((i) => Math.abs(g.infl[i])));
    const sel = new Set(selectedIdx());
    nodeList.replaceChildren(...order.slice(0, 25).map((i) => activatable(
      h("div", { class: "iw-item" + (sel.has(i) ? " iw-selected" : ""), role: "listitem", "data-node": g.ids[i] },
        h("span", { class: "iw-item-name", text: g.label(i), title: `${g.ids[i]} (${g.kindName(i)}, layer ${g.layer[i]}, pos ${g.pos[i]})` }),
        bar(Math.abs(g.infl[i]) / m), h("span", { class: "iw-num", text: fmt(g.infl[i]) })),
      (ev) => select(i, ev.shiftKey || ev.ctrlKey || ev.metaKey))));
    const sn = model.get("supernodes") || {};
    const names = Object.keys(sn);
    groups.replaceChildren(...(names.length ? [h("div", { class: "iw-section-title", text: "Supernodes" })] : []),
      ...names.map((name) => h("div", { class: "iw-row iw-supernode", "data-name": name },
        h("span", { text: `${name} (${sn[name].length})` }),
        h("button", { class: "iw-btn iw-small", text: "select", onclick: () => push(model, "selected", sn[name]) }),
        h("button", { class: "iw-btn iw-small", text: "ungroup", onclick: () => model.send({ action: "ungroup", name }) }))));
  }
  function drawIntervention() {
    const iv = model.get("intervention") || {};
    const rows = iv.rows || [];
    if (!rows.length) { interv.replaceChildren(); return; }
    const cols = Object.keys(rows[0]);
    interv.replaceChildren(
      h("div", { class: "iw-section-title", text: `Intervention on ${(iv.nodes || []).length} node(s), scale ${iv.scale}` }),
      h("table", { class: "iw-small" }, h("tr", {}, cols.map((c) => h("th", { text: c }))),
        rows.slice(0, 12).map((r) => h("tr", {}, cols.map((c) => h("td", { class: typeof r[c] === "number" ? "iw-num" : "", text: typeof r[c] === "number" ? fmt(r[c]) : showToken(r[c] ?? "") }))))));
  }

  function fullReload() {
    g = loadGraph(model);
    L = layout(g, W, H);
    titleLine.textContent = model.get("title") ? `prompt: ${model.get("title")}` : "";
    nodeThr.value = String(model.get("node_threshold")); nodeThrVal.textContent = Number(model.get("node_threshold")).toFixed(2);
    edgeThr.value = String(model.get("edge_threshold")); edgeThrVal.textContent = Number(model.get("edge_threshold")).toFixed(3);
    recompute(); drawBase(); drawOverlay(); drawDetail(); drawLists(); drawIntervention();
  }
  // test / automation hook on the panel element (not a global): screen position of a node
  ui.root.iwNodeCenter = (id) => {
    const i = g.index.get(id);
    if (i === undefined) return null;
    const rect = over.getBoundingClientRect();
    const [sx, sy] = toScreen(L.x[i], L.y[i]);
    return { x: rect.left + sx, y: rect.top + sy, visible: !!vis.keep[i] };
  };

  listen(model, ui, ["node_ids", "edge_w", "edge_src", "edge_dst", "node_infl", "tokens"], fullReload);
  listen(model, ui, ["node_threshold", "edge_threshold"], () => {
    nodeThr.value = String(model.get("node_threshold")); nodeThrVal.textContent = Number(model.get("node_threshold")).toFixed(2);
    edgeThr.value = String(model.get("edge_threshold")); edgeThrVal.textContent = Number(model.get("edge_threshold")).toFixed(3);
    recompute(); schedule(1); drawLists();
  });
  listen(model, ui, ["selected", "pinned"], () => { recompute(); schedule(1); drawDetail(); drawLists(); });
  listen(model, ui, ["node_detail"], drawDetail);
  listen(model, ui, ["supernodes"], () => { schedule(1); drawLists(); });
  listen(model, ui, ["intervention"], drawIntervention);
  onThemeChange(ui, () => schedule(1));
  ui.guard(fullReload)();
}

export default { render: renderCircuit };
