"""``CircuitView``: an attribution graph on a canvas, token positions across and layers up.

Nodes travel as typed arrays (layer, position, kind, activation, influence), edges as three binary
buffers (source index, target index, weight) sorted by |weight|, so 100k edges cost ~8 bytes each
and the browser prunes, hovers and zooms without asking the kernel.

    >>> view = iw.CircuitView(graph)                    # graph = iw.attribute(model, prompt, transcoders)
    >>> view.node_threshold = 0.6                        # prune from Python (or with the slider)
    >>> view.selected = [view.node_ids[5], view.node_ids[9]]; view.group("my supernode")

The two sliders are a display filter, instant in the browser: nodes by cumulative |influence|
(embeddings, logits, pinned and selected nodes always show), then edges between visible nodes by
cumulative |weight|. ``graph.prune(node_threshold, edge_threshold)`` is the paper's pruning
(edge-influence scores on the node-pruned graph, dangling nodes dropped) and gives a smaller
graph to save or show: ``iw.CircuitView(graph.prune(0.8, 0.98))``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import traitlets

from ..errors import GraphError
from ._base import Panel, css, esm, guarded, model_lock, to_bytes
from .selection import Selection

#: Node kinds the view knows how to place (others are drawn as features).
KINDS = ("embed", "feature", "error", "logit", "supernode")
_KIND_ALIASES = {
    "embedding": "embed", "token": "embed", "emb": "embed",
    "transcoder": "feature", "cross layer transcoder": "feature", "clt": "feature",
    "mlp reconstruction error": "error", "mlp_error": "error", "reconstruction error": "error",
    "logits": "logit", "output": "logit",
}
_ALWAYS = {"embed", "logit"}


def _kind(k: Any) -> str:
    s = str(k).lower()
    return s if s in KINDS else _KIND_ALIASES.get(s, "feature")


def _col(df: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if n in df.columns:
            return df[n].to_numpy()
    if default is None:
        raise GraphError(f"the graph's nodes table has no {names[0]!r} column (columns: {', '.join(map(str, df.columns))})")
    return np.full(len(df), default)


def keep_nodes(influence: np.ndarray, always: np.ndarray, threshold: float) -> np.ndarray:
    """Visible nodes: always-shown ones plus the fewest most-influential others that carry
    ``threshold`` of the total |influence|. (The browser runs the same rule on the same arrays.)"""
    infl = np.abs(np.asarray(influence, dtype=np.float32)).astype(np.float64)
    keep = np.asarray(always, dtype=bool).copy()
    cand = np.flatnonzero(~keep)
    if cand.size == 0:
        return keep
    order = cand[np.argsort(-infl[cand], kind="stable")]
    total = float(infl[order].sum())
    if total <= 0:
        keep[order] = threshold >= 1.0
        return keep
    before = np.concatenate([[0.0], np.cumsum(infl[order])[:-1]])
    keep[order[before < threshold * total]] = True
    return keep


def keep_edges(weight_sorted: np.ndarray, src: np.ndarray, dst: np.ndarray, node_keep: np.ndarray,
               threshold: float) -> np.ndarray:
    """Visible edges (edges already sorted by |weight| descending): both ends visible, then the
    strongest prefix carrying ``threshold`` of their total |weight|."""
    w = np.abs(np.asarray(weight_sorted, dtype=np.float32)).astype(np.float64)
    ok = node_keep[src] & node_keep[dst]
    wk = np.where(ok, w, 0.0)
    total = float(wk.sum())
    before = np.concatenate([[0.0], np.cumsum(wk)[:-1]])
    return ok & (before < threshold * total) if total > 0 else ok & False


class CircuitView(Panel):
    """Attribution graph view.

    In (set from Python or the browser): ``node_threshold`` / ``edge_threshold`` (pruning, 0-1),
    ``selected`` (node ids), ``pinned`` (node ids), ``hovered``. Out: the graph as binary traits,
    ``supernodes`` (name -> node ids, mirrored into ``graph.supernodes``), ``intervention``.
    """

    _esm = esm("circuit_view.js")
    _css = css()

    title = traitlets.Unicode("").tag(sync=True)
    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    n_layers = traitlets.Int(0).tag(sync=True)
    node_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    node_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    kinds = traitlets.List(traitlets.Unicode(), default_value=list(KINDS)).tag(sync=True)
    node_kind = traitlets.Bytes(b"").tag(sync=True)       # uint8 index into kinds
    node_layer = traitlets.Bytes(b"").tag(sync=True)      # int32 (embed -1, logits n_layers)
    node_pos = traitlets.Bytes(b"").tag(sync=True)        # int32
    node_feature = traitlets.Bytes(b"").tag(sync=True)    # int32 (-1 when not a feature)
    node_act = traitlets.Bytes(b"").tag(sync=True)        # float32
    node_infl = traitlets.Bytes(b"").tag(sync=True)       # float32
    edge_index_bytes = traitlets.Int(4).tag(sync=True)    # 2 (uint16) or 4 (uint32)
    edge_src = traitlets.Bytes(b"").tag(sync=True)
    edge_dst = traitlets.Bytes(b"").tag(sync=True)
    edge_w = traitlets.Bytes(b"").tag(sync=True)          # float32, sorted by |w| descending

    node_threshold = traitlets.Float(0.8).tag(sync=True)
    edge_threshold = traitlets.Float(0.98).tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    hovered = traitlets.Unicode("").tag(sync=True)
    pinned = traitlets.List(traitlets.Unicode()).tag(sync=True)
    supernodes = traitlets.Dict().tag(sync=True)
    node_detail = traitlets.Dict().tag(sync=True)
    intervention = traitlets.Dict().tag(sync=True)
    visible_count = traitlets.List(traitlets.Int(), default_value=[0, 0]).tag(sync=True)

    def __init__(self, graph: Any, *, selection: Selection | None = None, dictionaries: Any = None,
                 model: Any = None, node_threshold: float = 0.8, edge_threshold: float = 0.98,
                 **kwargs: Any) -> None:
        self.graph = graph
        # a graph built in this session remembers its model; one loaded from a file needs model=
        ctx = getattr(graph, "_context", None)
        self.model = model if model is not None else getattr(ctx, "model", None)
        self._intervene_kw = {"model": model, "transcoders": dictionaries} if model is not None else {}
        self.selection = selection if selection is not None else Selection.shared()
        self.dictionaries = dictionaries if dictionaries is not None else getattr(graph, "transcoders", None)
        self._loaded = False
        payload = self._load(graph)  # complete before the comm opens: the first draw has the graph
        super().__init__(node_threshold=node_threshold, edge_threshold=edge_threshold, **payload, **kwargs)
        self._loaded = True
        self._update_visible()
        self.on_msg(self._on_action)

    def _repr_keys(self) -> list[str]:
        return ["title", "node_threshold", "edge_threshold", "selected"]

    # ------------------------------------------------------------------ data
    def _load(self, graph: Any) -> dict[str, Any]:
        """Read the graph into arrays (kept here) and the trait values the browser needs."""
        nodes = graph.to_pandas("nodes") if hasattr(graph, "to_pandas") else graph.nodes  # user labels applied
        if "node_id" in nodes.columns:
            ids = [str(x) for x in nodes["node_id"].tolist()]
        elif "id" in nodes.columns:
            ids = [str(x) for x in nodes["id"].tolist()]
        else:
            ids = [str(x) for x in nodes.index.tolist()]
        if len(set(ids)) != len(ids):
            raise GraphError("the graph has duplicate node ids: each node needs a unique id")
        kinds = np.array([KINDS.index(_kind(k)) for k in _col(nodes, "kind", "type", default="feature")], dtype=np.uint8)
        layer = _col(nodes, "layer").astype(np.int32)
        pos = _col(nodes, "position", "pos", "ctx_idx").astype(np.int32)
        feature = np.nan_to_num(np.asarray(_col(nodes, "feature", default=-1), dtype=np.float64), nan=-1).astype(np.int32)
        act = np.asarray(_col(nodes, "activation", default=0.0), dtype=np.float32)
        infl = np.asarray(_col(nodes, "influence", default=0.0), dtype=np.float32)
        labels = [_node_label(r) for r in nodes.to_dict("records")]
        src, dst, w = (np.asarray(a) for a in graph.edges_arrays())
        if not (len(src) == len(dst) == len(w)):
            raise GraphError(f"edges_arrays() returned arrays of different lengths: {len(src)}, {len(dst)}, {len(w)}")
        n = len(ids)
        if len(src) and (src.min() < 0 or dst.min() < 0 or src.max() >= n or dst.max() >= n):
            raise GraphError(f"an edge points outside the {n} nodes: edges must index rows of graph.nodes")
        order = np.argsort(-np.abs(w.astype(np.float32)), kind="stable")
        itype = np.uint16 if n <= 0xFFFF else np.uint32
        self._ids = ids
        self._index = {x: i for i, x in enumerate(ids)}
        self._kind = kinds
        self._layer, self._pos, self._feature, self._act, self._infl = layer, pos, feature, act, infl
        self._src = src[order].astype(np.int64)
        self._dst = dst[order].astype(np.int64)
        self._w = w[order].astype(np.float32)
        toks = list(getattr(graph, "str_tokens", None) or getattr(graph, "tokens", None) or [])
        is_logit = kinds == KINDS.index("logit")
        if getattr(graph, "n_layers", None):
            n_layers = int(graph.n_layers)
        elif is_logit.any():
            n_layers = int(layer[is_logit].max())  # logits sit at layer n_layers
        else:
            n_layers = int(layer.max()) + 1 if n else 0
        return {
            "title": str(getattr(graph, "prompt", "") or ""),
            "tokens": [str(t) for t in toks] or [str(i) for i in range(int(pos.max()) + 1 if n else 0)],
            "n_layers": n_layers,
            "node_ids": ids,
            "node_labels": labels,
            "node_kind": kinds.tobytes(),
            "node_layer": to_bytes(layer, np.int32),
            "node_pos": to_bytes(pos, np.int32),
            "node_feature": to_bytes(feature, np.int32),
            "node_act": to_bytes(act),
            "node_infl": to_bytes(infl),
            "edge_index_bytes": np.dtype(itype).itemsize,
            "edge_src": to_bytes(self._src, itype),
            "edge_dst": to_bytes(self._dst, itype),
            "edge_w": to_bytes(self._w),
            "supernodes": {str(k): [str(x) for x in v] for k, v in dict(getattr(graph, "supernodes", {}) or {}).items()},
            "pinned": [str(x) for x in (getattr(graph, "pinned", None) or [])],
        }

    @property
    def bytes_per_edge(self) -> float:
        n = max(1, len(self._w))
        return (len(self.edge_src) + len(self.edge_dst) + len(self.edge_w)) / n

    # ------------------------------------------------------------- pruning
    def visible_nodes(self) -> np.ndarray:
        """Boolean mask over nodes after pruning (pinned and selected nodes always show)."""
        always = np.isin(self._kind, [KINDS.index(k) for k in _ALWAYS])
        for x in [*self.pinned, *self.selected]:
            i = self._index.get(x)
            if i is not None:
                always[i] = True
        return keep_nodes(self._infl, always, float(self.node_threshold))

    def visible_edges(self) -> np.ndarray:
        """Boolean mask over edges (in the sorted order of ``edge_src``/``edge_dst``)."""
        return keep_edges(self._w, self._src, self._dst, self.visible_nodes(), float(self.edge_threshold))

    def _update_visible(self) -> None:
        if not self._loaded:
            return
        nodes = self.visible_nodes()
        edges = keep_edges(self._w, self._src, self._dst, nodes, float(self.edge_threshold))
        self.visible_count = [int(nodes.sum()), int(edges.sum())]

    @traitlets.validate("node_threshold", "edge_threshold")
    def _check_threshold(self, proposal: dict[str, Any]) -> float:
        v = float(proposal["value"])
        if not 0.0 <= v <= 1.0:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be in 0-1, got {v}")
        return v

    @traitlets.observe("node_threshold", "edge_threshold", "pinned")
    @guarded
    def _on_prune(self, change: dict[str, Any]) -> None:
        for x in self.pinned:
            self._node(x)  # an unknown pinned id is an error, not silently ignored
        self._update_visible()

    # ----------------------------------------------------------- selection
    def edges_of(self, node_id: str, k: int = 10) -> Any:
        """Strongest incoming and outgoing edges of a node (long table: direction, other, weight)."""
        import pandas as pd

        i = self._node(node_id)
        rows = []
        for direction, mine, other in (("in", self._dst, self._src), ("out", self._src, self._dst)):
            idx = np.flatnonzero(mine == i)[:k]  # already sorted by |weight|
            rows += [{"direction": direction, "node": node_id, "other": self._ids[int(other[j])],
                      "other_label": self._label(int(other[j])), "weight": float(self._w[j])} for j in idx]
        return pd.DataFrame(rows, columns=["direction", "node", "other", "other_label", "weight"])

    def _node(self, node_id: str) -> int:
        i = self._index.get(str(node_id))
        if i is None:
            raise GraphError(f"node {node_id!r} is not in this graph ({len(self._ids)} nodes; see view.node_ids)")
        return i

    def _label(self, i: int) -> str:
        lab = self.node_labels[i] if i < len(self.node_labels) else ""
        return lab or self._ids[i]

    @traitlets.observe("selected")
    @guarded
    def _on_select(self, change: dict[str, Any]) -> None:
        for x in self.selected:
            self._node(x)
        self._update_visible()
        if not self.selected:
            self.node_detail = {}
            return
        i = self._node(self.selected[-1])
        detail: dict[str, Any] = {
            "id": self._ids[i], "label": self._label(i), "kind": KINDS[int(self._kind[i])],
            "layer": int(self._layer[i]), "position": int(self._pos[i]), "activation": float(self._act[i]),
            "influence": float(self._infl[i]),
            "incoming": self.edges_of(self._ids[i]).query("direction == 'in'")[["other", "other_label", "weight"]].to_dict("records"),
            "outgoing": self.edges_of(self._ids[i]).query("direction == 'out'")[["other", "other_label", "weight"]].to_dict("records"),
        }
        feat = self._feature_of(i)
        if feat is not None:
            detail["feature"] = {"dictionary": feat.dictionary.name, "index": feat.index, "label": feat.label}
            detail["promoted"], detail["suppressed"] = self._logit_effects(feat)
            self.selection.feature = feat
        self.node_detail = detail
        self.selection.node = self._ids[i]

    def _feature_of(self, i: int) -> Any:
        if KINDS[int(self._kind[i])] != "feature" or self._feature[i] < 0 or self.dictionaries is None:
            return None
        try:
            d = self.dictionaries[int(self._layer[i])]
            return d[int(self._feature[i])]
        except (KeyError, IndexError, TypeError):
            return None

    def _logit_effects(self, feat: Any) -> tuple[list[Any], list[Any]]:
        model = self.model
        if model is None:
            return [], []
        try:
            from ..analysis.logit_effects import logit_effects
        except ImportError:  # older builds without the logit-effects analysis: no token lists
            return [], []
        with model_lock(model):
            eff = logit_effects(feat, model, k=8)
        return _effects_rows(eff)

    # ------------------------------------------------------ actions (browser buttons or Python)
    def _on_action(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        action = content.get("action")
        if action == "group":
            self.group(str(content.get("name") or ""), list(content.get("nodes") or self.selected))
        elif action == "ungroup":
            self.ungroup(str(content.get("name") or ""))
        elif action == "intervene":
            self.intervene(list(content.get("nodes") or self.selected), float(content.get("scale", 0.0)))

    @guarded
    def group(self, name: str = "", nodes: list[str] | None = None) -> str:
        """Group nodes (default: the selection) into a supernode; returns its name."""
        ids = [str(x) for x in (nodes if nodes is not None else self.selected)]
        if len(ids) < 2:
            raise GraphError(f"a supernode needs at least two nodes; {len(ids)} selected: shift-click to select more")
        for x in ids:
            self._node(x)
        name = name.strip() or _free_name(self.supernodes)
        sn = getattr(self.graph, "supernodes", None)
        if not isinstance(sn, dict):
            raise GraphError("this graph object cannot hold supernodes (it has no .supernodes dict)")
        sn[name] = list(ids)  # AttributionGraph.supernodes is the user's annotation, edited in place
        self.supernodes = {**self.supernodes, name: ids}
        self.error = ""
        return name

    @guarded
    def ungroup(self, name: str) -> None:
        """Remove a supernode (from this view and ``graph.supernodes``)."""
        if name not in self.supernodes:
            raise GraphError(f"no supernode named {name!r}; have: {', '.join(self.supernodes) or 'none'}")
        sn = getattr(self.graph, "supernodes", None)
        if isinstance(sn, dict):
            sn.pop(name, None)
        self.supernodes = {k: v for k, v in self.supernodes.items() if k != name}

    @traitlets.observe("pinned")
    def _mirror_pins(self, change: dict[str, Any]) -> None:
        if not self._loaded:
            return
        pinned = getattr(self.graph, "pinned", None)
        if isinstance(pinned, set):
            pinned.clear()
            pinned.update(self.pinned)
        elif isinstance(pinned, list):
            pinned[:] = list(self.pinned)

    def pin(self, *node_ids: str) -> None:
        """Toggle pins (pinned nodes survive pruning)."""
        cur = list(self.pinned)
        for x in node_ids:
            self._node(x)
            cur.remove(x) if x in cur else cur.append(x)
        self.pinned = cur

    @guarded
    def intervene(self, nodes: list[str] | None = None, scale: float = 0.0) -> Any:
        """Scale the selected feature nodes (0 = ablate) in the real model and compare the logit
        change with the graph's linear prediction; the table lands in ``intervention``."""
        ids = [str(x) for x in (nodes if nodes is not None else self.selected)]
        if not ids:
            raise GraphError("select one or more feature nodes to intervene on")
        if not hasattr(self.graph, "intervene"):
            raise GraphError("this graph has no .intervene(): build it with iw.attribute(model, ...)")
        for x in ids:
            if x not in self.supernodes:
                self._node(x)
        lock = model_lock(self.model) if self.model is not None else nullcontext()
        with self.working(f"intervening on {len(ids)} node(s)"), lock:
            res = self.graph.intervene({x: float(scale) for x in ids}, **self._intervene_kw)
        df = res.to_pandas() if hasattr(res, "to_pandas") else res
        rows = df.to_dict("records") if hasattr(df, "to_dict") else list(df)
        self.intervention = {"nodes": ids, "scale": scale, "rows": _jsonable(rows)}
        return res


def _free_name(groups: dict[str, Any]) -> str:
    i = len(groups) + 1
    while f"group {i}" in groups:
        i += 1
    return f"group {i}"


def _node_label(r: dict[str, Any]) -> str:
    """A readable label: the dictionary's / user's if set, else built from the node's fields."""
    lab = r.get("label")
    if isinstance(lab, str) and lab:
        return lab
    kind = _kind(r.get("kind", "feature"))
    tok = r.get("token")
    tok = tok if isinstance(tok, str) else ""
    layer, pos = r.get("layer"), r.get("position", r.get("pos"))
    if kind == "embed":
        return f"emb {tok!r}" if tok else f"emb @{pos}"
    if kind == "logit":
        p = r.get("probability")
        return f"logit {tok!r}" + (f" p={float(p):.2f}" if isinstance(p, (int, float)) and p == p else "")
    if kind == "error":
        return f"error L{layer} @{pos}"
    return f"L{layer} #{r.get('feature')} @{pos}"


def _effects_rows(eff: Any) -> tuple[list[Any], list[Any]]:
    """(promoted, suppressed) as [token, value] lists from a logit-effects result."""
    for pa, sa in (("promoted", "suppressed"), ("top", "bottom")):
        if hasattr(eff, pa) and hasattr(eff, sa):
            return _pairs(getattr(eff, pa)), _pairs(getattr(eff, sa))
    if hasattr(eff, "to_pandas") or hasattr(eff, "sort_values"):  # a result object or a DataFrame
        df = eff.to_pandas() if hasattr(eff, "to_pandas") else eff
        val = "effect" if "effect" in df.columns else df.select_dtypes("number").columns[-1]
        tok = "token" if "token" in df.columns else df.columns[0]
        d = df.sort_values(val)
        return ([[str(t), float(v)] for t, v in zip(d[tok][::-1][:8], d[val][::-1][:8], strict=True) if v > 0],
                [[str(t), float(v)] for t, v in zip(d[tok][:8], d[val][:8], strict=True) if v < 0])
    return [], []


def _pairs(x: Any) -> list[Any]:
    if hasattr(x, "to_dict"):
        x = x.to_dict("records")
    out = []
    for item in x:
        if isinstance(item, dict):
            tok = item.get("token", item.get("str", ""))
            val = item.get("effect", item.get("value", item.get("logit", 0.0)))
        else:
            tok, val = item[0], item[1]
        out.append([str(tok), float(val)])
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x)
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, (str, bool)) or x is None:
        return x
    return str(x)
