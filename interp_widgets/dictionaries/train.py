"""Train TopK SAEs and transcoders on activations streamed from nnsight traces.

One forward pass feeds every dictionary being trained (the pass stops after the last layer
needed, so the LM head is skipped). Activations go through a bounded shuffle buffer (no
activation dump on disk). Each dictionary is a TopK autoencoder with unit-norm decoder rows,
an AuxK loss that revives dead features ("Scaling and evaluating sparse autoencoders", Gao et
al. 2024; optionally that paper's Multi-TopK term), inputs scaled so their mean squared norm is
``d_in`` (folded back into the weights on export), ``b_dec`` initialised at the mean, a warmup +
linear-decay learning rate, a tqdm bar with live metrics, and checkpoints (safetensors + JSON) to
resume after an interrupt.

    >>> sae = iw.train_sae(model, "resid_post.6", corpus, n_features=1024, k=32, max_tokens=200_000)
    >>> tcs = iw.train_transcoders(model, [3, 4, 5], corpus, n_features=1024, k=32)
    >>> evaluate(model, {"sae": sae}, held_out)        # FVU, L0, dead fraction, CE loss recovered

Position 0 (the attention sink of models like SmolLM2) never enters training or statistics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..corpus import Corpus
from ..errors import CorpusError, DictionaryError
from ..files import atomic_save_safetensors, atomic_write_json, load_safetensors, read_json
from ..models.sites import Site
from .base import SAE, Transcoder, TranscoderSet


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class DictionarySpec:
    """What to train: reads ``site``, reconstructs ``out_site`` (same site for an SAE)."""

    name: str
    site: Site
    out_site: Site
    n_features: int
    k: int
    skip: bool = False  # transcoders: also learn a linear skip ``x @ W_skip`` (a "skip transcoder")
    lr_scale: float = 1.0  # this dictionary's learning rate is ``TrainConfig.lr * lr_scale``

    @property
    def kind(self) -> str:
        return "sae" if self.site == self.out_site else "transcoder"

    @classmethod
    def sae(cls, site: str | Site, n_features: int, k: int, name: str | None = None, *,
            lr_scale: float = 1.0) -> DictionarySpec:
        s = Site.parse(site)
        return cls(name or str(s), s, s, int(n_features), int(k), lr_scale=float(lr_scale))

    @classmethod
    def transcoder(cls, layer: int, n_features: int, k: int, name: str | None = None, *,
                   skip: bool = False, lr_scale: float = 1.0) -> DictionarySpec:
        return cls(name or f"transcoder.{layer}", Site("mlp_in", layer), Site("mlp_out", layer),
                   int(n_features), int(k), bool(skip), float(lr_scale))


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by every dictionary of one run."""

    max_tokens: int = 1_000_000
    budget_minutes: float | None = None
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 1e-3
    warmup_steps: int = 50
    decay_start: float = 0.8  # fraction of the run after which the lr decays linearly to 0
    buffer_batches: int = 4
    aux_k: int = 256
    aux_coef: float = 1 / 32
    dead_tokens: int = 100_000  # a feature silent for this many tokens counts as dead
    # Multi-TopK (Gao et al. 2024, sec. 5.3): add ``multi_topk`` x the FVU of the reconstruction
    # from the top ``4k`` features, so the features ranked k+1..4k keep a reconstruction gradient
    # and do not drift out of use (0: off)
    multi_topk: float = 0.0
    # every this many steps (0: never, the default), re-initialise dead features towards inputs
    # the dictionary reconstructs worst (Bricken et al. 2023 resampling; never during the final lr
    # decay). Measured on the SmolLM2 starter build (TopK, lr 3e-3): every 100 steps it cut the
    # dead fraction but each resampling spiked the FVU and the features died again, so AuxK alone
    # is the default. Also measured there and dropped: restarting a newly dead feature's Adam
    # moments at its AuxK gradient's scale (transcoders 15/18/29 dead 15/20/55% -> 23/27/64%)
    resample_every: int = 0
    seed: int = 0
    checkpoint_every_s: float = 300.0


@dataclass(frozen=True)
class TrainingReport:
    """What a run did: tokens, steps, time and the final live metrics per dictionary."""

    tokens: int
    steps: int
    seconds: float
    stopped_by: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"dictionary": k, **v} for k, v in self.metrics.items()])

    def __repr__(self) -> str:
        return (f"TrainingReport(tokens={self.tokens:,}, steps={self.steps}, "
                f"seconds={self.seconds:.0f}, stopped_by={self.stopped_by!r}, "
                f"dictionaries={len(self.metrics)})")


# --------------------------------------------------------------------------- the module
class TopKTrainee(nn.Module):
    """A TopK autoencoder in training units (scaled inputs/outputs)."""

    def __init__(self, spec: DictionarySpec, d_in: int, d_out: int, generator: torch.Generator):
        super().__init__()
        self.spec = spec
        n = spec.n_features
        W = torch.randn(n, d_out, generator=generator)
        W /= W.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W)
        # tied init (W_enc = W_dec^T) when shapes allow: fewer dead features at the start
        W_enc = W.T.clone() if d_in == d_out else torch.randn(d_in, n, generator=generator) / math.sqrt(d_in)
        self.W_enc = nn.Parameter(W_enc.contiguous())
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        # the skip starts at zero: the sparse code is learned first, the linear part alongside
        self.W_skip = nn.Parameter(torch.zeros(d_in, d_out)) if spec.skip else None
        self.register_buffer("in_scale", torch.tensor(0.0))
        self.register_buffer("out_scale", torch.tensor(0.0))
        self.register_buffer("since_fired", torch.zeros(n, dtype=torch.long))
        self.resampled = 0  # features re-initialised in this process (not checkpointed)

    @property
    def initialised(self) -> bool:
        return bool(self.in_scale > 0)

    def initialise(self, x: Tensor, y: Tensor) -> None:
        """Scales (mean squared norm -> d) and ``b_dec`` at the mean, from a first batch."""
        with torch.no_grad():
            self.in_scale.fill_(math.sqrt(x.shape[-1] / x.pow(2).sum(-1).mean().clamp_min(1e-12).item()))
            self.out_scale.fill_(math.sqrt(y.shape[-1] / y.pow(2).sum(-1).mean().clamp_min(1e-12).item()))
            self.b_dec.copy_((y * self.out_scale).mean(0))

    def encode_topk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pre = x @ self.W_enc + self.b_enc
        vals, idx = pre.topk(self.spec.k, dim=-1, sorted=False)
        return pre, F.relu(vals), idx

    def decode_sparse(self, vals: Tensor, idx: Tensor) -> Tensor:
        # gathers k decoder rows per token instead of a dense [N, n] @ [n, d] product
        return F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum")

    def reconstruct_sparse(self, vals: Tensor, idx: Tensor, x: Tensor) -> Tensor:
        """The full reconstruction from a sparse code of ``x``: decoder rows + ``b_dec`` + skip."""
        recon = self.decode_sparse(vals, idx) + self.b_dec
        if self.W_skip is not None:
            recon = recon + x @ self.W_skip
        return recon

    def forward_topk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(pre, vals, idx, recon)``: the TopK code and the full reconstruction (+ skip)."""
        pre, vals, idx = self.encode_topk(x)
        return pre, vals, idx, self.reconstruct_sparse(vals, idx, x)

    def loss(self, x: Tensor, y: Tensor, cfg: TrainConfig) -> tuple[Tensor, dict[str, float]]:
        pre, vals, idx, recon = self.forward_topk(x)
        err = y - recon
        mse = err.pow(2).sum(-1).mean()
        total_var = (y - y.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
        loss = mse / total_var
        fired = torch.zeros(self.spec.n_features, dtype=torch.bool)
        fired[idx[vals > 0]] = True
        with torch.no_grad():
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
        multi = torch.zeros(())
        if cfg.multi_topk > 0:
            k4 = min(4 * self.spec.k, self.spec.n_features)
            v4, i4 = pre.topk(k4, dim=-1, sorted=False)
            recon4 = self.reconstruct_sparse(F.relu(v4), i4, x)
            multi = (y - recon4).pow(2).sum(-1).mean() / total_var
            loss = loss + cfg.multi_topk * multi
        dead = self.since_fired > cfg.dead_tokens
        n_dead = int(dead.sum())
        aux = torch.zeros(())
        if n_dead and cfg.aux_coef > 0:
            k_aux = min(cfg.aux_k, n_dead)
            masked = pre.masked_fill(~dead, float("-inf"))
            a_vals, a_idx = masked.topk(k_aux, dim=-1, sorted=False)
            e_hat = self.decode_sparse(F.relu(a_vals), a_idx)
            e = err.detach()
            aux = (e - e_hat).pow(2).sum(-1).mean() / e.pow(2).sum(-1).mean().clamp_min(1e-12)
            aux = torch.nan_to_num(aux, nan=0.0)
            loss = loss + cfg.aux_coef * aux
        stats = {"fvu": float((mse / total_var).detach()), "l0": float((vals > 0).sum(-1).float().mean()),
                 "dead": n_dead / self.spec.n_features, "aux": float(aux.detach()),
                 "fvu_4k": float(multi.detach()),
                 "resampled": float(self.resampled)}
        return loss, stats

    @torch.no_grad()
    def resample_dead(self, x: Tensor, y: Tensor, opt: torch.optim.Optimizer, cfg: TrainConfig,
                      generator: torch.Generator) -> int:
        """Re-initialise dead features from this batch (training units); returns how many.

        Each dead feature gets the normalised residual error ``y - recon`` of an input drawn with
        probability ~ its squared error as decoder row, that input's normalised ``x`` times the
        mean live encoder norm as encoder column, bias 0, and fresh Adam moments.
        """
        dead = self.since_fired > cfg.dead_tokens
        ids = dead.nonzero().squeeze(1)
        n = int(ids.numel())
        if n == 0 or x.shape[0] == 0:
            return 0
        err = y - self.forward_topk(x)[3]
        weight = err.pow(2).sum(-1)
        if not bool(weight.sum() > 0):
            return 0
        pick = torch.multinomial(weight / weight.sum(), n, replacement=n > x.shape[0], generator=generator)
        e = err[pick]
        self.W_dec[ids] = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        live = ~dead
        scale = self.W_enc[:, live].norm(dim=0).mean() if bool(live.any()) else torch.tensor(1.0)
        xi = x[pick]
        self.W_enc[:, ids] = (xi / xi.norm(dim=-1, keepdim=True).clamp_min(1e-8) * scale).T
        self.b_enc[ids] = 0.0
        self.since_fired[ids] = 0
        for param, where in ((self.W_dec, (ids,)), (self.W_enc, (slice(None), ids)), (self.b_enc, (ids,))):
            st = opt.state.get(param)
            if st and "exp_avg" in st:
                st["exp_avg"][where] = 0.0
                st["exp_avg_sq"][where] = 0.0
        self.resampled += n
        return n

    @torch.no_grad()
    def constrain_decoder(self, before_step: bool) -> None:
        """Unit-norm decoder rows: drop the radial gradient, then renormalise after the step."""
        W = self.W_dec
        if before_step:
            if W.grad is not None:
                W.grad -= (W.grad * W).sum(-1, keepdim=True) * W
        else:
            W /= W.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def export(self, model_name: str, extra: Mapping[str, Any]) -> SAE:
        """An ``SAE`` / ``Transcoder`` in model units (the scales folded into the weights).

        encode: ``(x s_in) W + b = x (s_in W) + b``; decode: ``(f W_dec + b_dec) / s_out``;
        skip: ``(x s_in) W_skip / s_out = x (W_skip s_in / s_out)``.
        """
        s_in, s_out = float(self.in_scale), float(self.out_scale)
        spec = self.spec
        meta = {"model": model_name, "architecture": "topk", "trained_by": "interp_widgets.train",
                **dict(extra)}
        common = dict(d_in=self.W_enc.shape[0], n_features=spec.n_features, architecture="topk",
                      k=spec.k, metadata=meta, name=spec.name)
        if spec.kind == "sae":
            d: SAE = SAE(site=spec.site, **common)
        else:
            d = Transcoder(site=spec.site, out_site=spec.out_site, d_out=self.W_dec.shape[1],
                           skip=self.W_skip is not None, **common)
        with torch.no_grad():
            if self.W_skip is not None:
                d.W_skip.copy_(self.W_skip * (s_in / s_out))
            d.W_enc.copy_(self.W_enc * s_in)
            d.b_enc.copy_(self.b_enc)
            d.W_dec.copy_(self.W_dec / s_out)
            d.b_dec.copy_(self.b_dec / s_out)
        return d


# --------------------------------------------------------------------------- streaming
def needed_sites(specs: Sequence[DictionarySpec]) -> list[Site]:
    return sorted({s for sp in specs for s in (sp.site, sp.out_site)}, key=lambda s: s.order_key)


def read_sites(model: Any, ids: Tensor, sites: Sequence[Site]) -> dict[Site, Tensor]:
    """One nnsight trace over ``ids`` that saves ``sites`` and stops after the last of them.

    Returns ``[batch, pos, d]`` tensors. The early stop skips the later layers and the LM head.
    """
    sites = sorted(sites, key=lambda s: s.order_key)
    saved: dict[Site, Any] = {}
    mask = torch.ones_like(ids)
    with torch.no_grad():
        with model.trace({"input_ids": ids, "attention_mask": mask}) as tracer:
            for s in sites:
                saved[s] = model.read(s).save()
            if sites and sites[-1].name != "logits":
                tracer.stop()
    return {s: getattr(v, "value", v).detach().float() for s, v in saved.items()}


class ShuffleBuffer:
    """A fixed pool of token rows; each new batch displaces (and releases) random old rows.

    Rows of all sites for one token stay together, so every dictionary sees the same tokens.
    """

    def __init__(self, capacity: int, widths: Mapping[Site, int], generator: torch.Generator):
        self.capacity = int(capacity)
        self.sites = list(widths)
        self.offsets: dict[Site, tuple[int, int]] = {}
        o = 0
        for s, w in widths.items():
            self.offsets[s] = (o, o + w)
            o += w
        self.data = torch.empty(self.capacity, o)
        self.filled = 0
        self.g = generator

    def push(self, rows: Mapping[Site, Tensor]) -> dict[Site, Tensor] | None:
        """Add ``[n, d]`` rows per site; once full, returns ``n`` random older rows per site."""
        new = torch.cat([rows[s] for s in self.sites], dim=-1)
        n = new.shape[0]
        if self.filled + n <= self.capacity:
            self.data[self.filled:self.filled + n] = new
            self.filled += n
            return None
        if self.filled < self.capacity:  # top up, then displace with the rest
            room = self.capacity - self.filled
            self.data[self.filled:] = new[:room]
            self.filled = self.capacity
            new = new[room:]
            n = new.shape[0]
            if n == 0:
                return None
        slots = torch.randperm(self.capacity, generator=self.g)[:n]
        out = self.data[slots].clone()
        self.data[slots] = new
        return {s: out[:, a:b] for s, (a, b) in self.offsets.items()}


def _rows(acts: Tensor) -> Tensor:
    """``[batch, pos, d]`` -> ``[batch * (pos - 1), d]``: position 0 (attention sink) dropped."""
    return acts[:, 1:].reshape(-1, acts.shape[-1])


# --------------------------------------------------------------------------- checkpoints
def _save_checkpoint(folder: Path, trainees: Mapping[str, TopKTrainee], opt: torch.optim.Optimizer,
                     state: dict[str, Any]) -> None:
    tensors: dict[str, Tensor] = {}
    for name, t in trainees.items():
        for k, v in t.state_dict().items():
            tensors[f"dict.{name}.{k}"] = v
    params = [p for g in opt.param_groups for p in g["params"]]
    steps = {}
    for i, p in enumerate(params):
        st = opt.state.get(p, {})
        if "exp_avg" in st:
            tensors[f"opt.{i}.exp_avg"] = st["exp_avg"]
            tensors[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"]
            steps[i] = float(st["step"])
    atomic_save_safetensors(folder / "checkpoint.safetensors", tensors)
    atomic_write_json(folder / "checkpoint.json", {**state, "opt_steps": steps})


def _load_checkpoint(folder: Path, trainees: Mapping[str, TopKTrainee],
                     opt: torch.optim.Optimizer) -> dict[str, Any]:
    state = read_json(folder / "checkpoint.json", "training checkpoint")
    tensors = load_safetensors(folder / "checkpoint.safetensors")
    for name, t in trainees.items():
        sd = {k[len(f"dict.{name}."):]: v for k, v in tensors.items() if k.startswith(f"dict.{name}.")}
        if not sd:
            raise DictionaryError(f"checkpoint in {folder} has no dictionary {name!r}: it belongs "
                                  f"to another run; use a fresh checkpoint_dir")
        t.load_state_dict(sd)
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        if f"opt.{i}.exp_avg" in tensors:
            opt.state[p] = {"step": torch.tensor(state["opt_steps"][str(i)]),
                            "exp_avg": tensors[f"opt.{i}.exp_avg"].clone(),
                            "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"].clone()}
    return state


# --------------------------------------------------------------------------- the loop
def train_dictionaries(model: Any, specs: Sequence[DictionarySpec], corpus: Corpus | None, *,
                       config: TrainConfig | None = None, checkpoint_dir: str | Path | None = None,
                       progress: bool = True,
                       activations: Iterable[Mapping[Site, Tensor]] | None = None,
                       d_model: int | None = None) -> tuple[dict[str, SAE], TrainingReport]:
    """Train several TopK dictionaries at once from one stream of forward passes.

        >>> specs = [DictionarySpec.transcoder(L, 1024, 32) for L in range(30)]
        >>> specs.append(DictionarySpec.sae("resid_post.12", 1536, 32))
        >>> dicts, report = train_dictionaries(model, specs, corpus, config=TrainConfig(budget_minutes=60))

    Returns ``({name: SAE or Transcoder}, report)``. With ``checkpoint_dir`` the run saves
    every ``config.checkpoint_every_s`` seconds and on Ctrl-C, and a later call with the same
    arguments resumes from there (the shuffle buffer refills first). Deterministic for a seed
    (same machine, same thread count).

    ``activations`` (instead of ``model`` + ``corpus``): an iterable of ``{site: [n, d]}`` row
    batches, for activations you computed yourself (``model`` may then be ``None``; pass
    ``d_model``).
    """
    cfg = config or TrainConfig()
    specs = list(specs)
    if not specs:
        raise DictionaryError("nothing to train: pass at least one DictionarySpec")
    if len({s.name for s in specs}) != len(specs):
        raise DictionaryError("dictionary names must be unique within one training run")
    if activations is None and not isinstance(corpus, Corpus):
        raise CorpusError(f"corpus must be an iw.Corpus, got {type(corpus).__name__}: wrap text "
                          f"with iw.Corpus.from_strings / from_files")
    for sp in specs:
        if model is not None:
            model.site(sp.site)
            model.site(sp.out_site)
        if not 0 < sp.k <= sp.n_features:
            raise DictionaryError(f"{sp.name}: k must be in 1-{sp.n_features}, got {sp.k}")
        if not sp.lr_scale > 0:
            raise DictionaryError(f"{sp.name}: lr_scale must be > 0, got {sp.lr_scale}")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    d = int(d_model or model.d_model)
    trainees = {sp.name: TopKTrainee(sp, d, d, g) for sp in specs}
    # one parameter group per dictionary, so each can run at its own lr (DictionarySpec.lr_scale)
    opt = torch.optim.Adam([{"params": list(t.parameters()), "lr_scale": t.spec.lr_scale}
                            for t in trainees.values()], lr=cfg.lr, betas=(0.9, 0.999))
    sites = needed_sites(specs)
    per_batch = cfg.batch_size * (cfg.seq_len - 1)
    buffer = ShuffleBuffer(per_batch * cfg.buffer_batches, {s: d for s in sites}, g)

    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = {"tokens": 0, "steps": 0, "batches": 0, "seconds": 0.0}
    if ckpt is not None and (ckpt / "checkpoint.json").is_file():
        state = {**state, **_load_checkpoint(ckpt, trainees, opt)}
        g.manual_seed(cfg.seed + int(state["batches"]))

    def row_batches() -> Iterator[Mapping[Site, Tensor]]:
        if activations is not None:
            for i, rows in enumerate(activations):
                if i >= int(state["batches"]):
                    yield rows
            return
        for ids in corpus.token_batches(model.tokenizer, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                                        skip_batches=int(state["batches"])):
            acts = read_sites(model, ids, sites)
            yield {s: _rows(a) for s, a in acts.items()}

    def progress_fraction(elapsed: float) -> float:
        p = state["tokens"] / max(cfg.max_tokens, 1)
        if cfg.budget_minutes:
            p = max(p, elapsed / (cfg.budget_minutes * 60))
        return min(p, 1.0)

    def lr_at(step: int, p: float) -> float:
        warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        decay = 1.0 if p < cfg.decay_start else max(0.0, (1 - p) / (1 - cfg.decay_start))
        return cfg.lr * warm * max(decay, 0.02)

    t0 = time.perf_counter() - float(state["seconds"])
    last_ckpt = time.perf_counter()
    stopped_by = "max_tokens"
    live: dict[str, dict[str, float]] = {}
    bar = _bar(cfg.max_tokens, state["tokens"], progress)
    try:
        for rows in row_batches():
            elapsed = time.perf_counter() - t0
            if state["tokens"] >= cfg.max_tokens:
                break
            if cfg.budget_minutes and elapsed >= cfg.budget_minutes * 60:
                stopped_by = "budget"
                break
            state["batches"] += 1
            for t in trainees.values():
                if not t.initialised:
                    t.initialise(rows[t.spec.site], rows[t.spec.out_site])
            out = buffer.push(rows)
            if out is None:
                continue
            lr = lr_at(int(state["steps"]), progress_fraction(elapsed))
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            opt.zero_grad(set_to_none=True)
            for name, t in trainees.items():
                x = out[t.spec.site] * t.in_scale
                y = out[t.spec.out_site] * t.out_scale
                loss, stats = t.loss(x, y, cfg)
                loss.backward()  # per dictionary: frees its graph before the next one
                t.constrain_decoder(before_step=True)
                live[name] = stats
            opt.step()
            for t in trainees.values():
                t.constrain_decoder(before_step=False)
            if (cfg.resample_every and (int(state["steps"]) + 1) % cfg.resample_every == 0
                    and progress_fraction(elapsed) < cfg.decay_start):
                for t in trainees.values():
                    t.resample_dead(out[t.spec.site] * t.in_scale, out[t.spec.out_site] * t.out_scale,
                                    opt, cfg, g)
            n = next(iter(out.values())).shape[0]
            state["tokens"] += n
            state["steps"] += 1
            if bar is not None:
                bar.update(n)
                fvus = sorted(v["fvu"] for v in live.values())
                bar.set_postfix(fvu_med=f"{fvus[len(fvus) // 2]:.3f}", lr=f"{lr:.1e}",
                                dead=f"{max(v['dead'] for v in live.values()):.2f}")
            if ckpt is not None and time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
                state["seconds"] = time.perf_counter() - t0
                _save_checkpoint(ckpt, trainees, opt, state)
                last_ckpt = time.perf_counter()
        else:
            stopped_by = "corpus_end" if state["tokens"] < cfg.max_tokens else "max_tokens"
    except KeyboardInterrupt:
        stopped_by = "interrupted"
        if ckpt is None:
            raise
    finally:
        if bar is not None:
            bar.close()
    state["seconds"] = time.perf_counter() - t0
    if ckpt is not None:
        _save_checkpoint(ckpt, trainees, opt, state)
    if stopped_by == "interrupted":
        raise KeyboardInterrupt(f"training interrupted; checkpoint saved in {ckpt}: call again to resume")
    if state["steps"] == 0:
        raise CorpusError(
            f"the corpus ran out before training started ({state['batches']} batches, buffer "
            f"{buffer.capacity} tokens): give more text or lower buffer_batches / batch_size"
        )
    extra = {"tokens_seen": int(state["tokens"]), "seed": cfg.seed, "lr": cfg.lr,
             "batch_size": cfg.batch_size, "seq_len": cfg.seq_len,
             "corpus": corpus.name if corpus is not None else "activations"}
    model_name = getattr(model, "name", None) or "unknown"
    out_dicts = {name: t.export(model_name, {**extra, "lr": cfg.lr * t.spec.lr_scale})
                 for name, t in trainees.items()}
    report = TrainingReport(tokens=int(state["tokens"]), steps=int(state["steps"]),
                            seconds=float(state["seconds"]), stopped_by=stopped_by,
                            metrics={k: dict(v) for k, v in live.items()})
    return out_dicts, report


def _bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="tok", unit_scale=True, desc="training")


# --------------------------------------------------------------------------- public API
def train_sae(model: Any, site: str | Site, corpus: Corpus, *, n_features: int = 1024, k: int = 32,
              max_tokens: int = 1_000_000, checkpoint_dir: str | Path | None = None,
              progress: bool = True, **config: Any) -> SAE:
    """Train a TopK SAE on ``site`` from ``corpus`` (see :class:`TrainConfig` for the knobs).

        >>> sae = iw.train_sae(model, "resid_post.12", iw.Corpus.default(), n_features=1024, k=32)
        >>> sae.metadata["tokens_seen"]
        >>> evaluate(model, {"sae": sae}, held_out)["sae"]["fvu"]
    """
    s = model.site(site)
    cfg = TrainConfig(max_tokens=max_tokens, **config)
    dicts, report = train_dictionaries(model, [DictionarySpec.sae(s, n_features, k)], corpus,
                                       config=cfg, checkpoint_dir=checkpoint_dir, progress=progress)
    d = dicts[str(s)]
    d.metadata["training"] = {"stopped_by": report.stopped_by, "seconds": round(report.seconds, 1),
                              **report.metrics[str(s)]}
    return d


def train_transcoders(model: Any, layers: Sequence[int] | None, corpus: Corpus, *,
                      n_features: int = 1024, k: int = 32, skip: bool = False,
                      max_tokens: int = 1_000_000,
                      checkpoint_dir: str | Path | None = None, progress: bool = True,
                      **config: Any) -> TranscoderSet:
    """Train TopK transcoders ``mlp_in.L -> mlp_out.L`` for ``layers`` (all if ``None``) at once.

    ``skip=True`` adds a learned linear skip ``mlp_in @ W_skip`` (skip transcoders: the MLP's
    linear part goes there, the features model the rest; attribution treats it as a linear path).

        >>> tcs = iw.train_transcoders(model, [0, 1], iw.Corpus.default(), n_features=512, k=16)
        >>> tcs[1].out_site
        Site(name='mlp_out', layer=1)
    """
    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    for L in layers:
        model.site(Site("mlp_in", L))
    cfg = TrainConfig(max_tokens=max_tokens, **config)
    specs = [DictionarySpec.transcoder(L, n_features, k, skip=skip) for L in layers]
    dicts, report = train_dictionaries(model, specs, corpus, config=cfg,
                                       checkpoint_dir=checkpoint_dir, progress=progress)
    tcs = {sp.site.layer: dicts[sp.name] for sp in specs}
    return TranscoderSet(tcs, name=f"transcoders@{model.name}",
                         metadata={"model": model.name, "tokens_seen": report.tokens,
                                   "stopped_by": report.stopped_by})


# --------------------------------------------------------------------------- evaluation
def _splice_losses(model: Any, ids: Tensor, edits: Mapping[Site, Any]) -> Tensor:
    """Mean next-token loss (positions >= 1) with each ``site`` replaced by ``edits[site](x)``.

    ``edits`` maps an output site to ``(input_site, fn)``; position 0 keeps its clean value
    (the attention sink is outside every dictionary's training distribution).
    """
    mask = torch.ones_like(ids)
    order = sorted(edits, key=lambda s: s.order_key)
    with torch.no_grad():
        with model.trace({"input_ids": ids, "attention_mask": mask}):
            for out_site in order:
                in_site, fn = edits[out_site]
                x = model.read(in_site) if in_site != out_site else None
                orig = model.read(out_site)
                new = fn(orig if x is None else x).to(orig.dtype)
                model.write(out_site, torch.cat([orig[:, :1], new[:, 1:]], dim=1))
            logits = model.read(Site("logits")).save()
    logits = getattr(logits, "value", logits).float()
    return F.cross_entropy(logits[:, 1:-1].reshape(-1, logits.shape[-1]), ids[:, 2:].reshape(-1))


def evaluate(model: Any, dictionaries: Mapping[str, Any], corpus: Corpus, *, max_tokens: int = 32_768,
             batch_size: int = 8, seq_len: int = 128, ce: bool = True, ce_all_transcoders: bool = True,
             ce_batches: int | None = None, ce_all_batches: int | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Held-out metrics per dictionary: FVU, L0, dead fraction and CE loss recovered.

    ``CE loss recovered = (L_zero - L_spliced) / (L_zero - L_clean)`` where ``L_spliced`` puts
    the dictionary's reconstruction in place of its output site and ``L_zero`` zeroes that site
    (positions >= 1). With ``ce_all_transcoders`` the transcoders are also spliced in all
    together (key ``"all_transcoders"``). CE needs two extra forwards per dictionary per batch:
    ``ce_batches`` caps the batches used per dictionary, ``ce_all_batches`` those used for the
    joint splice (both default to every batch).

        >>> m = evaluate(model, {"tc3": tcs[3]}, held_out)
        >>> m["tc3"]["fvu"], m["tc3"]["l0"], m["tc3"]["ce_loss_recovered"]
    """
    dictionaries = dict(dictionaries)
    sites = needed_sites([DictionarySpec(n, d.site, d.out_site or d.site, d.n_features, 1)
                          for n, d in dictionaries.items()])
    acc = {n: {"sq_err": 0.0, "sum_y": torch.zeros(d.d_out, dtype=torch.float64), "sum_y2": 0.0,
               "n": 0, "l0": 0.0, "fired": torch.zeros(d.n_features, dtype=torch.bool)}
           for n, d in dictionaries.items()}
    ce_acc: dict[str, list[float]] = {}
    batches = list(corpus.token_batches(model.tokenizer, batch_size=batch_size, seq_len=seq_len,
                                        max_tokens=max_tokens))
    if not batches:
        raise CorpusError(f"the held-out corpus has fewer than {batch_size * seq_len} tokens")
    n_ce = len(batches) if ce_batches is None else min(ce_batches, len(batches))
    n_all = len(batches) if ce_all_batches is None else min(ce_all_batches, len(batches))
    it = batches
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(batches, desc="evaluating")
    with torch.no_grad():
        for bi, ids in enumerate(it):
            acts = read_sites(model, ids, sites)
            for n, d in dictionaries.items():
                x = _rows(acts[d.site])
                y = _rows(acts[d.out_site or d.site])
                f = d.encode(x)
                recon = d.decode(f) + (d.skip(x) if isinstance(d, Transcoder) else 0)
                a = acc[n]
                a["sq_err"] += float((y - recon).pow(2).sum())
                a["sum_y"] += y.sum(0).double()
                a["sum_y2"] += float(y.double().pow(2).sum())
                a["n"] += y.shape[0]
                a["l0"] += float((f > 0).sum())
                a["fired"] |= (f > 0).any(0)
            if not ce or bi >= max(n_ce, n_all):
                continue
            clean = float(_splice_losses(model, ids, {}))
            ce_acc.setdefault("clean", []).append(clean)
            for n, d in dictionaries.items():
                if bi >= n_ce:
                    break
                out = d.out_site or d.site
                rec = float(_splice_losses(model, ids, {out: (d.site, _reconstructor(d))}))
                zero = float(_splice_losses(model, ids, {out: (out, torch.zeros_like)}))
                ce_acc.setdefault(f"{n}.spliced", []).append(rec)
                ce_acc.setdefault(f"{n}.zero", []).append(zero)
                ce_acc.setdefault(f"{n}.clean", []).append(clean)
            tcs = {n: d for n, d in dictionaries.items() if isinstance(d, Transcoder)}
            if ce_all_transcoders and len(tcs) > 1 and bi < n_all:
                rec = float(_splice_losses(model, ids, {d.out_site: (d.site, _reconstructor(d))
                                                        for d in tcs.values()}))
                zero = float(_splice_losses(model, ids, {d.out_site: (d.out_site, torch.zeros_like)
                                                         for d in tcs.values()}))
                ce_acc.setdefault("all_transcoders.spliced", []).append(rec)
                ce_acc.setdefault("all_transcoders.zero", []).append(zero)
                ce_acc.setdefault("all_transcoders.clean", []).append(clean)
    result: dict[str, Any] = {}
    for n, a in acc.items():
        mean = a["sum_y"] / a["n"]
        total_var = a["sum_y2"] - a["n"] * float(mean.pow(2).sum())
        result[n] = {"fvu": a["sq_err"] / max(total_var, 1e-12), "l0": a["l0"] / a["n"],
                     "dead_fraction": 1.0 - float(a["fired"].float().mean()), "tokens": a["n"]}
    if ce_acc:
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        result["clean_loss"] = mean(ce_acc["clean"])
        for n in [*dictionaries, "all_transcoders"]:
            if f"{n}.spliced" not in ce_acc:
                continue
            # each ratio uses the clean loss of the same batches
            clean, rec, zero = (mean(ce_acc[f"{n}.{k}"]) for k in ("clean", "spliced", "zero"))
            entry = result.setdefault(n, {})
            entry.update({"ce_clean": clean, "ce_spliced": rec, "ce_zero": zero,
                          "ce_batches": len(ce_acc[f"{n}.spliced"]),
                          "ce_loss_recovered": (zero - rec) / (zero - clean) if zero != clean else float("nan")})
    return result


def _reconstructor(d: Any) -> Any:
    def fn(x: Tensor) -> Tensor:
        return d.reconstruct(x.float())
    return fn


__all__ = ["DictionarySpec", "TrainConfig", "TrainingReport", "train_dictionaries", "train_sae",
           "train_transcoders", "evaluate", "read_sites", "ShuffleBuffer"]
