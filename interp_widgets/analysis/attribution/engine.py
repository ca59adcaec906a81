"""Edges by batched vector-Jacobian products through the frozen linear model.

For a batch of targets (feature pre-activations, logits) we push their reading vectors backward
through the transposed frozen model *all at once* (``[batch, pos, d]`` gradients), only over the
prefix of positions the batch needs, and with each target entering at its own layer (rows are
sorted by layer so the active rows are a prefix of the batch). At every layer the gradient is
contracted with the write vectors of that layer's sources (active features, error nodes) and at
the bottom with the embeddings: one backward pass gives a whole row of the adjacency per target.

Columns are ``[active features (layer, pos, feature order) | errors (layer, pos) | embeddings]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .linear_model import FrozenLinearModel
from .replacement import LayerReplacement


@dataclass
class ActiveFeatures:
    """Every active feature of the prompt, sorted by ``(layer, pos, feature)``."""

    layer: Tensor  # int64 [n]
    pos: Tensor  # int64 [n]
    feature: Tensor  # int64 [n]
    activation: Tensor  # float [n]

    def __len__(self) -> int:
        return int(self.layer.shape[0])


def find_active(acts: list[Tensor | None], min_activation: float = 0.0) -> ActiveFeatures:
    """Collect the non-zero activations (``|a| > min_activation``) of every layer."""
    ls, ps, fs, vs = [], [], [], []
    for layer, a in enumerate(acts):
        if a is None:
            continue
        p, f = torch.nonzero(a.abs() > min_activation, as_tuple=True)
        ls.append(torch.full_like(p, layer))
        ps.append(p)
        fs.append(f)
        vs.append(a[p, f])
    if not ls:
        z = torch.zeros(0, dtype=torch.long)
        return ActiveFeatures(z, z, z, torch.zeros(0))
    return ActiveFeatures(torch.cat(ls), torch.cat(ps), torch.cat(fs), torch.cat(vs).float())


class _LayerSources:
    """The active features of one layer as edge sources (two layouts: padded-sparse or dense)."""

    def __init__(self, rep: LayerReplacement, pos: Tensor, feat: Tensor, act: Tensor, col0: int,
                 n_pos: int, dtype: torch.dtype):
        self.col0 = col0
        self.n = int(pos.shape[0])
        # counts[p] = number of active features at positions < p (they are sorted by position)
        per_pos = torch.bincount(pos, minlength=n_pos)
        self.upto = torch.cat([torch.zeros(1, dtype=torch.long), per_pos.cumsum(0)])
        kmax = int(per_pos.max()) if self.n else 0
        self.dense = kmax * 4 > rep.n_features  # most features active: one matmul is cheaper
        if self.dense:
            self.decoder = rep.decoder.to(dtype)
            self.flat = pos * rep.n_features + feat
            self.act = act.to(dtype)
            self.n_feat = rep.n_features
        else:
            # write vectors (activation x decoder row), padded per position: [pos, kmax, d]
            d = rep.decoder.shape[1]
            self.W = torch.zeros(n_pos, kmax, d, dtype=dtype)
            slot = torch.arange(self.n) - self.upto[pos]
            self.W[pos, slot] = (act[:, None] * rep.decoder[feat]).to(dtype)
            self.valid = torch.zeros(n_pos, kmax, dtype=torch.bool)
            self.valid[pos, slot] = True

    def edges(self, G: Tensor, out: Tensor) -> None:
        """``G [n, P', d]`` gradients at this layer's output -> ``out[:, cols]`` edge weights."""
        n, P, _ = G.shape
        m = int(self.upto[P])
        if m == 0:
            return
        if self.dense:
            res = (G @ self.decoder.T).reshape(n, P * self.n_feat)
            out[:, self.col0:self.col0 + m] = res[:, self.flat[:m]] * self.act[:m]
        else:
            res = torch.bmm(G.transpose(0, 1), self.W[:P].transpose(1, 2))  # [P', n, kmax]
            out[:, self.col0:self.col0 + m] = res.permute(1, 0, 2)[:, self.valid[:P]]


@dataclass
class Targets:
    """What each row attributes: ``layer`` (``n_layers`` for logits), ``pos`` and the reading
    vector ``vec`` (in ``mlp_in`` space for features, final-norm output space for logits)."""

    layer: Tensor  # int64 [T]
    pos: Tensor  # int64 [T]
    vec: Tensor  # [T, d]


class EdgeEngine:
    """Computes adjacency rows for targets, in batches, through the frozen linear model."""

    def __init__(self, lin: FrozenLinearModel, reps: list[LayerReplacement | None],
                 active: ActiveFeatures, errors: Tensor, embed: Tensor, dtype: torch.dtype):
        self.lin = lin if lin.dtype == dtype else lin.to(dtype, unembed=False)
        self.dtype = dtype
        self.n_layers = lin.n_layers
        self.n_pos = lin.n_pos
        self.skips = [r.skip.to(dtype).T.contiguous() if r is not None and r.skip is not None
                      else None for r in reps]
        n_act = len(active)
        self.n_active = n_act
        self.err0 = n_act
        self.emb0 = n_act + self.n_layers * self.n_pos
        self.n_cols = self.emb0 + self.n_pos
        self.errors = errors.to(dtype)
        self.embed = embed.to(dtype)
        self.sources: list[_LayerSources | None] = []
        bounds = torch.searchsorted(active.layer, torch.arange(self.n_layers + 1))
        for layer in range(self.n_layers):
            a, b = int(bounds[layer]), int(bounds[layer + 1])
            rep = reps[layer]
            if rep is None or a == b:
                self.sources.append(None)
                continue
            self.sources.append(_LayerSources(rep, active.pos[a:b], active.feature[a:b],
                                              active.activation[a:b], a, self.n_pos, dtype))

    def rows(self, t: Targets) -> Tensor:
        """Adjacency rows ``[T, n_cols]`` for a batch of targets (one backward pass)."""
        order = torch.argsort(-t.layer, stable=True)  # deepest first: active rows are a prefix
        layer, pos, vec = t.layer[order], t.pos[order], t.vec[order].to(self.dtype)
        n, N, lin = int(layer.shape[0]), self.n_layers, self.lin
        P = int(pos.max()) + 1
        out = torch.zeros(n, self.n_cols, dtype=self.dtype)
        G = torch.zeros(n, P, lin.d_model, dtype=self.dtype)
        n_logit = int((layer == N).sum())
        if n_logit:
            lp = pos[:n_logit]
            G[torch.arange(n_logit), lp] = lin.ln_final.transpose_at(vec[:n_logit], lp)
        for L in range(N - 1, -1, -1):
            n_gt = int((layer > L).sum())
            n_ge = int((layer >= L).sum())
            if n_gt:
                src = self.sources[L]
                if src is not None:
                    src.edges(G[:n_gt], out[:n_gt])
                e0 = self.err0 + L * self.n_pos
                out[:n_gt, e0:e0 + P] = (G[:n_gt] * self.errors[L, :P]).sum(-1)
            if n_ge == 0:
                continue
            g_mid = G[:n_ge]  # a view: updated in place, rows >= n_gt are still zero here
            if n_gt and self.skips[L] is not None:
                g_mid[:n_gt] += lin.ln2[L].transpose(G[:n_gt] @ self.skips[L])
            if n_ge > n_gt:  # targets reading this layer's MLP input enter here
                tp = pos[n_gt:n_ge]
                g_mid[torch.arange(n_gt, n_ge), tp] += lin.ln2[L].transpose_at(vec[n_gt:n_ge], tp)
            g_mid += lin.ln1[L].transpose(lin.attn[L].transpose(g_mid))
        out[:, self.emb0:self.emb0 + P] = (G * self.embed[:P]).sum(-1)
        result = torch.empty_like(out)
        result[order] = out
        return result


def partial_influence(rows: Tensor, logit_probs: Tensor, row_col: Tensor, max_iter: int,
                      chunk: int = 64) -> Tensor:
    """Influence of every column on the weighted logits, from the rows computed so far.

    ``rows [R, C]`` (logit rows first, ``len(logit_probs)`` of them), ``row_col[r]``: the column
    of the node that row ``r`` attributes (``-1`` for logits). Normalized ``|A|`` rows, summed
    over paths of every length (``w A + w A^2 + ...``). Works on chunks of rows so no copy of
    the (possibly large) row matrix is made.
    """
    R, C = rows.shape
    sums = torch.empty(R, dtype=rows.dtype)
    for i in range(0, R, chunk):
        sums[i:i + chunk] = rows[i:i + chunk].abs().sum(1)
    inv = 1.0 / sums.clamp_min(1e-10)
    w = torch.zeros(R, dtype=rows.dtype)
    w[: len(logit_probs)] = logit_probs.to(rows.dtype)
    is_feat = row_col >= 0
    infl = torch.zeros(C, dtype=rows.dtype)
    for _ in range(max_iter):
        scaled = w * inv
        c = torch.zeros(C, dtype=rows.dtype)
        for i in torch.nonzero(scaled, as_tuple=True)[0].split(chunk):
            c += scaled[i] @ rows[i].abs()
        if not bool(c.any()):
            break
        infl += c
        w = torch.zeros_like(w)
        w[is_feat] = c[row_col[is_feat]]
    return infl


def select_and_attribute(
    engine: EdgeEngine,
    logit_targets: Targets,
    logit_probs: Tensor,
    feature_targets: Callable[[Tensor], Targets],
    active: ActiveFeatures,
    max_feature_nodes: int,
    batch_size: int,
    round_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Logit rows, then feature rows in rounds ranked by influence (circuit-tracer's scheme).

    Returns ``(rows [n_logits + n_sel, C], selected feature indices (sorted), row order of
    the selected features)``. Ranking rounds have a fixed size so the result does not depend on
    ``batch_size``; within a round targets are sorted by position so each batch covers a short
    prefix.
    """
    n_log = int(logit_targets.layer.shape[0])
    n_act = len(active)
    n_sel = min(max_feature_nodes, n_act)
    rows = torch.zeros(n_log + n_sel, engine.n_cols, dtype=engine.dtype)
    row_col = torch.full((n_log + n_sel,), -1, dtype=torch.long)
    for i in range(0, n_log, batch_size):
        sl = slice(i, min(i + batch_size, n_log))
        rows[sl] = engine.rows(Targets(logit_targets.layer[sl], logit_targets.pos[sl],
                                       logit_targets.vec[sl]))
        if progress:
            progress(sl.stop - sl.start)
    visited = torch.zeros(n_act, dtype=torch.bool)
    st = n_log
    while st < n_log + n_sel:
        remaining = n_log + n_sel - st
        if n_sel == n_act:
            pending = torch.arange(n_act)  # everything is kept: no ranking needed
        else:
            infl = partial_influence(rows[:st], logit_probs, row_col[:st], engine.n_layers + 3)
            score = infl[:n_act].clone()
            score[visited] = -1.0
            # ties (e.g. zero influence so far) broken by |activation|, then by index
            key = torch.stack([score, active.activation.abs().to(score.dtype)], 1)
            rank = torch.from_numpy(_lexsort_desc(key.numpy()))
            pending = rank[~visited[rank]][: min(round_size, remaining)]
        # by position then layer: batches share short prefixes
        pending = pending[torch.argsort(active.pos[pending] * (engine.n_layers + 1)
                                        + active.layer[pending], stable=True)]
        for i in range(0, len(pending), batch_size):
            idx = pending[i:i + batch_size]
            rows[st:st + len(idx)] = engine.rows(feature_targets(idx))
            row_col[st:st + len(idx)] = idx
            visited[idx] = True
            st += len(idx)
            if progress:
                progress(len(idx))
    selected = torch.nonzero(visited, as_tuple=True)[0]
    feat_rows = torch.empty(n_act, dtype=torch.long)
    feat_rows[row_col[n_log:]] = torch.arange(n_log, n_log + n_sel)
    return rows, selected, feat_rows[selected]


def _lexsort_desc(key):  # key [n, 2] -> indices sorting by col 0 desc, then col 1 desc
    import numpy as np

    return np.lexsort((-key[:, 1], -key[:, 0])).astype(np.int64)
