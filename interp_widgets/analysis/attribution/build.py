"""``attribute``: build an attribution graph for one prompt; ``estimate_attribution``: its cost first.

    >>> graph = iw.attribute(model, 'The opposite of "small" is "')
    >>> graph.nodes.head()                       # embeddings, features, errors, logits
    >>> graph.prune().scores()                   # {'replacement': ..., 'completeness': ...}
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import GraphError, MemoryBudgetError, PromptError
from .engine import ActiveFeatures, EdgeEngine, Targets, find_active, select_and_attribute
from .linear_model import FrozenLinearModel, RealRun, capture, check_family
from .replacement import LayerReplacement, default_transcoders, replacements

DEFAULT_MAX_FEATURE_NODES = 1024
DEFAULT_BATCH_SIZE = 64


@dataclass
class Prepared:
    """Everything about one prompt that attribution needs before any backward pass."""

    model: Any
    prompt: str
    input_ids: Tensor
    str_tokens: list[str]
    lin: FrozenLinearModel
    real: RealRun
    reps: list[LayerReplacement | None]
    transcoders_name: str
    acts: list[Tensor | None]
    active: ActiveFeatures
    errors: Tensor  # [n_layers, pos, d]
    logit_ids: Tensor  # [T]
    logit_probs: Tensor  # [T]
    logit_vecs: Tensor  # [T, d] demeaned unembedding rows
    logit_values: Tensor  # [T] demeaned logits
    min_activation: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pos(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def lin64(self) -> FrozenLinearModel:
        """The frozen model in float64 (cached; the unembedding stays float32)."""
        if "lin64" not in self.settings:
            self.settings["lin64"] = self.lin.to(torch.float64, unembed=False)
        return self.settings["lin64"]

    def feature_targets(self, idx: Tensor) -> Targets:
        """Reading vectors of active features ``idx`` (their encoder in ``mlp_in`` space)."""
        layer, pos, feat = self.active.layer[idx], self.active.pos[idx], self.active.feature[idx]
        vec = torch.empty(len(idx), self.lin.d_model)
        for L in torch.unique(layer).tolist():
            m = layer == L
            enc, _ = self.reps[L].target_vectors(self.real.mlp_in[L], pos[m], feat[m])
            vec[m] = enc
        return Targets(layer, pos, vec)

    def feature_values(self, idx: Tensor, mlp_in: Tensor, *, const: bool = True) -> Tensor:
        """Target values (pre-activations) of features ``idx`` for MLP inputs ``mlp_in [L, P, d]``
        (``const=False``: without the constant term, the purely linear part)."""
        layer, pos, feat = self.active.layer[idx], self.active.pos[idx], self.active.feature[idx]
        out = torch.empty(len(idx), dtype=torch.float64)
        for L in torch.unique(layer).tolist():
            m = layer == L
            enc, c = self.reps[L].target_vectors(self.real.mlp_in[L], pos[m], feat[m])
            x = mlp_in[L, pos[m]].double()
            out[m] = (x * enc.double()).sum(-1) + (c.double() if const else 0.0)
        return out


def _tokens(model: Any, prompt: Any) -> tuple[str, Tensor]:
    if not isinstance(prompt, str):
        raise PromptError(
            f"attribute takes one prompt string, got {type(prompt).__name__}: pass text such as "
            f"'The opposite of \"small\" is \"'"
        )
    toks = model.tokenize(prompt)
    return prompt, toks.input_ids[0]


def _logit_targets(model: Any, lin: FrozenLinearModel, real: RealRun, targets: Any,
                   max_n_logits: int, desired_logit_prob: float) -> tuple[Tensor, Tensor]:
    logits = real.logits[-1].double()
    probs = torch.softmax(logits, -1)
    if targets is None:
        if not 0.0 < desired_logit_prob <= 1.0:
            raise GraphError(f"desired_logit_prob must be in (0, 1], got {desired_logit_prob}")
        if not isinstance(max_n_logits, int) or max_n_logits < 1:
            raise GraphError(f"max_n_logits must be a positive int, got {max_n_logits!r}")
        p, ids = probs.sort(descending=True)
        # the top tokens until their cumulative probability reaches desired_logit_prob
        n = int(torch.searchsorted(p.cumsum(0), torch.tensor(desired_logit_prob, dtype=p.dtype))) + 1
        n = max(1, min(n, max_n_logits, len(ids)))
        return ids[:n].clone(), p[:n].float()
    if isinstance(targets, (str, int)):
        targets = [targets]
    ids: list[int] = []
    for t in targets:
        if isinstance(t, bool) or not isinstance(t, (str, int)):
            raise GraphError(f"a target is a token string or id, got {type(t).__name__} {t!r}")
        if isinstance(t, str):
            enc = model.tokenizer(t, add_special_tokens=False)["input_ids"]
            if len(enc) != 1:
                pieces = [model.tokenizer.decode([i]) for i in enc]
                raise GraphError(
                    f"target {t!r} is {len(enc)} tokens {pieces}: a logit target must be one token "
                    f"(include the leading space if the model expects one, e.g. ' large')"
                )
            t = enc[0]
        if not 0 <= t < lin.W_U.shape[0]:
            raise GraphError(f"target token id {t} is out of range: vocab ids are 0-{lin.W_U.shape[0] - 1}")
        if t not in ids:
            ids.append(int(t))
    if not ids:
        raise GraphError("targets is empty: pass None (top tokens) or at least one token")
    idt = torch.tensor(ids)
    return idt, probs[idt].float()


def prepare(model: Any, prompt: str, transcoders: Any = None, *, targets: Any = None,
            max_n_logits: int = 10, desired_logit_prob: float = 0.95,
            min_activation: float = 0.0) -> Prepared:
    """One real trace + encoders: activations, active features, errors and logit targets."""
    check_family(model)
    prompt, ids = _tokens(model, prompt)
    if transcoders is None:
        transcoders = default_transcoders(model)
    reps = replacements(model, transcoders)
    lin, real = capture(model, ids)
    acts: list[Tensor | None] = []
    errors = torch.empty_like(real.mlp_out)
    for L, rep in enumerate(reps):
        if rep is None:
            acts.append(None)
            errors[L] = real.mlp_out[L]  # a layer without transcoder is all error
            continue
        a = rep.activations(real.mlp_in[L])
        if min_activation > 0:
            a = torch.where(a.abs() > min_activation, a, torch.zeros_like(a))
        acts.append(a)
        errors[L] = real.mlp_out[L] - rep.reconstruction(a, real.mlp_in[L])
    active = find_active(acts)
    logit_ids, logit_probs = _logit_targets(model, lin, real, targets, max_n_logits,
                                            desired_logit_prob)
    W_U = lin.W_U
    vecs = W_U[logit_ids] - W_U.mean(0)
    last = real.logits[-1]
    values = last[logit_ids] - last.mean()
    name = getattr(transcoders, "name", None) or type(transcoders).__name__
    return Prepared(
        model=model, prompt=prompt, input_ids=ids,
        str_tokens=[model.tokenizer.decode([i]) for i in ids.tolist()], lin=lin, real=real,
        reps=reps, transcoders_name=str(name), acts=acts, active=active, errors=errors,
        logit_ids=logit_ids, logit_probs=logit_probs, logit_vecs=vecs, logit_values=values,
        min_activation=float(min_activation),
    )


# ---------------------------------------------------------------------------------- estimates
_RATE: list[float] = []


def _flop_rate() -> float:
    """Measured matmul throughput of this machine (FLOP/s), once per process."""
    if not _RATE:
        a, b = torch.randn(64 * 16, 576), torch.randn(576, 576)
        a @ b
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < 0.05:
            a @ b
            n += 1
        _RATE.append(2 * 64 * 16 * 576 * 576 * n / (time.perf_counter() - t))
    return _RATE[0]


@dataclass(frozen=True)
class AttributionEstimate:
    """Predicted cost of :func:`attribute` (from the real prompt's active features)."""

    n_tokens: int
    n_active_features: int
    n_feature_nodes: int
    n_logits: int
    n_columns: int
    memory_bytes: int
    seconds: float
    breakdown: dict[str, int]

    def __repr__(self) -> str:
        return (
            f"AttributionEstimate({self.n_tokens} tokens, {self.n_active_features:,} active "
            f"features -> {self.n_feature_nodes:,} feature nodes, {self.n_logits} logits; "
            f"~{_fmt_bytes(self.memory_bytes)}, ~{self.seconds:.1f} s)"
        )

    def to_pandas(self) -> Any:
        import pandas as pd

        rows = [{"item": k, "bytes": v} for k, v in self.breakdown.items()]
        return pd.DataFrame(rows)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def _estimate(prep: Prepared, max_feature_nodes: int, batch_size: int, dtype: torch.dtype) -> AttributionEstimate:
    item = torch.empty(0, dtype=dtype).element_size()
    L, P, d = prep.lin.n_layers, prep.n_pos, prep.lin.d_model
    n_act = len(prep.active)
    n_sel = min(max_feature_nodes, n_act)
    n_log = int(prep.logit_ids.shape[0])
    n_cols = n_act + L * P + P
    n_rows = n_log + n_sel
    B = min(batch_size, max(n_rows, 1))
    n_nodes = n_sel + L * P + P + n_log
    sparse_w = 0
    for layer, a in enumerate(prep.acts):
        if a is None:
            continue
        nz = (a != 0).sum(1)
        kmax = int(nz.max()) if nz.numel() else 0
        if kmax * 4 <= prep.reps[layer].n_features:
            sparse_w += P * kmax * d * item
    ranking = 64 * n_cols * item * 2 if n_sel < n_act else 0  # |A| of one chunk of rows
    breakdown = {
        "edge rows": n_rows * n_cols * item,
        "ranking copy": ranking,
        "batch buffers": B * (P * d * 6 + n_cols * 2) * item,
        "write vectors": sparse_w,
        "frozen model": sum(a.pattern.numel() for a in prep.lin.attn) * 4 + 5 * L * P * d * 4,
        "activations": sum(a.numel() for a in prep.acts if a is not None) * 4,
        "graph": n_nodes * n_nodes * item * 3,
    }
    # allocator slack, the traced forward pass, tables: measured ~25% + a few tens of MB
    breakdown["working memory"] = int(0.25 * sum(breakdown.values())) + (32 << 20)
    memory = int(sum(breakdown.values()))
    # compute: per row, backward over the layers below its target, over its prefix of positions
    H = max(a.n_heads for a in prep.lin.attn)
    hd = prep.lin.attn[0].head_dim
    n_kv = prep.lin.attn[0].n_kv
    per_pos_layer = 2 * (d * H * hd + n_kv * hd * d + H * P * hd) + 2 * d * d * any(
        r is not None and r.skip is not None for r in prep.reps)
    edge_cost = 0.0
    for layer, a in enumerate(prep.acts):
        if a is not None:
            nz = int((a != 0).sum(1).max())
            dense = nz * 4 > prep.reps[layer].n_features
            edge_cost += 2 * d * (a.shape[1] if dense else nz)
    if n_act:
        mean_layer = float(prep.active.layer.float().mean()) + 1
        mean_pos = float(prep.active.pos.float().mean()) + 1
    else:
        mean_layer, mean_pos = L, P
    feat_flops = n_sel * mean_pos * (mean_layer * per_pos_layer + edge_cost * mean_layer / L)
    logit_flops = n_log * P * (L * per_pos_layer + edge_cost)
    flops = feat_flops + logit_flops
    n_batches = (n_rows + B - 1) // B
    rounds = (n_sel + 255) // 256 if n_sel < n_act else 0
    seconds = flops / _flop_rate() + n_batches * L * 6e-4 + rounds * n_rows * n_cols * 4 * 10 / 2e9
    return AttributionEstimate(
        n_tokens=P, n_active_features=n_act, n_feature_nodes=n_sel, n_logits=n_log,
        n_columns=n_cols, memory_bytes=memory, seconds=float(seconds), breakdown=breakdown,
    )


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def _budget(memory_budget: Any) -> int | None:
    if memory_budget is None:
        return None
    if memory_budget == "auto":
        return int(0.8 * _available_memory())
    if isinstance(memory_budget, str):
        m = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?b)\s*", memory_budget.lower())
        if not m:
            raise GraphError(
                f"memory_budget {memory_budget!r} is not a size: write e.g. '4GB', '500MB', a "
                f"number of bytes, 'auto' (80% of available memory) or None (no check)"
            )
        return int(float(m.group(1)) * _UNITS[m.group(2)])
    if isinstance(memory_budget, (int, float)) and not isinstance(memory_budget, bool) and memory_budget > 0:
        return int(memory_budget)
    raise GraphError(f"memory_budget must be bytes, a size string, 'auto' or None; got {memory_budget!r}")


def _check_args(max_feature_nodes: Any, batch_size: Any, min_activation: Any = 0.0) -> None:
    if isinstance(max_feature_nodes, bool) or not isinstance(max_feature_nodes, int) or max_feature_nodes < 0:
        raise GraphError(f"max_feature_nodes must be an int >= 0, got {max_feature_nodes!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GraphError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(min_activation, bool) or not isinstance(min_activation, (int, float)) or not (
            math.isfinite(min_activation) and min_activation >= 0):
        # NaN would silently drop every feature (nothing compares greater than NaN)
        raise GraphError(f"min_activation must be a finite number >= 0, got {min_activation!r}")


def _prompt_floor(model: Any, prompt: Any) -> tuple[int, dict[str, int]]:
    """Bytes attribution needs whatever the transcoders, from the prompt length alone: the
    frozen attention patterns grow as n_tokens squared. Known before any forward pass."""
    from .linear_model import check_family

    check_family(model)
    if not isinstance(prompt, str):
        return 0, {}
    P = int(model.tokenize(prompt).input_ids.shape[1])  # also refuses empty / over-long prompts
    L, d = model.n_layers, model.d_model
    H = int(getattr(model.config, "num_attention_heads", None) or getattr(model.config, "n_head", 1))
    parts = {
        "attention patterns": L * H * P * P * 4 + 2 * H * P * P * 4,  # kept + one layer's scores
        "recorded activations": 9 * L * P * d * 4,
        "logits": P * model.d_vocab * 4,
    }
    return P, parts


def estimate_attribution(
    model: Any,
    prompt: str,
    transcoders: Any = None,
    *,
    max_feature_nodes: int = DEFAULT_MAX_FEATURE_NODES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    targets: Any = None,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    min_activation: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> AttributionEstimate:
    """Predict the memory and time :func:`attribute` will need (runs one forward pass only).

        >>> est = iw.estimate_attribution(model, "The Eiffel Tower is in")
        >>> est.memory_bytes, est.seconds
        >>> est.to_pandas()                       # memory by item
    """
    _check_args(max_feature_nodes, batch_size, min_activation)
    prep = prepare(model, prompt, transcoders, targets=targets, max_n_logits=max_n_logits,
                   desired_logit_prob=desired_logit_prob, min_activation=min_activation)
    return _estimate(prep, max_feature_nodes, batch_size, dtype)


# ---------------------------------------------------------------------------------- attribute
def attribute(
    model: Any,
    prompt: str,
    transcoders: Any = None,
    *,
    max_feature_nodes: int = DEFAULT_MAX_FEATURE_NODES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    targets: Any = None,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    min_activation: float = 0.0,
    memory_budget: Any = "auto",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> Any:
    """The attribution graph of ``prompt``'s next-token prediction (local replacement model).

    Attention patterns and norm scales are frozen at their values on the prompt; each layer's MLP
    is replaced by its transcoder (frozen activations x decoder rows + skip) plus an error node.
    Nodes: embeddings, active features (the ``max_feature_nodes`` most influential, chosen in
    rounds), errors and target logits (top tokens up to ``desired_logit_prob`` cumulative
    probability, at most ``max_n_logits``; or ``targets``: token strings / ids). Edges are the
    direct linear effects, computed with batched backward passes (``batch_size`` targets each).

    ``transcoders``: None (the starter pack on SmolLM2, else the model's neurons), a
    TranscoderSet, a dict layer -> transcoder, or ``"neurons"``. ``memory_budget``: bytes, a
    string like ``"4GB"``, ``"auto"`` (80% of free memory) or None; the call refuses with
    :class:`~interp_widgets.errors.MemoryBudgetError` when the estimate exceeds it.

        >>> graph = iw.attribute(model, 'The opposite of "small" is "', max_feature_nodes=512)
        >>> graph.targets[["token", "probability"]]
        >>> graph.prune(node_threshold=0.8).to_json("antonym.json")
    """
    from ..graph import AttributionGraph

    _check_args(max_feature_nodes, batch_size, min_activation)
    if dtype not in (torch.float32, torch.float64):
        raise GraphError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    budget = _budget(memory_budget)
    if budget is not None:
        # a long prompt is refused before the forward pass that would allocate its patterns
        n_tok, floor = _prompt_floor(model, prompt)
        if sum(floor.values()) > budget:
            raise MemoryBudgetError(
                f"a {n_tok}-token prompt needs at least ~{_fmt_bytes(sum(floor.values()))} for "
                f"attribution before any feature is counted ({', '.join(f'{k} ~{_fmt_bytes(v)}' for k, v in floor.items())}), "
                f"but memory_budget is {_fmt_bytes(budget)}" + (" (80% of the memory available now)" if memory_budget == "auto" else "")
                + ". Shorten the prompt (attention patterns grow with its length squared), or pass a "
                "larger memory_budget"
            )
    t0 = time.perf_counter()
    prep = prepare(model, prompt, transcoders, targets=targets, max_n_logits=max_n_logits,
                   desired_logit_prob=desired_logit_prob, min_activation=min_activation)
    est = _estimate(prep, max_feature_nodes, batch_size, dtype)
    if budget is not None and est.memory_bytes > budget:
        biggest = max(est.breakdown, key=est.breakdown.get)
        raise MemoryBudgetError(
            f"this graph needs ~{_fmt_bytes(est.memory_bytes)} but memory_budget is "
            f"{_fmt_bytes(budget)} ({est.n_active_features:,} active features, "
            f"{est.n_feature_nodes:,} feature nodes, {est.n_tokens} tokens; largest part: "
            f"{biggest}). Lower max_feature_nodes (now {max_feature_nodes}) or batch_size "
            f"(now {batch_size}), shorten the prompt, raise min_activation, or pass a larger "
            f"memory_budget"
        )
    t_prep = time.perf_counter() - t0
    settings = dict(max_feature_nodes=max_feature_nodes, batch_size=batch_size,
                    max_n_logits=max_n_logits, desired_logit_prob=desired_logit_prob,
                    min_activation=min_activation, dtype=str(dtype).replace("torch.", ""))
    engine = EdgeEngine(prep.lin, prep.reps, prep.active, prep.errors, prep.real.resid_pre[0], dtype)
    total = est.n_logits + est.n_feature_nodes
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="attribution", unit="target", leave=False)
    try:
        with torch.no_grad():
            rows, selected, sel_rows = select_and_attribute(
                engine,
                Targets(torch.full_like(prep.logit_ids, prep.lin.n_layers),
                        torch.full_like(prep.logit_ids, prep.n_pos - 1), prep.logit_vecs),
                prep.logit_probs, prep.feature_targets, prep.active, max_feature_nodes,
                batch_size, progress=bar.update if bar is not None else None,
            )
    finally:
        # an interrupt leaves nothing behind: the model was only traced, never hooked
        if bar is not None:
            bar.close()
    t_edges = time.perf_counter() - t0 - t_prep
    graph = assemble(prep, engine, rows, selected, sel_rows, settings)
    meta = graph.metadata
    meta["timings"] = {"prepare_s": t_prep, "edges_s": t_edges,
                       "total_s": time.perf_counter() - t0}
    meta["estimate"] = {"memory_bytes": est.memory_bytes, "seconds": est.seconds}
    return AttributionGraph._from_build(graph, prep)


def replacement_forward(
    prep: Prepared,
    *,
    feature_scale: Tensor | None = None,
    error_scale: Tensor | None = None,
    embed_scale: Tensor | None = None,
    bias: bool = True,
    features: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the local replacement model (frozen, float64), optionally scaling sources.

    ``feature_scale [n_active]``, ``error_scale [n_layers, pos]``, ``embed_scale [pos]``
    multiply each source's write vector; ``bias=False`` drops every constant term. Returns
    ``(feature_values [n_active], target_logits [n_targets], logits [vocab])``: every active
    feature's target value (pre-activation), the demeaned target logits (float64) and the last
    position's logits. With no scaling the logits are the model's own (the replacement is exact).
    ``features``: indices of the active features whose values to return (default: all).
    """
    L, P, d = prep.lin.n_layers, prep.n_pos, prep.lin.d_model
    act = prep.active
    a = act.activation.double()
    if feature_scale is not None:
        a = a * feature_scale.double()
    writes = torch.zeros(L, P, d, dtype=torch.float64)
    for layer, rep in enumerate(prep.reps):
        if rep is None:
            continue
        m = act.layer == layer
        dense = torch.zeros(P, rep.n_features, dtype=torch.float64)
        dense[act.pos[m], act.feature[m]] = a[m]
        writes[layer] = dense @ rep.decoder.double()
        if bias:
            writes[layer] += rep.output_bias.double()
    err = prep.errors.double()
    if error_scale is not None:
        err = err * error_scale.double()[..., None]
    emb = prep.real.resid_pre[0].double()
    if embed_scale is not None:
        emb = emb * embed_scale.double()[:, None]
    lin64 = prep.lin64
    skips = [r.skip.double() if r is not None and r.skip is not None else None for r in prep.reps]
    mlp_in, y = lin64.forward(emb, writes + err, skip=skips, bias=bias)
    logits = (y[-1].float() @ prep.lin.W_U.T).double()
    targets = (y[-1] * prep.logit_vecs.double()).sum(-1)
    if bias and prep.lin.b_U is not None:
        logits = logits + prep.lin.b_U.double()
        targets = targets + prep.lin.b_U.double()[prep.logit_ids] - prep.lin.b_U.double().mean()
    idx = torch.arange(len(act)) if features is None else features
    values = prep.feature_values(idx, mlp_in, const=bias)
    return values, targets, logits


def target_biases(prep: Prepared, sel: Tensor) -> tuple[Tensor, Tensor]:
    """Constant part of each target (all sources zero): features ``sel`` and the logits."""
    P, d = prep.n_pos, prep.lin.d_model
    zero = torch.zeros(P, d)
    outs = torch.stack([
        (r.output_bias.expand(P, d) if r is not None else zero) for r in prep.reps
    ])
    skips = [r.skip if r is not None else None for r in prep.reps]
    # float32 is enough for the constants (and avoids a float64 copy of the weights)
    mlp_in0, y0 = prep.lin.forward(zero, outs, skip=skips, bias=True)
    f_bias = prep.feature_values(sel, mlp_in0)
    l_bias = (y0[-1].double() * prep.logit_vecs.double()).sum(-1)
    if prep.lin.b_U is not None:
        b = prep.lin.b_U.double()
        l_bias = l_bias + b[prep.logit_ids] - b.mean()
    return f_bias, l_bias


def assemble(prep: Prepared, engine: EdgeEngine, rows: Tensor, selected: Tensor,
             sel_rows: Tensor, settings: dict[str, Any]) -> Any:
    """Rows of the edge engine -> an :class:`AttributionGraph` (nodes table + sparse adjacency)."""
    import pandas as pd
    import scipy.sparse as sp

    from ..graph import AttributionGraph, embedding_id, error_id, feature_id, logit_id

    L, P = prep.lin.n_layers, prep.n_pos
    n_f, n_log = int(selected.shape[0]), int(prep.logit_ids.shape[0])
    src_cols = torch.cat([selected, engine.err0 + torch.arange(L * P), engine.emb0 + torch.arange(P)])
    n_src = int(src_cols.shape[0])
    n_nodes = n_src + n_log
    target_rows = torch.cat([sel_rows, torch.arange(n_log)])
    block = torch.empty(len(target_rows), n_src, dtype=rows.dtype)
    dropped = torch.empty(len(target_rows), dtype=torch.float64)
    dropped_abs = torch.empty(len(target_rows), dtype=torch.float64)
    for i in range(0, len(target_rows), 64):  # chunks: no full-size copies of the row matrix
        r = rows[target_rows[i:i + 64]]
        b = r[:, src_cols]
        block[i:i + 64] = b
        # what the graph leaves out: edges from active features that are not nodes
        dropped[i:i + 64] = r.sum(1, dtype=torch.float64) - b.sum(1, dtype=torch.float64)
        dropped_abs[i:i + 64] = (r.abs().sum(1, dtype=torch.float64)
                                 - b.abs().sum(1, dtype=torch.float64))
    tgt_nodes = np.concatenate([np.arange(n_f), np.arange(n_src, n_nodes)])
    dense = block.numpy()
    r, c = np.nonzero(dense)
    adj = sp.csr_matrix((dense[r, c], (tgt_nodes[r], c)), shape=(n_nodes, n_nodes))

    act = prep.active
    fl, fp, ff = act.layer[selected], act.pos[selected], act.feature[selected]
    fa = act.activation[selected]
    f_val = prep.feature_values(selected, prep.real.mlp_in)
    f_bias, l_bias = target_biases(prep, selected)
    slopes = torch.empty(n_f)
    norms = torch.empty(n_f)
    for layer in torch.unique(fl).tolist():
        m = fl == layer
        rep = prep.reps[layer]
        slopes[m] = rep.slopes(prep.real.mlp_in[layer], fp[m], ff[m])
        norms[m] = fa[m].abs() * rep.decoder[ff[m]].norm(dim=-1)
    toks, ids = prep.str_tokens, prep.input_ids.tolist()
    nan = float("nan")
    recs: list[dict[str, Any]] = []
    for i in range(n_f):
        layer, pos, feat = int(fl[i]), int(fp[i]), int(ff[i])
        recs.append(dict(node_id=feature_id(layer, feat, pos), kind="feature", layer=layer,
                         position=pos, feature=feat, activation=float(fa[i]),
                         label=prep.reps[layer].label(feat), token="", token_id=-1,
                         probability=nan, value=float(f_val[i]), bias=float(f_bias[i]),
                         dropped=float(dropped[i]), dropped_abs=float(dropped_abs[i]),
                         slope=float(slopes[i]), norm=float(norms[i])))
    err_norm = prep.errors.norm(dim=-1)
    for layer in range(L):
        for pos in range(P):
            recs.append(dict(node_id=error_id(layer, pos), kind="error", layer=layer, position=pos,
                             feature=-1, activation=nan, label=f"error L{layer}", token="",
                             token_id=-1, probability=nan, value=nan, bias=nan, dropped=nan,
                             dropped_abs=nan, slope=nan, norm=float(err_norm[layer, pos])))
    emb_norm = prep.real.resid_pre[0].norm(dim=-1)
    for pos in range(P):
        recs.append(dict(node_id=embedding_id(ids[pos], pos), kind="embedding", layer=-1,
                         position=pos, feature=-1, activation=nan, label=f"Emb: {toks[pos]!r}",
                         token=toks[pos], token_id=ids[pos], probability=nan, value=nan,
                         bias=nan, dropped=nan, dropped_abs=nan, slope=nan,
                         norm=float(emb_norm[pos])))
    tok = prep.model.tokenizer
    for j in range(n_log):
        tid = int(prep.logit_ids[j])
        s = tok.decode([tid])
        p = float(prep.logit_probs[j])
        recs.append(dict(node_id=logit_id(L, tid, P - 1), kind="logit", layer=L, position=P - 1,
                         feature=-1, activation=nan, label=f'Output "{s}" (p={p:.3f})', token=s,
                         token_id=tid, probability=p, value=float(prep.logit_values[j]),
                         bias=float(l_bias[j]), dropped=float(dropped[n_f + j]),
                         dropped_abs=float(dropped_abs[n_f + j]), slope=nan, norm=nan))
    nodes = pd.DataFrame.from_records(recs)
    meta = {
        "model": prep.model.name,
        "family": prep.model.family,
        "n_layers": L,
        "d_model": prep.lin.d_model,
        "transcoders": prep.transcoders_name,
        "transcoder_layers": [i for i, r in enumerate(prep.reps) if r is not None],
        "n_active_features": len(prep.active),
        "settings": settings,
        "pruning": None,
    }
    return AttributionGraph.build(prompt=prep.prompt, str_tokens=list(toks), token_ids=ids,
                                  nodes=nodes, adjacency=adj, metadata=meta)
