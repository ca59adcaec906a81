"""A random graph with the AttributionGraph interface (nodes table + edges_arrays), for view tests
and the payload benchmark at sizes a real prompt would take minutes to produce."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class ToyGraph:
    nodes: pd.DataFrame
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    tokens: list[str]
    n_layers: int
    prompt: str = "toy prompt"
    supernodes: dict = field(default_factory=dict)
    pinned: set = field(default_factory=set)

    def edges_arrays(self):
        return self.src, self.dst, self.weight

    def group(self, name, node_ids):
        self.supernodes[name] = list(node_ids)

    def ungroup(self, name):
        del self.supernodes[name]


def toy_graph(n_nodes: int = 200, n_edges: int = 1000, n_layers: int = 6, n_pos: int = 8,
              seed: int = 0, tokens: list[str] | None = None) -> ToyGraph:
    rng = np.random.default_rng(seed)
    tokens = tokens or [f" t{i}" for i in range(n_pos)]
    n_pos = len(tokens)
    rows = []
    for p in range(n_pos):
        rows.append(dict(id=f"E_{p}", kind="embed", layer=-1, position=p, feature=-1, activation=1.0, influence=0.5, label=f"emb {tokens[p]!r}"))
    for r, tok in enumerate([" Paris", " London", " the"]):
        rows.append(dict(id=f"L_{r}", kind="logit", layer=n_layers, position=n_pos - 1, feature=-1, activation=1.0 / (r + 1), influence=1.0, label=f"logit {tok!r}"))
    n_feat = max(0, n_nodes - len(rows))
    layer = rng.integers(0, n_layers, n_feat)
    pos = rng.integers(0, n_pos, n_feat)
    infl = rng.exponential(1.0, n_feat) ** 2
    for j in range(n_feat):
        kind = "error" if j % 17 == 0 else "feature"
        rows.append(dict(id=f"{layer[j]}_{pos[j]}_{j}", kind=kind, layer=int(layer[j]), position=int(pos[j]),
                         feature=-1 if kind == "error" else j, activation=float(rng.exponential(2.0)),
                         influence=float(infl[j]), label=f"{kind} {j} @L{layer[j]}"))
    nodes = pd.DataFrame(rows)
    n = len(nodes)
    lay = nodes["layer"].to_numpy()
    ps = nodes["position"].to_numpy()
    # edges go upward in layers and never backwards in position
    src = rng.integers(0, n, n_edges * 2)
    dst = rng.integers(0, n, n_edges * 2)
    ok = (lay[src] < lay[dst]) & (ps[src] <= ps[dst])
    src, dst = src[ok][:n_edges], dst[ok][:n_edges]
    w = rng.standard_t(3, len(src)).astype(np.float32)
    return ToyGraph(nodes=nodes, src=src.astype(np.int32), dst=dst.astype(np.int32), weight=w, tokens=tokens, n_layers=n_layers)
