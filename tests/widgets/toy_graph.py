"""Random AttributionGraphs (the real class, random numbers) for view tests and the payload
benchmark, at sizes a real prompt would take minutes to produce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from interp_widgets.analysis.graph import AttributionGraph


def toy_graph(n_nodes: int = 200, n_edges: int = 1000, n_layers: int = 6, n_pos: int = 8,
              seed: int = 0, tokens: list[str] | None = None) -> AttributionGraph:
    """Embeddings at every position, three logits at the last one, features and errors at random
    (layer, position); edges go up in layer and never back in position; heavy-tailed weights."""
    rng = np.random.default_rng(seed)
    tokens = list(tokens or [f" t{i}" for i in range(n_pos)])
    n_pos = len(tokens)
    rows = []
    for p in range(n_pos):
        rows.append(dict(node_id=f"E_{p}_{p}", kind="embedding", layer=-1, position=p, feature=-1,
                         activation=1.0, influence=0.5, label="", token=tokens[p], token_id=p))
    for r, tok in enumerate([" Paris", " London", " the"]):
        rows.append(dict(node_id=f"{n_layers + 1}_{r}_{n_pos - 1}", kind="logit", layer=n_layers,
                         position=n_pos - 1, feature=-1, activation=1.0, influence=1.0, label="",
                         token=tok, token_id=r, probability=0.6 / (r + 1)))
    n_feat = max(0, n_nodes - len(rows))
    layer = rng.integers(0, n_layers, n_feat)
    pos = rng.integers(0, n_pos, n_feat)
    infl = rng.exponential(1.0, n_feat) ** 2
    for j in range(n_feat):
        err = j % 17 == 0
        rows.append(dict(node_id=f"{layer[j]}_{-1 if err else j}_{pos[j]}" + (f"_{j}" if err else ""),
                         kind="error" if err else "feature", layer=int(layer[j]), position=int(pos[j]),
                         feature=-1 if err else j, activation=float(rng.exponential(2.0)),
                         influence=float(infl[j]), label="" if err else f"feature {j} @L{layer[j]}",
                         token=tokens[pos[j]], token_id=int(pos[j])))
    nodes = pd.DataFrame(rows)
    n = len(nodes)
    lay = nodes["layer"].to_numpy()
    ps = nodes["position"].to_numpy()
    src = rng.integers(0, n, n_edges * 8)  # about a third of random pairs point upward
    dst = rng.integers(0, n, n_edges * 8)
    ok = (lay[src] < lay[dst]) & (ps[src] <= ps[dst])
    pairs = np.unique(np.stack([dst[ok], src[ok]], 1), axis=0)
    pairs = pairs[rng.permutation(len(pairs))][:n_edges]
    w = rng.standard_t(3, len(pairs)).astype(np.float32)
    adj = sp.csr_matrix((w, (pairs[:, 0], pairs[:, 1])), shape=(n, n))  # row = target, col = source
    return AttributionGraph.build(prompt="".join(tokens), str_tokens=tokens, token_ids=list(range(n_pos)),
                                  nodes=nodes, adjacency=adj, compute_influence=False)
