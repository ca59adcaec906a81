"""The straightforward way to compute the same attribution edges: one backward pass per target.

For each target (a logit, or a feature's pre-activation) run ``torch.autograd.grad`` through the
frozen linear model over the whole prompt, then dot the gradient at each layer's output with
every source's write vector (active features, error nodes) and at the bottom with the
embeddings. Same constants as ours (one shared trace via ``prepare``), no batching, no prefix
truncation, no ranking: it is given the targets ours selected.

    >>> prep = prepare(model, prompt, transcoders)
    >>> rows = per_target_rows(prep, feature_idx)     # [n_logits + len(feature_idx), n_cols]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def per_target_rows(prep: Any, feature_idx: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Rows in the engine's column layout: ``[active features | errors | embeddings]``.

    Row order: the logit targets, then the features ``feature_idx`` (indices of active features).
    """
    lin = prep.lin.to(dtype, unembed=False) if dtype != prep.lin.dtype else prep.lin
    L, P, d = lin.n_layers, prep.n_pos, lin.d_model
    act = prep.active
    n_act = len(act)
    writes = [torch.zeros(P, d, dtype=dtype, requires_grad=True) for _ in range(L)]
    embed = prep.real.resid_pre[0].to(dtype).clone().requires_grad_(True)
    skips = [r.skip.to(dtype) if r is not None and r.skip is not None else None for r in prep.reps]
    # the frozen linear model as a differentiable function of every layer's MLP write
    mlp_in, y = lin.forward(embed, torch.stack(writes), skip=skips, bias=True)
    # write vectors of each source, per layer
    feat_w = torch.zeros(n_act, d, dtype=dtype)
    for layer, rep in enumerate(prep.reps):
        m = act.layer == layer
        if rep is not None and m.any():
            feat_w[m] = (act.activation[m, None] * rep.decoder[act.feature[m]]).to(dtype)
    errors = prep.errors.to(dtype)
    emb = prep.real.resid_pre[0].to(dtype)
    # active features are sorted by layer: each layer's are one contiguous slice
    bounds = torch.searchsorted(act.layer, torch.arange(L + 1)).tolist()

    def row(value: Tensor) -> Tensor:
        grads = torch.autograd.grad(value, [embed, *writes], retain_graph=True, allow_unused=True)
        out = torch.zeros(n_act + L * P + P, dtype=dtype)
        g_emb, g_layers = grads[0], grads[1:]
        for layer, g in enumerate(g_layers):
            if g is None:
                continue
            a, b = bounds[layer], bounds[layer + 1]
            out[a:b] = (g[act.pos[a:b]] * feat_w[a:b]).sum(-1)
            out[n_act + layer * P: n_act + (layer + 1) * P] = (g * errors[layer]).sum(-1)
        if g_emb is not None:
            out[n_act + L * P:] = (g_emb * emb).sum(-1)
        return out

    rows = []
    for j in range(len(prep.logit_ids)):
        rows.append(row(y[-1] @ prep.logit_vecs[j].to(dtype)))
    for i in feature_idx.tolist():
        layer, pos, f = int(act.layer[i]), int(act.pos[i]), int(act.feature[i])
        enc, _ = prep.reps[layer].target_vectors(prep.real.mlp_in[layer], torch.tensor([pos]),
                                                 torch.tensor([f]))
        rows.append(row(mlp_in[layer, pos] @ enc[0].to(dtype)))
    return torch.stack(rows)


def graph_rows(graph: Any) -> tuple[Tensor, Tensor, Any]:
    """The indices of ``graph``'s features among the active features, and the adjacency block
    (target rows: features then logits) in the same column layout as :func:`per_target_rows`
    restricted to the graph's sources."""
    prep = graph._context
    act = prep.active
    key = {(int(l_), int(p), int(f)): i for i, (l_, p, f) in
           enumerate(zip(act.layer.tolist(), act.pos.tolist(), act.feature.tolist(), strict=True))}
    n = graph.nodes
    feats = n[n["kind"] == "feature"]
    idx = torch.tensor([key[(r.layer, r.position, r.feature)] for r in feats.itertuples()],
                       dtype=torch.long)
    L, P = prep.lin.n_layers, prep.n_pos
    cols = torch.cat([idx, len(act) + torch.arange(L * P + P)])
    return idx, cols, prep
