"""``AttributionGraph``: nodes as a table, edges as a sparse matrix, and pure functions on them.

A graph is frozen data (``nodes``, ``adjacency``, the prompt) plus plain Python objects the
circuit widget reads and writes (``supernodes``, ``pinned``, ``labels``). Pruning, grouping and
diffing return new graphs or tables; nothing mutates the graph's data.

    >>> g = iw.attribute(model, 'The opposite of "small" is "')
    >>> small = g.prune(node_threshold=0.8, edge_threshold=0.98)
    >>> small.scores()                          # {'replacement': ..., 'completeness': ...}
    >>> small.to_json("antonym.json")           # opens in Neuronpedia's graph viewer

Node ids follow circuit-tracer / Neuronpedia: feature ``"{layer}_{feature}_{pos}"``, error
``"{layer}_-1_{pos}"``, embedding ``"E_{token_id}_{pos}"``, logit ``"{n_layers+1}_{token_id}_{pos}"``.
The adjacency is ``[n_nodes, n_nodes]`` with row = target, column = source, in ``nodes`` order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError

KINDS = ("feature", "error", "embedding", "logit")
FEATURE_TYPES = {
    "feature": "cross layer transcoder",
    "error": "mlp reconstruction error",
    "embedding": "embedding",
    "logit": "logit",
}
NODE_COLUMNS = ("node_id", "kind", "layer", "position", "feature", "activation", "influence",
                "cumulative_influence", "label", "token", "token_id", "probability", "value",
                "bias", "dropped", "dropped_abs", "slope", "norm")
_FLOAT_COLS = ("activation", "influence", "cumulative_influence", "probability", "value", "bias",
               "dropped", "dropped_abs", "slope", "norm")
_INT_COLS = ("layer", "position", "feature", "token_id")
_STR_COLS = ("node_id", "kind", "label", "token")
BINARY_FORMAT = 1


def feature_id(layer: int, feature: int, pos: int) -> str:
    return f"{layer}_{feature}_{pos}"


def error_id(layer: int, pos: int) -> str:
    return f"{layer}_-1_{pos}"


def embedding_id(token_id: int, pos: int) -> str:
    return f"E_{token_id}_{pos}"


def logit_id(n_layers: int, token_id: int, pos: int) -> str:
    return f"{n_layers + 1}_{token_id}_{pos}"


# ----------------------------------------------------------------------------- pure functions
def normalized_abs(adjacency: Any, extra: np.ndarray | None = None) -> Any:
    """``|A|`` with each row scaled to sum 1 (rows without inputs stay zero).

    ``extra [n]``: additional absolute input mass per row that is not in the matrix (what
    left-out features sent); rows are then scaled by ``sum |A| + extra``.
    """
    import scipy.sparse as sp

    A = abs(sp.csr_matrix(adjacency, dtype=np.float64))
    sums = np.asarray(A.sum(1)).ravel()
    if extra is not None:
        sums = sums + np.nan_to_num(np.asarray(extra, dtype=np.float64))
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 1e-30)
    return sp.diags(inv) @ A


def influence(adjacency: Any, weights: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """``weights @ ((I - A_n)^-1 - I)`` for ``A_n = normalized_abs(adjacency, extra)``: every
    node's total influence on the weighted targets, summed over paths of every length."""
    A = normalized_abs(adjacency, extra).T.tocsr()
    x = np.asarray(weights, dtype=np.float64)
    total = np.zeros_like(x)
    for _ in range(A.shape[0] + 1):
        x = A @ x
        if not np.any(x):
            return total
        total += x
    raise GraphError("influence did not converge: the graph has a cycle (edges must go forward)")


def cumulative_scores(scores: np.ndarray) -> np.ndarray:
    """Each node's cumulative share of the total when nodes are sorted by decreasing score
    (Neuronpedia's ``influence`` field: a node is kept at threshold ``t`` if this is <= ``t``)."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    total = s.sum()
    cum = np.cumsum(s[order]) / (total if total > 0 else 1.0)
    out = np.empty_like(cum)
    out[order] = cum
    return out


def _threshold(scores: np.ndarray, fraction: float) -> float:
    """Smallest score whose kept set (scores >= it) reaches ``fraction`` of the total."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if s.size == 0:
        return 0.0
    total = s.sum()
    if total <= 0:
        return 0.0
    cum = np.cumsum(s) / total
    i = int(np.searchsorted(cum, fraction - 1e-12))
    return float(s[min(i, len(s) - 1)])


@dataclass(frozen=True)
class PruneResult:
    """Masks and the fractions actually kept by :func:`prune_masks`."""

    node_mask: np.ndarray
    edge_mask: np.ndarray  # over the adjacency's stored entries (COO order of ``A.tocoo()``)
    node_fraction: float  # share of node influence kept by the threshold step
    edge_fraction: float  # share of edge influence kept by the threshold step
    node_threshold: float
    edge_threshold: float


def prune_masks(graph: AttributionGraph, node_threshold: float = 0.8,
                edge_threshold: float = 0.98) -> PruneResult:
    """The paper's pruning: keep nodes up to ``node_threshold`` of the influence on the logits,
    then edges up to ``edge_threshold`` of the edge influence, then drop features / errors left
    without outgoing (and features without incoming) edges. Embeddings and logits always stay."""
    import scipy.sparse as sp

    for name, v in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise GraphError(f"{name} must be a fraction in [0, 1], got {v!r}")
    kind = graph.nodes["kind"].to_numpy()
    always = (kind == "embedding") | (kind == "logit")
    w = graph.logit_weights()
    infl = influence(graph.adjacency, w)
    node_mask = infl >= _threshold(infl, node_threshold)
    node_mask |= always
    total = infl.sum()
    node_fraction = float(infl[node_mask & ~always].sum() + infl[always].sum()) / total if total > 0 else 1.0
    A = sp.csr_matrix(graph.adjacency, dtype=np.float64)
    keep = sp.diags(node_mask.astype(np.float64))
    pruned = (keep @ A @ keep).tocsr()
    pruned.eliminate_zeros()
    An = normalized_abs(pruned).tocoo()
    infl_p = influence(pruned, w) + w
    scores = An.data * infl_p[An.row]
    edge_keep = scores >= _threshold(scores, edge_threshold)
    edge_fraction = float(scores[edge_keep].sum() / scores.sum()) if scores.sum() > 0 else 1.0
    rows, cols = An.row, An.col
    is_feat = kind == "feature"
    is_src = (kind == "feature") | (kind == "error")
    while True:
        live = edge_keep & node_mask[rows] & node_mask[cols]
        has_out = np.zeros(len(kind), bool)
        has_out[cols[live]] = True
        has_in = np.zeros(len(kind), bool)
        has_in[rows[live]] = True
        new = node_mask & ~(is_src & ~has_out) & ~(is_feat & ~has_in)
        if np.array_equal(new, node_mask):
            break
        node_mask = new
    # map back to the COO order of the original adjacency
    orig = sp.csr_matrix(graph.adjacency).tocoo()
    key_kept = set(zip(rows[live].tolist(), cols[live].tolist(), strict=True))
    edge_mask = np.fromiter(((r, c) in key_kept for r, c in zip(orig.row.tolist(), orig.col.tolist(), strict=True)),
                            dtype=bool, count=orig.nnz)
    return PruneResult(node_mask, edge_mask, node_fraction, edge_fraction,
                       float(node_threshold), float(edge_threshold))


# ----------------------------------------------------------------------------- the graph
@dataclass(frozen=True, eq=False)
class AttributionGraph:
    """An attribution graph: frozen nodes table + sparse adjacency, and the user's annotations.

    ``nodes``: DataFrame with ``node_id, kind (feature / error / embedding / logit), layer
    (-1 for embeddings, n_layers for logits), position, feature (-1 unless a feature),
    activation, influence (on the probability-weighted logits), cumulative_influence, label,
    token, token_id, probability (logits), value / bias / dropped (targets: value = sum of the
    incoming edges + bias + dropped, where dropped is what active features left out of the
    graph contribute; dropped_abs the sum of those edges' sizes), slope (d activation / d
    value), norm (of the node's write vector)``.
    ``adjacency``: ``scipy.sparse.csr_matrix [n_nodes, n_nodes]``, row = target, column =
    source. ``supernodes`` (name -> node ids), ``pinned`` (node ids) and ``labels`` (node id ->
    text) are plain Python objects the circuit widget edits in place.

        >>> g = iw.attribute(model, "The Eiffel Tower is in the city of")
        >>> g.nodes.query("kind == 'feature'").nlargest(5, "influence")
        >>> g.group(["12_301_7", "14_88_7"], "Paris").intervene({"Paris": 0.0})
    """

    prompt: str
    str_tokens: list[str]
    token_ids: list[int]
    nodes: Any
    adjacency: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    supernodes: dict[str, list[str]] = field(default_factory=dict)
    pinned: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    _context: Any = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, *, prompt: str, str_tokens: list[str], token_ids: list[int], nodes: Any,
              adjacency: Any, metadata: dict[str, Any] | None = None,
              supernodes: Mapping[str, list[str]] | None = None, pinned: Iterable[str] = (),
              labels: Mapping[str, str] | None = None, compute_influence: bool = True) -> AttributionGraph:
        """Validate the parts, compute node influence, and freeze them into a graph."""
        import pandas as pd
        import scipy.sparse as sp

        nodes = pd.DataFrame(nodes).reset_index(drop=True).copy()
        missing = [c for c in ("node_id", "kind", "layer", "position") if c not in nodes]
        if missing:
            raise GraphError(f"the nodes table lacks columns {missing}")
        for c in NODE_COLUMNS:
            if c not in nodes:
                nodes[c] = "" if c in _STR_COLS else (-1 if c in _INT_COLS else np.nan)
        nodes = nodes[list(NODE_COLUMNS) + [c for c in nodes.columns if c not in NODE_COLUMNS]]
        dup = nodes["node_id"][nodes["node_id"].duplicated()]
        if len(dup):
            raise GraphError(f"duplicate node ids: {sorted(set(dup))[:5]}; every node id must be unique")
        bad = set(nodes["kind"]) - set(KINDS)
        if bad:
            raise GraphError(f"unknown node kinds {sorted(bad)}: kinds are {', '.join(KINDS)}")
        adjacency = sp.csr_matrix(adjacency)
        n = len(nodes)
        if adjacency.shape != (n, n):
            raise GraphError(f"adjacency is {adjacency.shape} but there are {n} nodes")
        g = cls(prompt=prompt, str_tokens=list(str_tokens), token_ids=[int(t) for t in token_ids],
                nodes=nodes, adjacency=adjacency, metadata=dict(metadata or {}),
                supernodes={k: list(v) for k, v in (supernodes or {}).items()},
                pinned=list(pinned), labels=dict(labels or {}))
        if compute_influence:
            infl = influence(adjacency, _logit_weights(nodes))
            nodes["influence"] = infl
            nodes["cumulative_influence"] = cumulative_scores(infl)
        return g

    def _with(self, **changes: Any) -> AttributionGraph:
        base = dict(prompt=self.prompt, str_tokens=list(self.str_tokens),
                    token_ids=list(self.token_ids), nodes=self.nodes, adjacency=self.adjacency,
                    metadata=dict(self.metadata), supernodes={k: list(v) for k, v in self.supernodes.items()},
                    pinned=list(self.pinned), labels=dict(self.labels), _context=self._context)
        base.update(changes)
        return AttributionGraph(**base)

    @classmethod
    def _from_build(cls, graph: AttributionGraph, context: Any) -> AttributionGraph:
        return graph._with(_context=context)

    # ------------------------------------------------------------------ views
    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_layers(self) -> int:
        """Layers of the model the graph was built on (logit nodes sit at this layer)."""
        if "n_layers" in self.metadata:
            return int(self.metadata["n_layers"])
        logits = self.nodes["kind"] == "logit"
        return int(self.nodes.loc[logits, "layer"].max()) if logits.any() else int(self.nodes["layer"].max()) + 1

    @property
    def n_edges(self) -> int:
        return int(self.adjacency.nnz)

    @property
    def targets(self) -> Any:
        """The logit nodes: ``node_id, token, token_id, probability, value``."""
        t = self.nodes[self.nodes["kind"] == "logit"]
        return t[["node_id", "token", "token_id", "probability", "value", "bias", "dropped"]]

    def logit_weights(self) -> np.ndarray:
        """Probability of each logit node (0 elsewhere): the weights of influence."""
        return _logit_weights(self.nodes)

    def index(self, node_ids: str | Iterable[str]) -> np.ndarray:
        """Row positions of node ids (or group names) in ``nodes`` / ``adjacency``."""
        ids = self._resolve(node_ids)
        pos = dict(zip(self.nodes["node_id"], range(self.n_nodes), strict=True))
        return np.array([pos[i] for i in ids], dtype=np.int64)

    def _resolve(self, items: str | Iterable[str]) -> list[str]:
        if isinstance(items, str):
            items = [items]
        if hasattr(items, "tolist") and not isinstance(items, list):
            items = items.tolist()
        known = set(self.nodes["node_id"])
        out: list[str] = []
        for it in items:
            if not isinstance(it, str):
                raise GraphError(f"node ids are strings, got {type(it).__name__} {it!r}")
            if it in known:
                out.append(it)
            elif it in self.supernodes:
                out.extend(self.supernodes[it])
            else:
                hint = ", ".join(list(self.nodes["node_id"][:3]))
                raise GraphError(
                    f"{it!r} is neither a node id nor a group of this graph (ids look like "
                    f"{hint}; groups: {sorted(self.supernodes) or 'none'})"
                )
        return list(dict.fromkeys(out))

    def label_of(self, node_id: str) -> str:
        """The user's label if set, else the dictionary's."""
        if node_id in self.labels:
            return self.labels[node_id]
        row = self.nodes.loc[self.nodes["node_id"] == node_id]
        if row.empty:
            raise GraphError(f"no node {node_id!r} in this graph")
        return str(row["label"].iloc[0])

    def edges_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(src int32, dst int32, weight float32)`` of every edge (for binary transfer)."""
        coo = self.adjacency.tocoo()
        return (coo.col.astype(np.int32), coo.row.astype(np.int32), coo.data.astype(np.float32))

    def edges(self) -> Any:
        """Long table of edges: ``source, target, weight`` (node ids), strongest first."""
        import pandas as pd

        src, dst, w = self.edges_arrays()
        ids = self.nodes["node_id"].to_numpy()
        df = pd.DataFrame({"source": ids[src], "target": ids[dst],
                           "weight": self.adjacency.tocoo().data})
        return df.reindex(df["weight"].abs().sort_values(ascending=False).index).reset_index(drop=True)

    def to_pandas(self, what: str = "nodes") -> Any:
        """``"nodes"`` (a copy of the nodes table, with user labels applied) or ``"edges"``."""
        if what == "edges":
            return self.edges()
        if what != "nodes":
            raise GraphError(f"to_pandas(what={what!r}): choose 'nodes' or 'edges'")
        df = self.nodes.copy()
        if self.labels:
            df["label"] = [self.labels.get(i, lab) for i, lab in zip(df["node_id"], df["label"], strict=True)]
        return df

    def top(self, n: int = 10, kind: str | None = "feature") -> Any:
        """The ``n`` most influential nodes (of one ``kind``; None for all)."""
        df = self.nodes if kind is None else self.nodes[self.nodes["kind"] == kind]
        return df.nlargest(n, "influence")

    def __repr__(self) -> str:
        counts = self.nodes["kind"].value_counts()
        parts = ", ".join(f"{int(counts.get(k, 0))} {k}s" for k in KINDS)
        tgt = self.nodes[self.nodes["kind"] == "logit"].sort_values("probability", ascending=False)
        tops = ", ".join(f"{t!r} {p:.2f}" for t, p in zip(tgt["token"][:3], tgt["probability"][:3], strict=True))
        pr = self.metadata.get("pruning")
        pruned = f", pruned at {pr['node_threshold']}/{pr['edge_threshold']}" if pr else ""
        return (f"AttributionGraph({self.prompt!r}, {parts}, {self.n_edges:,} edges{pruned}; "
                f"targets: {tops})")

    # ------------------------------------------------------------------ pure transforms
    def subgraph(self, keep: np.ndarray, edge_mask: np.ndarray | None = None) -> AttributionGraph:
        """A new graph with the nodes where ``keep`` is true (and optionally only some edges)."""
        import scipy.sparse as sp

        keep = np.asarray(keep, dtype=bool)
        A = self.adjacency.tocoo()
        data = A.data if edge_mask is None else np.where(edge_mask, A.data, 0.0)
        A = sp.csr_matrix((data, (A.row, A.col)), shape=A.shape)
        A.eliminate_zeros()
        idx = np.nonzero(keep)[0]
        sub = A[idx][:, idx].tocsr()
        nodes = self.nodes.iloc[idx].reset_index(drop=True)
        kept = set(nodes["node_id"])
        groups = {k: [i for i in v if i in kept] for k, v in self.supernodes.items()}
        return self._with(nodes=nodes, adjacency=sub,
                          supernodes={k: v for k, v in groups.items() if v},
                          pinned=[p for p in self.pinned if p in kept],
                          labels={k: v for k, v in self.labels.items() if k in kept})

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> AttributionGraph:
        """A new graph keeping nodes up to ``node_threshold`` of the influence on the logits and
        edges up to ``edge_threshold`` of the edge influence (embeddings and logits always kept).

            >>> small = graph.prune(0.8, 0.98)
            >>> small.metadata["pruning"]        # thresholds and the fractions actually kept
        """
        res = prune_masks(self, node_threshold, edge_threshold)
        g = self.subgraph(res.node_mask, res.edge_mask)
        g.metadata["pruning"] = {
            "node_threshold": res.node_threshold, "edge_threshold": res.edge_threshold,
            "node_fraction": res.node_fraction, "edge_fraction": res.edge_fraction,
            "nodes_before": self.n_nodes, "edges_before": self.n_edges,
        }
        return g

    def group(self, nodes: str | Iterable[str], name: str) -> AttributionGraph:
        """A new graph with a supernode ``name`` holding ``nodes`` (ids, or other group names)."""
        if not isinstance(name, str) or not name.strip():
            raise GraphError(f"a group name must be a non-empty string, got {name!r}")
        ids = self._resolve(nodes)
        if not ids:
            raise GraphError(f"group {name!r} would be empty: pass at least one node id")
        groups = {k: list(v) for k, v in self.supernodes.items()}
        groups[name] = ids
        return self._with(supernodes=groups)

    # ------------------------------------------------------------------ scores
    def scores(self, *, count_dropped: bool = True) -> dict[str, float]:
        """``{"replacement", "completeness"}`` as in the Circuit Tracing paper.

        replacement: share of the end-to-end influence of embeddings and errors on the logits
        that starts at embeddings (flows through features, not errors). completeness: the
        influence-weighted share of every node's normalized inputs that come from non-error
        nodes. ``count_dropped``: the input from active features left out of the graph
        (``max_feature_nodes``; column ``dropped_abs``) counts as unexplained, like an error
        (``False``: ignore it, as circuit-tracer does).

            >>> graph.scores()                    # {'replacement': 0.61, 'completeness': 0.83}
        """
        kind = self.nodes["kind"].to_numpy()
        w = self.logit_weights()
        extra = None
        if count_dropped and "dropped_abs" in self.nodes:
            extra = np.nan_to_num(self.nodes["dropped_abs"].to_numpy(dtype=np.float64))
        A = abs(sp_csr(self.adjacency))
        sums = np.asarray(A.sum(1)).ravel() + (extra if extra is not None else 0.0)
        dropped_share = np.divide(extra, sums, out=np.zeros_like(sums), where=sums > 1e-30) \
            if extra is not None else np.zeros(len(kind))
        An = normalized_abs(self.adjacency, extra)
        infl = influence(self.adjacency, w, extra)
        weight = infl + w
        tok = infl[kind == "embedding"].sum()
        # left-out features act as one more error source for each row they fed
        err = infl[kind == "error"].sum() + float((weight * dropped_share).sum())
        replacement = float(tok / (tok + err)) if tok + err > 0 else float("nan")
        err_share = np.asarray(An[:, np.nonzero(kind == "error")[0]].sum(1)).ravel() + dropped_share
        completeness = float(((1 - err_share) * weight).sum() / weight.sum()) if weight.sum() > 0 else float("nan")
        return {"replacement": replacement, "completeness": completeness}

    # ------------------------------------------------------------------ signed effects
    def contributions(self, target: str | None = None) -> Any:
        """Signed effect of every node on one target, as the graph's linear edges predict.

        ``direct``: the edge into the target (what the node's full write adds to it).
        ``total``: direct plus the paths through feature nodes (each feature's activation follows
        its pre-activation with its ``slope``): the change of the target if the node were
        removed is ``-total`` to first order. ``target``: a node id or token of a logit (default:
        the most probable target). Returns a DataFrame sorted by ``total`` (largest first).

            >>> c = graph.contributions("large")
            >>> supporters = c[c["kind"] == "feature"].head(10)
        """
        nodes = self.nodes
        t = self._target_index(target)
        A = self.adjacency.tocsr()
        kind = nodes["kind"].to_numpy()
        act = nodes["activation"].to_numpy(dtype=np.float64)
        slope = np.nan_to_num(nodes["slope"].to_numpy(dtype=np.float64))
        # how a change of u's value changes u's write, relative to the write: slope / activation
        # for features; 0 where the write is fixed (errors, embeddings)
        safe = np.where(act != 0, act, 1.0)
        gain = np.where((kind == "feature") & (act != 0), slope / safe, 0.0)
        carry = np.zeros(self.n_nodes)  # d target / d (value of u), through the graph
        carry[t] = 1.0
        total = np.zeros(self.n_nodes)
        # deepest layer first: edges only go from earlier to later layers
        for u in np.argsort(-nodes["layer"].to_numpy(), kind="stable"):
            if carry[u] == 0:
                continue
            row = A.getrow(u)
            total[row.indices] += carry[u] * row.data
            carry[row.indices] += carry[u] * row.data * gain[row.indices]
        direct = A.getrow(t).toarray().ravel()
        out = nodes[["node_id", "kind", "layer", "position", "feature", "activation", "label"]].copy()
        out["direct"] = direct
        out["total"] = total
        out = out[out["node_id"] != nodes["node_id"].iat[t]]
        return out.sort_values("total", ascending=False).reset_index(drop=True)

    def _target_index(self, target: str | None) -> int:
        kind = self.nodes["kind"].to_numpy()
        logits = np.nonzero(kind == "logit")[0]
        if len(logits) == 0:
            raise GraphError("this graph has no logit targets")
        if target is None:
            return int(logits[np.argmax(self.nodes["probability"].to_numpy()[logits])])
        ids = self.nodes["node_id"].to_numpy()
        toks = self.nodes["token"].to_numpy()
        for i in logits:
            if ids[i] == target or toks[i] == target:
                return int(i)
        stripped = [i for i in logits if toks[i].strip() == str(target).strip()]
        if len(stripped) == 1:
            return int(stripped[0])
        raise GraphError(f"{target!r} is not a target of this graph; targets: {list(toks[logits])}")

    # ------------------------------------------------------------------ interventions
    def intervene(self, scales: Mapping[str, float], *, model: Any = None,
                  transcoders: Any = None) -> Any:
        """Scale nodes (ids or group names; 0 ablates) in the real model and compare the change of
        each target logit with what the graph's edges predict.

        Returns a DataFrame: ``token, node_id, real_change, predicted_change, predicted_direct,
        real_change_frozen_norm, logit_before, logit_after, prob_before, prob_after`` (logits
        demeaned over the vocabulary, as the graph's targets). ``predicted_change`` propagates
        through the graph's feature nodes (each feature's activation follows its pre-activation
        with its ``slope``); ``predicted_direct`` uses only the direct edges into the logits.
        ``real_change_frozen_norm``: the real model with the final norm's scale kept at its clean
        value (the graph freezes it; a large ablation otherwise rescales every logit). A graph loaded from a
        file needs ``model`` and ``transcoders`` to rebuild its error vectors.

            >>> g2 = graph.group(graph.top(5)["node_id"], "top5")
            >>> g2.intervene({"top5": 0.0})[["token", "real_change", "predicted_change"]]
        """
        import pandas as pd
        import torch

        from .attribution.interventions import run_with_deltas

        if not isinstance(scales, Mapping) or not scales:
            raise GraphError("scales must be a non-empty dict {node id or group: scale}")
        prep = self._context_for(model, transcoders)
        nodes = self.nodes
        pos_of = dict(zip(nodes["node_id"], range(self.n_nodes), strict=True))
        delta = np.zeros(self.n_nodes)  # relative change of each node's write vector
        fixed = np.zeros(self.n_nodes, bool)
        for key, s in scales.items():
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
                raise GraphError(f"scale for {key!r} must be a finite number (0 ablates), got {s!r}")
            for nid in self._resolve(key):
                i = pos_of[nid]
                if nodes["kind"].iat[i] == "logit":
                    raise GraphError(f"{nid!r} is a logit (a target); scale features, errors or embeddings")
                delta[i] = float(s) - 1.0
                fixed[i] = True
        # the real model: add (s - 1) * write vector at each node's site and position
        P, d = len(self.token_ids), prep.lin.d_model
        deltas: dict[tuple[str, int], torch.Tensor] = {}
        for i in np.nonzero(fixed)[0]:
            kind, layer, p = nodes["kind"].iat[i], int(nodes["layer"].iat[i]), int(nodes["position"].iat[i])
            if kind == "feature":
                f = int(nodes["feature"].iat[i])
                vec = float(nodes["activation"].iat[i]) * prep.reps[layer].decoder[f]
                key = ("mlp_out", layer)
            elif kind == "error":
                vec, key = prep.errors[layer, p], ("mlp_out", layer)
            else:
                vec, key = prep.real.resid_pre[0, p], ("resid_pre", 0)
            deltas.setdefault(key, torch.zeros(P, d))[p] += delta[i] * vec
        clean, patched, frozen = run_with_deltas(prep.model, prep.input_ids, deltas,
                                                 final_norm=prep.lin.ln_final)
        # the graph's prediction, propagated in layer order through feature nodes
        A = self.adjacency.tocsr()
        kind = nodes["kind"].to_numpy()
        act = nodes["activation"].to_numpy(dtype=np.float64)
        slope = nodes["slope"].to_numpy(dtype=np.float64)
        rel = delta.copy()
        free = (kind == "feature") & ~fixed
        for i in np.argsort(nodes["layer"].to_numpy(), kind="stable"):
            if free[i] and act[i] != 0:
                row = A.getrow(i)
                change = float(row.data @ rel[row.indices])
                rel[i] = slope[i] * change / act[i]
        out = []
        for i in np.nonzero(kind == "logit")[0]:
            tid = int(nodes["token_id"].iat[i])
            row = A.getrow(i)
            before = float(clean[tid] - clean.mean())
            after = float(patched[tid] - patched.mean())
            out.append({
                "token": nodes["token"].iat[i], "node_id": nodes["node_id"].iat[i],
                "real_change": after - before,
                "predicted_change": float(row.data @ rel[row.indices]),
                "predicted_direct": float(row.data @ delta[row.indices]),
                "real_change_frozen_norm": float(frozen[tid] - frozen.mean()) - before,
                "logit_before": before, "logit_after": after,
                "prob_before": float(torch.softmax(clean.double(), -1)[tid]),
                "prob_after": float(torch.softmax(patched.double(), -1)[tid]),
            })
        return pd.DataFrame(out)

    def _context_for(self, model: Any, transcoders: Any) -> Any:
        if model is None and self._context is not None:
            return self._context
        if model is None:
            raise GraphError(
                "this graph was loaded from a file: pass model= and transcoders= (the ones it was "
                f"built with: {self.metadata.get('transcoders', '?')}) to run interventions"
            )
        from .attribution.build import prepare

        prep = prepare(model, self.prompt, transcoders)
        if prep.input_ids.tolist() != list(self.token_ids):
            raise GraphError(
                f"{model.name} tokenizes the prompt differently from this graph "
                f"({len(prep.input_ids)} vs {len(self.token_ids)} tokens): use the graph's model"
            )
        return prep

    # ------------------------------------------------------------------ diff
    def diff(self, other: AttributionGraph, *, by: str = "feature", min_change: float = 0.0) -> GraphDiff:
        """Nodes and edges gained, lost and changed from ``self`` to ``other``.

        ``by="feature"`` matches across prompts (e.g. the same question in English and French):
        features by ``(layer, feature)``, errors by layer, embeddings by token and logits by token,
        summing over positions. ``by="node"`` matches exact node ids (same prompt).

            >>> d = g_en.diff(g_fr)
            >>> d.nodes_lost.head(); d.edges_changed.head()
        """
        if not isinstance(other, AttributionGraph):
            raise GraphError(f"diff needs another AttributionGraph, got {type(other).__name__}")
        if by not in ("feature", "node"):
            raise GraphError(f"by={by!r}: choose 'feature' (across prompts) or 'node' (exact ids)")
        na, ea = _keyed(self, by)
        nb, eb = _keyed(other, by)
        return GraphDiff.compute(na, nb, ea, eb, min_change=min_change, by=by)

    # ------------------------------------------------------------------ JSON (Neuronpedia)
    def to_json(self, path: str | os.PathLike | None = None, *, slug: str | None = None,
                scan: str | None = None, node_threshold: float | None = None,
                edge_threshold: float | None = None) -> dict[str, Any]:
        """Write (and return) the graph in Neuronpedia's attribution-graph JSON format.

        Pass ``node_threshold`` / ``edge_threshold`` to prune first (a full graph can be large).
        ``scan`` names the model for Neuronpedia (default: the model name).

            >>> graph.to_json("antonym.json", node_threshold=0.8, edge_threshold=0.98)
        """
        g = self
        if node_threshold is not None or edge_threshold is not None:
            g = self.prune(0.8 if node_threshold is None else node_threshold,
                           0.98 if edge_threshold is None else edge_threshold)
        data = _to_neuronpedia(g, slug=slug, scan=scan)
        if path is not None:
            from ..files import atomic_write_text

            atomic_write_text(path, json.dumps(data, ensure_ascii=False))
        return data

    @classmethod
    def from_json(cls, path_or_data: str | os.PathLike | Mapping[str, Any]) -> AttributionGraph:
        """Read a Neuronpedia attribution-graph JSON (ours or another tool's), validating it.

            >>> g = iw.AttributionGraph.from_json("antonym.json")
        """
        if isinstance(path_or_data, Mapping):
            data, where = path_or_data, "graph data"
        elif not isinstance(path_or_data, (str, os.PathLike)):
            raise GraphError(
                f"from_json takes a file path or the parsed JSON object (a dict), got "
                f"{type(path_or_data).__name__}: the top level must be a JSON object with metadata, "
                f"qParams, nodes, links"
            )
        else:
            p = Path(path_or_data)
            where = str(p)
            if not p.is_file():
                raise GraphError(f"graph file {p} does not exist")
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise GraphError(f"{p} is not valid JSON ({e}); re-export the graph") from e
        return _from_neuronpedia(data, where)

    # ------------------------------------------------------------------ compact binary
    def save(self, folder: str | os.PathLike) -> Path:
        """Save as ``graph.safetensors`` (edges, numeric columns) + ``graph.json`` (the rest).

            >>> graph.save("graphs/antonym"); g = iw.AttributionGraph.load("graphs/antonym")
        """
        import torch

        from ..files import atomic_save_safetensors, atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        coo = self.adjacency.tocoo()
        tensors = {
            "edge_src": torch.from_numpy(coo.col.astype(np.int32)),
            "edge_dst": torch.from_numpy(coo.row.astype(np.int32)),
            "edge_weight": torch.from_numpy(np.ascontiguousarray(coo.data)),
        }
        for c in _FLOAT_COLS:
            tensors[f"node_{c}"] = torch.from_numpy(self.nodes[c].to_numpy(dtype=np.float64).copy())
        for c in _INT_COLS:
            tensors[f"node_{c}"] = torch.from_numpy(self.nodes[c].to_numpy(dtype=np.int64).copy())
        atomic_save_safetensors(folder / "graph.safetensors", tensors)
        extra = [c for c in self.nodes.columns if c not in NODE_COLUMNS]
        atomic_write_json(folder / "graph.json", {
            "format": "interp_widgets.graph", "format_version": BINARY_FORMAT,
            "prompt": self.prompt, "str_tokens": self.str_tokens, "token_ids": self.token_ids,
            "n_nodes": self.n_nodes,
            "nodes": {c: self.nodes[c].astype(str).tolist() for c in _STR_COLS},
            "extra_columns": {c: self.nodes[c].tolist() for c in extra},
            "metadata": _jsonable(self.metadata), "supernodes": self.supernodes,
            "pinned": self.pinned, "labels": self.labels,
        })
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> AttributionGraph:
        """Load a graph written by :meth:`save`."""
        import pandas as pd
        import scipy.sparse as sp

        from ..errors import DictionaryError
        from ..files import load_safetensors, read_json

        folder = Path(folder)
        try:
            meta = read_json(folder / "graph.json", "graph description")
            t = load_safetensors(folder / "graph.safetensors")
        except DictionaryError as e:
            raise GraphError(str(e)) from e
        if not isinstance(meta, dict) or meta.get("format") != "interp_widgets.graph":
            raise GraphError(f"{folder}/graph.json is not an interp_widgets graph (format field)")
        if meta.get("format_version", 0) > BINARY_FORMAT:
            raise GraphError(f"{folder} was written by a newer interp_widgets: upgrade to read it")
        n = int(meta["n_nodes"])
        cols: dict[str, Any] = {}
        for c in _STR_COLS:
            cols[c] = meta["nodes"][c]
        for c in _FLOAT_COLS + _INT_COLS:
            key = f"node_{c}"
            if key not in t or t[key].shape[0] != n:
                raise GraphError(f"{folder}/graph.safetensors lacks column {c} for {n} nodes")
            cols[c] = t[key].numpy()
        for c, v in (meta.get("extra_columns") or {}).items():
            cols[c] = v
        nodes = pd.DataFrame(cols)
        src, dst, w = t["edge_src"].numpy(), t["edge_dst"].numpy(), t["edge_weight"].numpy()
        if len(src) and (src.max() >= n or dst.max() >= n or src.min() < 0 or dst.min() < 0):
            raise GraphError(f"{folder}: edges point outside the {n} nodes (file corrupted)")
        adj = sp.csr_matrix((w, (dst, src)), shape=(n, n))
        return cls.build(prompt=meta["prompt"], str_tokens=meta["str_tokens"],
                         token_ids=meta["token_ids"], nodes=nodes, adjacency=adj,
                         metadata=meta.get("metadata") or {}, supernodes=meta.get("supernodes"),
                         pinned=meta.get("pinned") or [], labels=meta.get("labels"),
                         compute_influence=False)


def sp_csr(x: Any) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix(x, dtype=np.float64)


def _logit_weights(nodes: Any) -> np.ndarray:
    w = np.where(nodes["kind"].to_numpy() == "logit", nodes["probability"].to_numpy(dtype=np.float64), 0.0)
    return np.nan_to_num(w)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


# ----------------------------------------------------------------------------- diff
def _keyed(g: AttributionGraph, by: str) -> tuple[Any, Any]:
    """Node table and edge table keyed for matching (aggregated over positions for 'feature')."""
    import pandas as pd

    n = g.nodes
    if by == "node":
        key = n["node_id"]
    else:
        key = np.select(
            [n["kind"] == "feature", n["kind"] == "error", n["kind"] == "embedding"],
            ["F" + n["layer"].astype(str) + "/" + n["feature"].astype(str),
             "Err" + n["layer"].astype(str), "Emb" + n["token"].astype(str)],
            "Logit" + n["token"].astype(str),
        )
        key = pd.Series(key, index=n.index)
    nodes = pd.DataFrame({"key": key, "kind": n["kind"], "layer": n["layer"],
                          "feature": n["feature"], "label": [g.labels.get(i, lab) for i, lab in
                                                             zip(n["node_id"], n["label"], strict=True)],
                          "influence": n["influence"], "activation": n["activation"]})
    nodes = nodes.groupby("key", sort=False).agg(
        kind=("kind", "first"), layer=("layer", "first"), feature=("feature", "first"),
        label=("label", "first"), influence=("influence", "sum"),
        activation=("activation", "sum"), count=("kind", "size")).reset_index()
    src, dst, _ = g.edges_arrays()
    w = g.adjacency.tocoo().data.astype(np.float64)
    k = key.to_numpy()
    edges = pd.DataFrame({"source": k[src], "target": k[dst], "weight": w})
    edges = edges.groupby(["source", "target"], sort=False)["weight"].sum().reset_index()
    return nodes, edges


@dataclass(frozen=True)
class GraphDiff:
    """What changed from graph A to graph B: six tables (pandas), strongest changes first."""

    nodes_gained: Any
    nodes_lost: Any
    nodes_changed: Any
    edges_gained: Any
    edges_lost: Any
    edges_changed: Any
    by: str = "feature"

    @classmethod
    def compute(cls, na: Any, nb: Any, ea: Any, eb: Any, *, min_change: float, by: str) -> GraphDiff:
        m = na.merge(nb, on="key", how="outer", suffixes=("_a", "_b"), indicator=True)
        for c in ("kind", "layer", "feature", "label"):
            m[c] = m[f"{c}_a"].where(m[f"{c}_a"].notna(), m[f"{c}_b"])
        m["influence_a"] = m["influence_a"].fillna(0.0)
        m["influence_b"] = m["influence_b"].fillna(0.0)
        m["delta"] = m["influence_b"] - m["influence_a"]
        cols = ["key", "kind", "layer", "feature", "label", "influence_a", "influence_b", "delta"]
        order = lambda df: df.reindex(df["delta"].abs().sort_values(ascending=False).index).reset_index(drop=True)  # noqa: E731
        gained = order(m.loc[m["_merge"] == "right_only", cols])
        lost = order(m.loc[m["_merge"] == "left_only", cols])
        both = m.loc[m["_merge"] == "both", cols]
        changed = order(both[both["delta"].abs() > min_change])
        e = ea.merge(eb, on=["source", "target"], how="outer", suffixes=("_a", "_b"), indicator=True)
        e["weight_a"] = e["weight_a"].fillna(0.0)
        e["weight_b"] = e["weight_b"].fillna(0.0)
        e["delta"] = e["weight_b"] - e["weight_a"]
        ecols = ["source", "target", "weight_a", "weight_b", "delta"]
        eboth = e.loc[e["_merge"] == "both", ecols]
        for df in (gained, lost, changed):
            df["layer"] = df["layer"].astype("int64")
            df["feature"] = df["feature"].astype("int64")
        return cls(
            nodes_gained=gained, nodes_lost=lost, nodes_changed=changed,
            edges_gained=order(e.loc[e["_merge"] == "right_only", ecols]),
            edges_lost=order(e.loc[e["_merge"] == "left_only", ecols]),
            edges_changed=order(eboth[eboth["delta"].abs() > min_change]), by=by,
        )

    def to_pandas(self) -> Any:
        """All node changes in one long table with a ``change`` column."""
        import pandas as pd

        parts = [df.assign(change=name) for name, df in (
            ("gained", self.nodes_gained), ("lost", self.nodes_lost), ("changed", self.nodes_changed))]
        return pd.concat(parts, ignore_index=True)

    def __repr__(self) -> str:
        return (f"GraphDiff(by={self.by!r}: nodes +{len(self.nodes_gained)} -{len(self.nodes_lost)} "
                f"~{len(self.nodes_changed)}; edges +{len(self.edges_gained)} "
                f"-{len(self.edges_lost)} ~{len(self.edges_changed)})")


# ----------------------------------------------------------------------------- Neuronpedia JSON
def _cantor(a: int, b: int) -> int:
    return (a + b) * (a + b + 1) // 2 + b


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond the float range
        return None
    return v if math.isfinite(v) else None


def _to_neuronpedia(g: AttributionGraph, *, slug: str | None, scan: str | None) -> dict[str, Any]:
    from .. import __version__

    n_layers = int(g.metadata.get("n_layers", max(int(g.nodes["layer"].max()), 0)))
    model = str(g.metadata.get("model", "unknown"))
    logits = g.nodes[g.nodes["kind"] == "logit"]
    top_logit = logits["node_id"].iat[int(np.argmax(logits["probability"].to_numpy()))] if len(logits) else None
    nodes = []
    for r in g.nodes.itertuples(index=False):
        kind, layer, pos = r.kind, int(r.layer), int(r.position)
        node: dict[str, Any] = {"node_id": r.node_id, "ctx_idx": pos,
                                "feature_type": FEATURE_TYPES[kind], "clerp": g.labels.get(r.node_id, r.label or "")}
        if kind == "feature":
            node.update(feature=_cantor(layer, int(r.feature)), layer=str(layer),
                        jsNodeId=f"{layer}_{int(r.feature)}-0", activation=_num(r.activation),
                        influence=_num(r.cumulative_influence))
        elif kind == "error":
            node.update(feature=-1, layer=str(layer), jsNodeId=f"{layer}_-1-{pos}",
                        activation=None, influence=_num(r.cumulative_influence))
        elif kind == "embedding":
            node.update(feature=pos, layer="E", jsNodeId=f"E_{int(r.token_id)}-{pos}",
                        activation=None, influence=_num(r.cumulative_influence))
        else:
            node.update(feature=int(r.token_id), layer=str(n_layers + 1),
                        jsNodeId=f"L_{int(r.token_id)}-{pos}", activation=None, influence=None,
                        token_prob=_num(r.probability) or 0.0, is_target_logit=r.node_id == top_logit)
        node.setdefault("token_prob", 0.0)
        node.setdefault("is_target_logit", False)
        node.update(run_idx=0, reverse_ctx_idx=0)
        # our own fields (the schema allows extra keys): what a round trip needs
        node["iw"] = {"kind": kind, "layer": layer, "feature": int(r.feature), "token": r.token,
                      "token_id": int(r.token_id), "label": r.label,
                      **{c: _num(getattr(r, c)) for c in _FLOAT_COLS}}
        nodes.append(node)
    src, dst, _ = g.edges_arrays()
    ids = g.nodes["node_id"].to_numpy()
    w = g.adjacency.tocoo().data
    links = [{"source": ids[s], "target": ids[t], "weight": float(x)} for s, t, x in zip(src, dst, w, strict=True)]
    pr = g.metadata.get("pruning") or {}
    settings = g.metadata.get("settings") or {}
    metadata = {
        "slug": slug or _slug(g.prompt),
        "scan": scan or model,
        "prompt_tokens": list(g.str_tokens),
        "prompt": g.prompt,
        "schema_version": 1,
        "info": {"generator": {"name": "interp_widgets", "version": __version__,
                               "url": "https://github.com/interp-widgets/interp_widgets"},
                 "create_time_ms": int(time.time() * 1000),
                 "description": f"{model} with {g.metadata.get('transcoders', 'transcoders')}"},
        "generation_settings": {k: settings[k] for k in ("max_n_logits", "desired_logit_prob",
                                                         "batch_size", "max_feature_nodes") if k in settings},
        "interp_widgets": _jsonable({"token_ids": g.token_ids, "metadata": g.metadata,
                                     "labels": g.labels}),
    }
    if pr:
        metadata["node_threshold"] = pr["node_threshold"]
        metadata["pruning_settings"] = {"node_threshold": pr["node_threshold"],
                                        "edge_threshold": pr["edge_threshold"]}
    return {
        "metadata": metadata,
        "qParams": {"pinnedIds": list(g.pinned),
                    "supernodes": [[name, *ids_] for name, ids_ in g.supernodes.items()],
                    "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": links,
    }


def _slug(prompt: str) -> str:
    import re

    s = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return (s[:48] or "graph").strip("-")


_REQUIRED_NODE = {"node_id": (str,), "feature": (int, type(None)), "layer": (str, int),
                  "ctx_idx": (int,), "feature_type": (str,), "jsNodeId": (str,), "clerp": (str,)}


def _is(x: Any, types: tuple) -> bool:
    if isinstance(x, bool):
        return bool in types
    return isinstance(x, types)


def _from_neuronpedia(data: Any, where: str) -> AttributionGraph:
    import pandas as pd
    import scipy.sparse as sp

    if not isinstance(data, Mapping):
        raise GraphError(f"{where}: the top level must be a JSON object with metadata, qParams, nodes, links")
    missing = [k for k in ("metadata", "qParams", "nodes", "links") if k not in data]
    if missing:
        raise GraphError(f"{where}: missing top-level keys {missing} (required: metadata, qParams, nodes, links)")
    meta = data["metadata"]
    if not isinstance(meta, Mapping):
        raise GraphError(f"{where}: metadata must be an object")
    for k, t in (("slug", str), ("scan", str), ("prompt", str)):
        if not isinstance(meta.get(k), t):
            raise GraphError(f"{where}: metadata.{k} must be a string, got {meta.get(k)!r}")
    toks = meta.get("prompt_tokens")
    if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
        raise GraphError(f"{where}: metadata.prompt_tokens must be a list of strings")
    q = data["qParams"]
    if not isinstance(q, Mapping):
        raise GraphError(f"{where}: qParams must be an object")
    if not isinstance(data["nodes"], list) or not isinstance(data["links"], list):
        raise GraphError(f"{where}: nodes and links must be arrays")
    if not data["nodes"]:
        raise GraphError(f"{where}: the graph has no nodes (an empty 'nodes' array); re-export it")
    ours = meta.get("interp_widgets") if isinstance(meta.get("interp_widgets"), Mapping) else {}
    for k, types, what in (("metadata", Mapping, "an object"), ("labels", Mapping, "an object of node id -> text"),
                           ("token_ids", list, "a list of token ids")):
        if ours.get(k) is not None and not isinstance(ours[k], types):
            raise GraphError(f"{where}: metadata.interp_widgets.{k} must be {what}, got {ours[k]!r}")
    if not all(_is(t, (int,)) for t in ours.get("token_ids") or []):
        raise GraphError(f"{where}: metadata.interp_widgets.token_ids must be a list of ints")
    our_meta = {k: v for k, v in dict(ours.get("metadata") or {}).items() if not (k == "n_layers" and v is None)}
    _check_our_metadata(our_meta, where)
    n_layers = our_meta.get("n_layers")
    recs = []
    seen: set[str] = set()
    for i, nd in enumerate(data["nodes"]):
        if not isinstance(nd, Mapping):
            raise GraphError(f"{where}: nodes[{i}] is not an object")
        for k, types in _REQUIRED_NODE.items():
            if k not in nd:
                raise GraphError(
                    f"{where}: nodes[{i}] ({nd.get('node_id', '?')!r}) has no {k!r}: every node needs "
                    f"{', '.join(_REQUIRED_NODE)}"
                )
            if not _is(nd[k], types):
                raise GraphError(f"{where}: nodes[{i}].{k} = {nd[k]!r} has the wrong type "
                                 f"(expected {' or '.join(t.__name__ for t in types)})")
        for k in ("influence", "activation"):
            if nd.get(k) is not None and not (_is(nd[k], (int, float))):
                raise GraphError(f"{where}: nodes[{i}].{k} must be a number or null, got {nd[k]!r}")
        nid = nd["node_id"]
        if nid in seen:
            raise GraphError(f"{where}: duplicate node_id {nid!r} (nodes[{i}]); node ids must be unique")
        seen.add(nid)
        recs.append(_node_record(nd, where, i, toks, n_layers))
    if n_layers is None:
        logit_layers = [int(nd["layer"]) - 1 for nd in data["nodes"]
                        if nd["feature_type"] == "logit" and str(nd["layer"]).lstrip("-").isdigit()]
        n_layers = max(logit_layers) if logit_layers else None
    for r in recs:
        if r["kind"] == "logit" and r["layer"] is None:
            r["layer"] = n_layers if n_layers is not None else -1
    nodes = pd.DataFrame.from_records(recs)
    index = {nid: j for j, nid in enumerate(nodes["node_id"])}
    src, dst, w = [], [], []
    for i, ln in enumerate(data["links"]):
        if not isinstance(ln, Mapping):
            raise GraphError(f"{where}: links[{i}] is not an object")
        for k in ("source", "target", "weight"):
            if k not in ln:
                raise GraphError(f"{where}: links[{i}] has no {k!r} (links need source, target, weight)")
        if not isinstance(ln["source"], str) or not isinstance(ln["target"], str):
            raise GraphError(f"{where}: links[{i}] source/target must be node id strings")
        if not _is(ln["weight"], (int, float)) or _num(ln["weight"]) is None:
            raise GraphError(f"{where}: links[{i}].weight must be a finite number, got {ln['weight']!r}")
        for k in ("source", "target"):
            if ln[k] not in index:
                raise GraphError(f"{where}: links[{i}].{k} = {ln[k]!r} is not a node id (dangling edge)")
        src.append(index[ln["source"]])
        dst.append(index[ln["target"]])
        w.append(float(ln["weight"]))
    n = len(nodes)
    adj = sp.coo_matrix((np.array(w, dtype=np.float64), (np.array(dst, dtype=np.int64),
                                                         np.array(src, dtype=np.int64))), shape=(n, n)).tocsr()
    pinned = q.get("pinnedIds", [])
    if not isinstance(pinned, list) or not all(isinstance(p, str) for p in pinned):
        raise GraphError(f"{where}: qParams.pinnedIds must be a list of node id strings")
    unknown = [p for p in pinned if p not in index]
    if unknown:
        raise GraphError(f"{where}: qParams.pinnedIds name unknown nodes {unknown[:5]}")
    groups: dict[str, list[str]] = {}
    sn = q.get("supernodes", [])
    if not isinstance(sn, list):
        raise GraphError(f"{where}: qParams.supernodes must be a list of [name, node_id, ...] lists")
    for i, s in enumerate(sn):
        if not isinstance(s, list) or not s or not all(isinstance(x, str) for x in s):
            raise GraphError(f"{where}: qParams.supernodes[{i}] must be [name, node_id, ...] (strings)")
        bad = [x for x in s[1:] if x not in index]
        if bad:
            raise GraphError(f"{where}: supernode {s[0]!r} names unknown nodes {bad[:5]}")
        groups[s[0]] = list(s[1:])
    token_ids = list(ours.get("token_ids") or [])
    if len(token_ids) != len(toks):
        token_ids = [-1] * len(toks)
    emb = nodes[nodes["kind"] == "embedding"]
    for tid, pos in zip(emb["token_id"], emb["position"], strict=True):
        if 0 <= pos < len(token_ids) and tid >= 0:
            token_ids[pos] = int(tid)
    labels = {str(k): str(v) for k, v in (ours.get("labels") or {}).items() if k in index}
    if not (nodes["influence"].notna().any() and ours):
        # another tool's file: influence from the edges; keep the file's cumulative influence
        # (what Neuronpedia prunes by) where it has one
        infl = influence(adj, _logit_weights(nodes))
        nodes["influence"] = infl
        cum = nodes["file_influence"].to_numpy(dtype=np.float64)
        nodes["cumulative_influence"] = np.where(np.isnan(cum), cumulative_scores(infl), cum)
    nodes = nodes.drop(columns=["file_influence"])
    our_meta.setdefault("scan", meta["scan"])
    our_meta.setdefault("slug", meta["slug"])
    if "pruning_settings" in meta and not our_meta.get("pruning"):
        ps = meta["pruning_settings"]
        if not isinstance(ps, Mapping) or not all(_num(ps.get(k)) is not None
                                                  for k in ("node_threshold", "edge_threshold")):
            raise GraphError(f"{where}: metadata.pruning_settings must be an object with numeric "
                             f"node_threshold and edge_threshold, got {ps!r}")
        our_meta["pruning"] = dict(ps)
    return AttributionGraph.build(prompt=meta["prompt"], str_tokens=toks, token_ids=token_ids,
                                  nodes=nodes, adjacency=adj, metadata=our_meta, supernodes=groups,
                                  pinned=pinned, labels=labels, compute_influence=False)


_INT_LIMIT = 2 ** 31  # node integers travel to the browser as int32


def _check_our_metadata(m: Mapping[str, Any], where: str) -> None:
    """The fields of our metadata that later code relies on have the types it expects."""
    n = m.get("n_layers")
    if n is not None and not (_is(n, (int,)) and 0 < n < _INT_LIMIT):
        raise GraphError(f"{where}: metadata.interp_widgets.metadata.n_layers must be a positive int, got {n!r}")
    for k in ("pruning", "settings"):
        if m.get(k) is not None and not isinstance(m[k], Mapping):
            raise GraphError(f"{where}: metadata.interp_widgets.metadata.{k} must be an object, got {m[k]!r}")
    pr = m.get("pruning")
    if pr and not all(_num(pr.get(k)) is not None for k in ("node_threshold", "edge_threshold")):
        raise GraphError(f"{where}: metadata.interp_widgets.metadata.pruning needs numeric node_threshold "
                         f"and edge_threshold, got {dict(pr)!r}")


def _node_record(nd: Mapping[str, Any], where: str, i: int, toks: list[str], n_layers: Any) -> dict[str, Any]:
    pos = nd["ctx_idx"]
    if not 0 <= pos < len(toks):
        raise GraphError(f"{where}: nodes[{i}].ctx_idx = {pos!r} is outside the prompt's {len(toks)} tokens "
                         f"(positions 0-{len(toks) - 1})")
    try:
        rec = _node_fields(nd, where, i, toks, n_layers)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        if isinstance(e, GraphError):
            raise
        raise GraphError(f"{where}: nodes[{i}] ({nd['node_id']!r}) has a malformed field ({type(e).__name__}: "
                         f"{e}); fix it, or drop its 'iw' entry to read the Neuronpedia fields only") from None
    for k in ("layer", "feature", "token_id"):
        v = rec.get(k)
        if v is not None and not -_INT_LIMIT < v < _INT_LIMIT:
            raise GraphError(f"{where}: nodes[{i}] ({nd['node_id']!r}) has {k} = {v}, out of range")
    return rec


def _node_fields(nd: Mapping[str, Any], where: str, i: int, toks: list[str], n_layers: Any) -> dict[str, Any]:
    ft = nd["feature_type"]
    ours = nd.get("iw") if isinstance(nd.get("iw"), Mapping) else None
    nan = float("nan")
    if ours and ours.get("kind") in KINDS:
        for k in ("layer", "feature", "token_id"):
            if (k != "token_id" or k in ours) and not _is(ours.get(k), (int,)):
                raise GraphError(f"{where}: nodes[{i}].iw.{k} must be an int, got {ours.get(k, '(missing)')!r}")
        rec = {"node_id": nd["node_id"], "kind": ours["kind"], "layer": int(ours["layer"]),
               "position": int(nd["ctx_idx"]), "feature": int(ours["feature"]),
               "label": str(ours.get("label") or ""), "token": str(ours.get("token") or ""),
               "token_id": int(ours.get("token_id", -1))}
        for c in _FLOAT_COLS:
            v = ours.get(c)
            if v is not None and not _is(v, (int, float)):
                raise GraphError(f"{where}: nodes[{i}].iw.{c} must be a number or null, got {v!r}")
            rec[c] = float(v) if v is not None else nan
        rec["file_influence"] = _num(nd.get("influence"))
        return rec
    pos = int(nd["ctx_idx"])
    parts = str(nd["node_id"]).split("_")
    rec = {"node_id": nd["node_id"], "position": pos, "feature": -1, "token": "", "token_id": -1,
           "label": nd["clerp"], **{c: nan for c in _FLOAT_COLS},
           "file_influence": _num(nd.get("influence"))}
    act = _num(nd.get("activation"))
    if ft == "embedding":
        rec.update(kind="embedding", layer=-1, token=toks[pos] if 0 <= pos < len(toks) else "")
        if len(parts) == 3 and parts[1].lstrip("-").isdigit():
            rec["token_id"] = int(parts[1])
    elif ft == "logit":
        rec.update(kind="logit", layer=n_layers, token_id=int(nd["feature"]) if nd["feature"] is not None else -1,
                   probability=_num(nd.get("token_prob")) or 0.0)
        clerp = nd["clerp"]
        if clerp.startswith('Output "') and '" (p=' in clerp:
            rec["token"] = clerp[len('Output "'):clerp.rindex('" (p=')]
    elif "error" in ft:
        rec.update(kind="error", layer=_layer(nd, where, i))
    else:
        if len(parts) < 3 or not parts[1].lstrip("-").isdigit():
            raise GraphError(f"{where}: nodes[{i}] feature node id {nd['node_id']!r} is not "
                             f"'layer_feature_position'")
        rec.update(kind="feature", layer=_layer(nd, where, i), feature=int(parts[1]), activation=act)
    return rec


def _layer(nd: Mapping[str, Any], where: str, i: int) -> int:
    try:
        return int(nd["layer"])
    except (TypeError, ValueError):
        raise GraphError(f"{where}: nodes[{i}].layer = {nd['layer']!r} is not a layer number") from None
