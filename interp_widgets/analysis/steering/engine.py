"""Binding specs to a model and running them inside nnsight trace / generate contexts.

Everything that touches the model happens inside ``model.trace(...)`` or
``model.nn.generate(...)`` through ``model.read`` / ``model.write`` (nnsight Envoys), so the same
code runs with ``remote="local"`` and on NDIF. Generation iterates the steps with
``tr.iter[0:n]``: step 0 is the prompt (prefill), each later step one new position, with the
KV cache (the prompt is never re-run).

Typical norms (the unit of ``units="relative"``), measured on SmolLM2-135M-Instruct over the
built-in prompts (median per-token L2 norm, position 0 excluded): ``resid_post.0`` ~43,
``resid_post.6`` ~100, ``resid_post.12`` ~140, ``resid_post.20`` ~235, ``resid_post.29`` ~760,
``mlp_out.12`` ~31, ``attn_out.12`` ~20. So 0.25 relative at ``resid_post.12`` adds ~35, where a
concept direction starts to change greedy text. See :func:`typical_norm`.

    >>> s = iw.steer(model, iw.Steer(direction, 48.0, site="resid_post.12"))
    >>> r = s.generate("My favourite city is", max_new_tokens=16)
    >>> r.steered.text[0]
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...errors import InterpWidgetsError, SteeringError
from ...models.sites import LAYER_SITES, Site
from .spec import Steer, Steers, TokenMatch

#: Built-in prompts for typical norms and default means (varied registers; short).
NORM_PROMPTS: tuple[str, ...] = (
    "The Eiffel Tower is in Paris, the capital city of France, and millions visit it every year.",
    "def add(a, b):\n    \"\"\"Return the sum of two numbers.\"\"\"\n    return a + b\n",
    "Once upon a time, a small dog lived near a quiet river with her three puppies.",
    "The mitochondria is the powerhouse of the cell: it turns glucose into usable energy.",
    "In 1969 two astronauts walked on the Moon while a third orbited above them.",
    "Dear Sam, thank you for the lovely dinner last night. We should do it again soon!",
    "Q: What is 12 times 7?\nA: 12 times 7 is 84.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates.",
)

#: Most logits (rows x positions x vocab) one teacher-forced trace may hold (float32: 256 MB).
LOGITS_BUDGET = 64 * 1024 * 1024

_NORMS: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()
_MEANS: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[str, ...]], Tensor]] = weakref.WeakKeyDictionary()
_VOCAB: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------- statistics
def _site_tokens(model: Any, site: Site, prompts: Sequence[str]) -> Tensor:
    """All real-token vectors at ``site`` over ``prompts``, position 0 (attention sink) dropped:
    ``[n_tokens, d]`` float32."""
    _, cache = model.run_with_cache(list(prompts), [site])
    acts = cache[str(site)].float()
    keep = cache.attention_mask.bool().clone()
    keep[:, 0] = False
    rows = acts[keep]
    if rows.shape[0] == 0:
        raise SteeringError(
            "the prompts for the statistics have no tokens after position 0: use longer prompts"
        )
    return rows


def typical_norm(model: Any, site: str | Site) -> float:
    """Median L2 norm of one token's vector at ``site`` over :data:`NORM_PROMPTS` (position 0
    excluded), cached per model and site. The unit of ``units="relative"`` strengths.

        >>> typical_norm(model, "resid_post.12")     # ~60 on SmolLM2-135M
    """
    s = model.site(site)
    cache = _NORMS.setdefault(model, {})
    if str(s) not in cache:
        # one forward measures every site: a panel switching sites then pays nothing more
        sites = [Site("embed"), *model.sites()]
        _, acts = model.run_with_cache(list(NORM_PROMPTS), sites)
        keep = acts.attention_mask.bool().clone()
        keep[:, 0] = False
        for name in acts:
            cache[name] = float(acts[name].float()[keep].norm(dim=-1).median())
    return cache[str(s)]


def site_mean(model: Any, site: str | Site, prompts: Sequence[str] | None = None) -> Tensor:
    """Mean vector ``[d]`` at ``site`` over ``prompts`` (default: :data:`NORM_PROMPTS`),
    position 0 excluded; cached per model, site and prompts."""
    s = model.site(site)
    key = (str(s), tuple(prompts) if prompts is not None else NORM_PROMPTS)
    cache = _MEANS.setdefault(model, {})
    if key not in cache:
        cache[key] = _site_tokens(model, s, key[1]).mean(0)
    return cache[key]


# ------------------------------------------------------------------------- binding
@dataclass(frozen=True, eq=False)
class BoundSteer:
    """A spec checked against a model: sites resolved, vectors sized, statistics computed.

    ``vector``: what one unit of ``coef`` moves along (decoder contribution of a feature,
    unit vector of a direction); ``coef_scale``: typical norm for relative units, else 1.
    """

    spec: Steer
    write_site: Site
    read_site: Site | None
    vector: Tensor | None
    coef_scale: float
    mean: Tensor | float | None
    typical_norm: float | None
    match_ids: Tensor | None

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def coef(self) -> float | None:
        """The number the edit uses: strength x coef_scale (None for ablation)."""
        return None if self.spec.strength is None else self.spec.strength * self.coef_scale

    def activation(self, x: Tensor) -> Tensor:
        """The feature's activation (or the projection on the unit direction) ``[batch, pos]``."""
        if self.kind == "feature":
            f = self.spec.target
            return f.dictionary.encode(x)[..., f.index].to(x.dtype)
        return x @ self.vector.to(device=x.device, dtype=x.dtype)

    def describe(self) -> dict[str, Any]:
        """One row for a table of what this spec does (the steering panel shows it)."""
        s = self.spec
        row: dict[str, Any] = {
            "target": s.target_label(), "kind": s.kind, "mode": s.mode, "site": str(self.write_site),
            "strength": s.strength, "units": s.units, "typical_norm": self.typical_norm,
            "positions": s.to_json()["positions"],
        }
        if s.mode == "add" and self.vector is not None:
            row["added_norm"] = abs(self.coef or 0.0) * float(self.vector.norm())
        if s.mode == "ablate":
            row["ablation"] = s.ablation
        return row


def _unit(v: Tensor) -> Tensor:
    v = v.detach().to("cpu", torch.float32)
    return v / v.norm()


def _feature_vector(model: Any, feature: Any) -> Tensor:
    """What one unit of activation of ``feature`` adds at its output site (decoder row after
    any decoder-side scaling): ``decode(e_f) - decode(0)``."""
    d = feature.dictionary
    with torch.no_grad():
        try:
            dtype = d.W_dec.dtype
            e = torch.zeros(2, d.n_features, dtype=dtype, device=d.W_dec.device)
            e[0, feature.index] = 1.0
            out = d.decode(e)
            vec = (out[0] - out[1]).detach().to("cpu", torch.float32)
        except (AttributeError, TypeError, RuntimeError):
            vec = feature.direction.detach().to("cpu", torch.float32)
    if vec.shape[-1] != model.d_model:
        raise SteeringError(
            f"feature {feature!r} writes {vec.shape[-1]} values but {model.name} has "
            f"d_model={model.d_model}: the dictionary belongs to another model"
        )
    return vec


def _vocab_strings(model: Any) -> list[str]:
    if model not in _VOCAB:
        tok = model.tokenizer
        _VOCAB[model] = tok.batch_decode([[i] for i in range(len(tok))])
    return _VOCAB[model]


def token_match_ids(model: Any, text: str) -> Tensor:
    """Vocabulary ids whose decoded token, stripped, equals ``text.strip()``."""
    want = text.strip()
    ids = [i for i, s in enumerate(_vocab_strings(model)) if s.strip() == want]
    if not ids:
        pieces = model.to_str_tokens(text)
        raise SteeringError(
            f"no single token of {model.name} reads {want!r} (it tokenizes as {pieces}): "
            f"match one of those tokens instead, e.g. {{'token': {pieces[-1].strip()!r}}}"
        )
    return torch.tensor(ids, dtype=torch.long)


def bind(model: Any, spec: Steer) -> BoundSteer:
    """Check ``spec`` against ``model`` and precompute what the run needs."""
    from ...errors import SiteError

    try:
        write_site = model.site(spec.site)
    except SiteError as e:
        raise SiteError(f"{spec!r}: {e}") from None
    if write_site.name == "logits":
        raise SteeringError(
            "steering the logits is not supported: steer a residual site such as "
            f"'resid_post.{model.n_layers - 1}' instead"
        )
    kind, mode = spec.kind, spec.mode
    read_site: Site | None = None
    vector: Tensor | None = None
    mean: Tensor | float | None = None
    if kind == "feature":
        d = spec.target.dictionary
        if hasattr(d, "check_model"):
            d.check_model(model)
        vector = _feature_vector(model, spec.target)
        if mode != "add":
            read_site = model.site(d.site)
    elif kind == "direction":
        raw = spec.direction
        if raw.shape[0] != model.d_model:
            raise SteeringError(
                f"direction has {raw.shape[0]} values but {model.name} has d_model={model.d_model} "
                f"at {write_site}: compute it from this model's activations"
            )
        # a Direction / DirectionSet knows its model (from_contrast records it): check it
        owner = getattr(spec.target, "dictionary", spec.target)
        check = getattr(owner, "check_model", None)
        if callable(check):
            check(model)
        vector = _unit(raw)
        if mode != "add":
            read_site = write_site
    norm = typical_norm(model, write_site) if spec.units == "relative" else None
    if mode == "add" and spec.units == "relative":
        vector = _unit(vector)
    if mode == "ablate" and spec.ablation == "mean":
        mean = _bind_mean(model, spec, write_site, read_site, vector)
    elif mode == "ablate":
        mean = 0.0
    match_ids = None
    if isinstance(spec.positions, TokenMatch):
        match_ids = token_match_ids(model, spec.positions.text)
    return BoundSteer(spec=spec, write_site=write_site, read_site=read_site, vector=vector,
                      coef_scale=norm if norm is not None else 1.0, mean=mean,
                      typical_norm=norm, match_ids=match_ids)


def _bind_mean(model: Any, spec: Steer, write_site: Site, read_site: Site | None,
               vector: Tensor | None) -> Tensor | float:
    if spec.kind == "site":
        if spec.mean is not None:
            if spec.mean.shape[0] != model.d_model:
                raise SteeringError(
                    f"mean= has {spec.mean.shape[0]} values but {write_site} has d_model={model.d_model}"
                )
            return spec.mean
        return site_mean(model, write_site, spec.mean_prompts)
    if spec.mean is not None:
        return float(spec.mean)
    prompts = spec.mean_prompts or NORM_PROMPTS
    site = read_site or write_site
    rows = _site_tokens(model, site, prompts)
    with torch.no_grad():
        if spec.kind == "feature":
            f = spec.target
            return float(f.dictionary.encode(rows)[..., f.index].float().mean())
        return float((rows @ vector).mean())


# ---------------------------------------------------------------------- per-run specs
@dataclass(eq=False)
class RunSpec:
    """A bound spec for one batch: per-row coefficient, which rows it steers, and the
    prompt positions it selects (``idx``: ``[rows, k]``, -2 = unused slot)."""

    bound: BoundSteer
    coef: Tensor  # [rows] float32
    rows: Tensor  # [rows] bool
    idx: Tensor | None
    in_generation: bool  # can fire on generated positions

    def take(self, rows: Sequence[int]) -> RunSpec:
        """This spec for a subset of the rows (to split a batch)."""
        ix = torch.tensor(list(rows), dtype=torch.long)
        return RunSpec(bound=self.bound, coef=self.coef[ix], rows=self.rows[ix],
                       idx=self.idx[ix] if self.idx is not None else None,
                       in_generation=self.in_generation)

    def mask(self, abs_pos: Tensor, prompt_len: Tensor, ids: Tensor | None) -> Tensor:
        """``[rows, pos]`` bool: where this spec edits. ``abs_pos`` is each column's index in
        its row's own sequence (-1 for padding)."""
        p = self.bound.spec.positions
        valid = abs_pos >= 0
        if p == "all":
            m = valid
        elif p == "prompt":
            m = valid & (abs_pos < prompt_len)
        elif p == "generated":
            m = abs_pos >= prompt_len
        elif isinstance(p, TokenMatch):
            m = valid & torch.isin(ids, self.bound.match_ids.to(ids.device))
        else:
            m = (abs_pos.unsqueeze(-1) == self.idx.to(abs_pos.device).unsqueeze(1)).any(-1)
        return m & self.rows.to(m.device).unsqueeze(1)

    def edit(self, x: Tensor, m: Tensor, acts: dict[int, Tensor]) -> Tensor:
        """Apply this spec to ``x`` ``[rows, pos, d]`` where ``m`` is True."""
        b = self.bound
        mf = m.unsqueeze(-1).to(x.dtype)
        coef = self.coef.to(device=x.device, dtype=x.dtype)[:, None]
        if b.kind == "site":
            fill = b.mean if isinstance(b.mean, Tensor) else torch.zeros(x.shape[-1])
            return torch.where(m.unsqueeze(-1), fill.to(device=x.device, dtype=x.dtype), x)
        vec = b.vector.to(device=x.device, dtype=x.dtype)
        if b.mode == "add":
            return x + (mf * coef.unsqueeze(-1)) * vec
        a = acts[id(self)] if id(self) in acts else b.activation(x)
        if b.mode == "scale":
            delta = (coef - 1.0) * a
        elif b.mode == "clamp":
            delta = coef - a
        else:
            delta = float(b.mean) - a
        return x + (mf * delta.unsqueeze(-1)) * vec


def run_specs(bounds: Sequence[BoundSteer], prompt_lens: Sequence[int], steered: Sequence[bool],
              prompts: Sequence[str], coefs: Sequence[Sequence[float]] | None = None) -> list[RunSpec]:
    """Per-row versions of ``bounds``; validates index / slice positions against each prompt."""
    out = []
    n = len(prompt_lens)
    rows = torch.tensor(list(steered), dtype=torch.bool)
    for j, b in enumerate(bounds):
        if coefs is not None:
            coef = torch.tensor([float(c) for c in coefs[j]], dtype=torch.float32)
        else:
            coef = torch.full((n,), float(b.coef) if b.coef is not None else 0.0)
        p = b.spec.positions
        idx = None
        if isinstance(p, (tuple, slice)):
            per_row = [_prompt_indices(p, L, prompts[r], b.spec) for r, L in enumerate(prompt_lens)]
            k = max(len(r) for r in per_row)
            idx = torch.full((n, k), -2, dtype=torch.long)
            for r, ix in enumerate(per_row):
                idx[r, : len(ix)] = torch.tensor(ix, dtype=torch.long)
        in_gen = p in ("all", "generated") or isinstance(p, TokenMatch)
        out.append(RunSpec(bound=b, coef=coef, rows=rows, idx=idx, in_generation=in_gen))
    return out


def _prompt_indices(p: tuple[int, ...] | slice, L: int, prompt: str, spec: Steer) -> list[int]:
    short = prompt if len(prompt) <= 40 else prompt[:37] + "..."
    if isinstance(p, slice):
        ix = list(range(L))[p]
        if not ix:
            raise SteeringError(
                f"positions [{p.start}:{p.stop}] select no token of prompt {short!r} "
                f"({L} tokens, positions 0-{L - 1}) for {spec!r}"
            )
        return ix
    out = []
    for i in p:
        if not -L <= i < L:
            raise SteeringError(
                f"position {i} is outside prompt {short!r} ({L} tokens: use 0-{L - 1}, or "
                f"-{L}..-1 from the end) for {spec!r}; steer generated tokens with "
                f"positions='generated'"
            )
        out.append(i % L)
    return out


# -------------------------------------------------------------------- the edit plan
class Plan:
    """Reads and writes the sites of a set of run specs in forward order (inside a trace)."""

    def __init__(self, model: Any, specs: Sequence[RunSpec]):
        self.model = model
        self.specs = list(specs)
        sites: dict[Site, None] = {}
        self.writers: dict[Site, list[RunSpec]] = {}
        self.readers: dict[Site, list[RunSpec]] = {}
        for rs in self.specs:
            b = rs.bound
            self.writers.setdefault(b.write_site, []).append(rs)
            sites[b.write_site] = None
            if b.read_site is not None and b.read_site != b.write_site:
                if b.read_site.order_key > b.write_site.order_key:
                    raise SteeringError(
                        f"{b.spec!r} reads {b.read_site} after writing {b.write_site}: the "
                        f"dictionary's input site must come first in the forward pass"
                    )
                self.readers.setdefault(b.read_site, []).append(rs)
                sites[b.read_site] = None
        self.sites = sorted(sites, key=lambda s: s.order_key)
        self._check_resid_mid()

    def _check_resid_mid(self) -> None:
        # writing resid_mid.L also edits the block output, after which layer L is done
        mid = LAYER_SITES.index("resid_mid")
        for s in self.sites:
            if s.name == "resid_mid" and s in self.writers:
                later = [t for t in self.sites if t.layer == s.layer and LAYER_SITES.index(t.name) > mid]
                if later:
                    raise SteeringError(
                        f"steering {s} cannot be combined with {', '.join(map(str, later))} in one "
                        f"run (writing resid_mid.{s.layer} finishes layer {s.layer}): steer "
                        f"resid_pre.{(s.layer or 0) + 1} or mlp_in.{s.layer} instead"
                    )

    @property
    def empty(self) -> bool:
        return not self.specs

    def apply(self, abs_pos: Tensor, prompt_len: Tensor, ids: Tensor | None,
              save: Sequence[Site] = ()) -> dict[str, Any]:
        """Call inside a trace / generation step: edit every site this plan touches.

        ``save``: extra sites whose (edited) values are saved and returned by name."""
        model = self.model
        acts: dict[int, Tensor] = {}
        saved: dict[str, Any] = {}
        sites = sorted(set(self.sites) | set(save), key=lambda s: s.order_key)
        for site in sites:
            x = model.read(site)
            new = x
            for rs in self.writers.get(site, ()):
                m = rs.mask(abs_pos, prompt_len, ids)
                if bool(m.any()):
                    new = rs.edit(new, m, acts)
            if new is not x:
                model.write(site, new)
            for rs in self.readers.get(site, ()):
                acts[id(rs)] = rs.bound.activation(new)
            if site in save:
                saved[str(site)] = new.save()
        return saved


class StepRunner:
    """The body of one generation step: steer, then read the next-token distribution.

    Sampling (``temperature > 0``) is Gumbel-max on ``logits / T`` with noise drawn from
    ``seed`` and the step, shared by every row of the same ``group`` (a prompt's baseline and
    steered rows): both arms see the same random numbers, so differences come from the
    intervention alone. The noisy logits are written back and greedy decoding picks them.
    """

    def __init__(self, model: Any, plans: tuple[Plan, Plan], prefill_pos: Tensor, prompt_len: Tensor,
                 *, temperature: float, seed: int, groups: Tensor, watch: Tensor | None,
                 progress: Callable[[int], None] | None):
        self.model = model
        self.prefill, self.gen = plans
        self.prefill_pos = prefill_pos
        self.prompt_len = prompt_len
        self.needs_ids = any(isinstance(rs.bound.spec.positions, TokenMatch)
                             for rs in self.prefill.specs)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.groups = groups
        self.watch = watch
        self.progress = progress

    def step(self, s: int) -> dict[str, Tensor]:
        model = self.model
        plan = self.prefill if s == 0 else self.gen
        ids = None
        if self.needs_ids and not plan.empty:
            ids = model.envoy(model.spec.embed).input
        abs_pos = self.prefill_pos if s == 0 else self.prompt_len + (s - 1)
        plan.apply(abs_pos, self.prompt_len, ids)
        lg = model.read(Site("logits"))
        raw = lg[:, -1].float()
        logp = torch.log_softmax(raw, dim=-1)
        if self.temperature > 0:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + s)
            n_groups = int(self.groups.max()) + 1
            u = torch.rand(n_groups, raw.shape[-1], generator=g).clamp_(1e-10, 1 - 1e-7)
            noisy = raw / self.temperature - torch.log(-torch.log(u)).to(raw.device)[self.groups]
            new = lg.clone()
            new[:, -1] = noisy.to(lg.dtype)
            # argmax of what generate will see (after a cast to the model's dtype, e.g. bf16)
            chosen = new[:, -1].float().argmax(-1)
            model.write(Site("logits"), new)
        else:
            chosen = raw.argmax(-1)
        rec = {"chosen": chosen, "logp": logp.gather(-1, chosen[:, None])[:, 0]}
        if s == 0:
            rec["first"] = logp
        if self.watch is not None:
            rec["watch"] = logp[:, self.watch.to(logp.device)]
        if self.progress is not None:
            self.progress(s)
        return rec


# ------------------------------------------------------------------------ runners
def _neutral_generation_kwargs(model: Any, n: int) -> dict[str, Any]:
    """Greedy decoding with every logits processor off and no stop on EOS (we cut at EOS
    afterwards, so every requested step runs and the ``tr.iter`` loop completes)."""
    pad = model.tokenizer.pad_token_id
    return dict(
        max_new_tokens=n, min_new_tokens=None, do_sample=False, num_beams=1,
        temperature=None, top_k=None, top_p=None, min_p=None, typical_p=None,
        repetition_penalty=None, no_repeat_ngram_size=None, bad_words_ids=None,
        suppress_tokens=None, begin_suppress_tokens=None, forced_bos_token_id=None,
        forced_eos_token_id=None, sequence_bias=None, eos_token_id=None,
        pad_token_id=pad if pad is not None else 0,
    )


@dataclass
class RawGeneration:
    """Per-row outputs of one batched generation (before splitting into arms)."""

    tokens: Tensor  # [rows, n]
    logprobs: Tensor  # [rows, n] (log-prob of each chosen token under its own row)
    first: Tensor  # [rows, vocab] next-token log-probs after the prompt
    watch: Tensor | None  # [rows, n, k]


def generate_rows(model: Any, specs: Sequence[RunSpec], prompts: Sequence[str], n: int, *,
                  temperature: float = 0.0, seed: int = 0, groups: Sequence[int] | None = None,
                  watch: Tensor | None = None, progress: Any = False) -> RawGeneration:
    """One batched ``generate`` of ``prompts`` (one row each) with ``specs`` applied."""
    toks = model.tokenize(list(prompts), padding_side="left", max_length=model.n_ctx - n)
    B, P = toks.input_ids.shape
    lens = torch.tensor(toks.lengths, dtype=torch.long)
    prefill_pos = torch.arange(P).unsqueeze(0) - (P - lens).unsqueeze(1)
    prefill_pos = torch.where(prefill_pos >= 0, prefill_pos, torch.full_like(prefill_pos, -1))
    gen_specs = [rs for rs in specs if rs.in_generation]
    plans = (Plan(model, specs), Plan(model, gen_specs))
    bar, cb = _progress(progress, n, model)
    runner = StepRunner(model, plans, prefill_pos, lens.unsqueeze(1), temperature=temperature,
                        seed=seed, groups=torch.tensor(list(groups) if groups is not None else range(B)),
                        watch=watch, progress=cb)
    gen_kw = _neutral_generation_kwargs(model, n)
    try:
        with torch.no_grad():
            with model.nn.generate(toks.as_dict(), **model.remote_kwargs, **gen_kw) as tr:
                records = list().save()
                for step in tr.iter[0:n]:
                    records.append(runner.step(step))
                result = tr.result.save()
    finally:
        if bar is not None:
            bar.close()
    records = _value(records)
    out = _value(result)
    if len(records) != n:
        raise InterpWidgetsError(
            f"generation stopped after {len(records)} of {n} steps; please report this"
        )
    tokens = out[:, P:P + n].cpu()
    chosen = torch.stack([r["chosen"].cpu() for r in records], 1)
    if not torch.equal(tokens, chosen):
        raise InterpWidgetsError(
            "generate picked other tokens than the steered logits imply (a logits processor of "
            f"{model.name}'s generation config?); please report this"
        )
    w = torch.stack([r["watch"].cpu() for r in records], 1) if watch is not None else None
    return RawGeneration(tokens=tokens, logprobs=torch.stack([r["logp"].cpu() for r in records], 1),
                         first=records[0]["first"].cpu(), watch=w)


def forward_rows(model: Any, specs: Sequence[RunSpec], sequences: Sequence[Sequence[int]],
                 prompt_lens: Sequence[int], save: Sequence[Site] = ()) -> Any:
    """Teacher-forced logits ``[len_i, vocab]`` (float32) for each token sequence, with
    ``specs`` applied (``prompt_lens`` split prompt from continuation for the positions).

    With ``save`` sites, returns ``(logits list, {site: [rows, T, d]}, attention_mask)``.
    Without, rows are split into traces of at most ``LOGITS_BUDGET`` logits each."""
    B = len(sequences)
    T = max(len(s) for s in sequences)
    per_row = T * model.d_vocab
    if not save and B > 1 and B * per_row > LOGITS_BUDGET:
        step = max(1, LOGITS_BUDGET // per_row)
        out: list[Tensor] = []
        for a in range(0, B, step):
            part = list(range(a, min(B, a + step)))
            out += forward_rows(model, [rs.take(part) for rs in specs],
                                [sequences[i] for i in part], [prompt_lens[i] for i in part])
        return out
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.full((B, T), pad, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        attn[i, : len(s)] = 1
    # right padding: positions are plain column indices for real tokens
    abs_pos = torch.where(attn.bool(), torch.arange(T).expand(B, T), torch.full((B, T), -1))
    lens = torch.tensor(list(prompt_lens), dtype=torch.long).unsqueeze(1)
    plan = Plan(model, specs)
    with torch.no_grad():
        with model.trace({"input_ids": ids, "attention_mask": attn}):
            box = list().save()  # names bound in the trace body do not leave it; saved ones do
            box.append(plan.apply(abs_pos, lens, ids, save))
            logits = model.read(Site("logits")).save()
    saved = _value(box)[0]
    logits = _value(logits).float().cpu()
    out = [logits[i, : len(s)] for i, s in enumerate(sequences)]
    if not save:
        return out
    return out, {k: _value(v).detach().cpu() for k, v in saved.items()}, attn


def _progress(progress: Any, n: int, model: Any) -> tuple[Any, Callable[[int], None] | None]:
    if not progress or model.remote:
        return None, None  # a callback would run on the server when remote
    if callable(progress):
        return None, lambda s: progress(s + 1, n)
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="steered generate", unit="tok", leave=False)
    return bar, lambda s: bar.update(1)


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def check_count(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SteeringError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_temperature(t: Any) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(float(t)) or t < 0:
        raise SteeringError(f"temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
    return float(t)


def bind_all(model: Any, specs: Steer | Steers | Sequence[Steer]) -> tuple[Steers, list[BoundSteer]]:
    steers = Steers.of(specs)
    bounds = [bind(model, s) for s in steers]
    Plan(model, [RunSpec(b, torch.zeros(1), torch.zeros(1, dtype=torch.bool), None, True)
                 for b in bounds])  # site-order conflicts surface now, not mid-run
    return steers, bounds
