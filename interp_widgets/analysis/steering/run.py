"""``iw.steer(model, specs)``: a steered view of a model that generates next to its baseline.

    >>> s = iw.steer(model, iw.Steer(paris_direction, 48.0, site="resid_post.12"))
    >>> r = s.generate(["My favourite food is"], max_new_tokens=24, temperature=0.7, seed=1)
    >>> r.steered.text[0], r.next_token(0).up[:3]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...errors import SteeringError
from .engine import (
    bind_all,
    check_count,
    check_temperature,
    forward_rows,
    generate_rows,
    run_specs,
)
from .result import Continuation, SteeringResult
from .spec import Steer, Steers


class Steerer:
    """A model with steering specs bound to it (checked once, reusable for many runs).

    ``generate(...)`` runs the baseline and the steered arm batched together in one nnsight
    ``generate`` (batch of 2N, specs applied to the steered half), then scores each arm's text
    under the other arm in one teacher-forced trace. ``logits(...)`` gives teacher-forced
    logits with or without the specs.

        >>> s = iw.steer(model, [iw.Steer(sae[3], 20.0), iw.Steer(sae[9], 0.0, mode="scale")])
        >>> s.describe()                # what each spec does, in which units
        >>> s.generate("Hello", max_new_tokens=8).steered.text
    """

    def __init__(self, model: Any, specs: Steer | Steers | Sequence[Steer]):
        self.model = model
        self.specs, self.bound = bind_all(model, specs)

    def __repr__(self) -> str:
        inner = "".join(f"\n  {s!r}" for s in self.specs)
        return f"Steerer({self.model.name}:{inner})"

    def describe(self) -> list[dict[str, Any]]:
        """One dict per spec: target, mode, site, strength, units, typical_norm (for relative
        units), added_norm (for add: the norm of the vector added per token), positions."""
        return [b.describe() for b in self.bound]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.describe())

    # -------------------------------------------------------------- generate
    def generate(
        self,
        prompts: str | Sequence[str],
        max_new_tokens: int = 32,
        *,
        temperature: float = 0.0,
        seed: int = 0,
        baseline: bool = True,
        score: bool = True,
        stop_at_eos: bool = True,
        progress: Any = False,
    ) -> SteeringResult:
        """Generate the continuation of each prompt with and without the specs.

        ``temperature=0`` is greedy; otherwise both arms sample with the same random numbers
        (``seed``), so any difference comes from the intervention. ``baseline=False`` runs the
        steered arm only; ``score=False`` skips the teacher-forced pass (no ``kl``,
        ``logprob_diff`` or ``logprobs_other``). ``progress``: True for a tqdm bar, or a
        callable ``(step, total)``. Continuations stop after the first EOS (kept) when
        ``stop_at_eos``.
        """
        model = self.model
        prompts = model.check_prompts(prompts)
        n = check_count("max_new_tokens", max_new_tokens, minimum=1)
        if n >= model.n_ctx:
            raise SteeringError(f"max_new_tokens={n} does not fit {model.name}'s context of {model.n_ctx} "
                                f"tokens (prompt included): ask for at most {model.n_ctx - 1}")
        temperature = check_temperature(temperature)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SteeringError(f"seed must be an int, got {seed!r}")
        N = len(prompts)
        arms = ("baseline", "steered") if baseline else ("steered",)
        rows = list(prompts) * len(arms)
        steered_rows = [a == "steered" for a in arms for _ in prompts]
        lens = [len(model.tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
        specs = run_specs(self.bound, lens * len(arms), steered_rows, rows)
        raw = generate_rows(model, specs, rows, n, temperature=temperature, seed=seed,
                            groups=[r % N for r in range(len(rows))], progress=progress)
        eos = _eos_ids(model) if stop_at_eos else set()
        kept = [_cut(raw.tokens[r].tolist(), eos) for r in range(len(rows))]
        _check_finite(raw.first[[r for r, st in enumerate(steered_rows) if st]], self.specs)
        by_arm = {a: list(range(k * N, (k + 1) * N)) for k, a in enumerate(arms)}

        other: dict[str, list[Tensor]] = {}
        kl = diff = None
        if score:
            prompt_ids = [model.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
            plan_rows: list[tuple[str, int, bool]] = []  # (arm of the text, prompt, steered?)
            if baseline:
                plan_rows += [("baseline", i, True) for i in range(N)]
            plan_rows += [("steered", i, False) for i in range(N)]
            plan_rows += [("steered", i, True) for i in range(N)]
            seqs = [prompt_ids[i] + kept[by_arm[a][i]][:-1] for a, i, _ in plan_rows]
            plens = [len(prompt_ids[i]) for _, i, _ in plan_rows]
            sspecs = run_specs(self.bound, plens, [st for *_, st in plan_rows],
                               [prompts[i] for _, i, _ in plan_rows])
            logits = forward_rows(model, sspecs, seqs, plens)
            for lg, (_, _, st) in zip(logits, plan_rows, strict=True):
                if st:
                    _check_finite(lg, self.specs)
            scored: dict[tuple[str, int, bool], Tensor] = {}
            for key, lg, plen in zip(plan_rows, logits, plens, strict=True):
                # from the last prompt position on: row t predicts generated token t
                scored[key] = torch.log_softmax(lg[plen - 1:], -1)
            if baseline:
                other["baseline"] = [_gather(scored[("baseline", i, True)], kept[by_arm["baseline"][i]])
                                     for i in range(N)]
            other["steered"] = [_gather(scored[("steered", i, False)], kept[by_arm["steered"][i]])
                                for i in range(N)]
            kl, diff = [], []
            for i in range(N):
                ls, lb = scored[("steered", i, True)], scored[("steered", i, False)]
                kl.append((ls.exp() * (ls - lb)).sum(-1).clamp_min(0.0))
                toks = kept[by_arm["steered"][i]]
                diff.append(_gather(ls, toks) - _gather(lb, toks))

        vocab = _vocab_fn(model)
        conts = {}
        for a in arms:
            idx = by_arm[a]
            toks = tuple(tuple(kept[r]) for r in idx)
            conts[a] = Continuation(
                arm=a, tokens=toks,
                str_tokens=tuple(tuple(vocab(t) for t in tt) for tt in toks),
                text=tuple(model.decode(list(tt)) for tt in toks),
                logprobs=tuple(raw.logprobs[r, : len(kept[r])].clone() for r in idx),
                logprobs_other=tuple(other[a]) if a in other else None,
            )
        first = torch.stack([raw.first[by_arm[a]] for a in arms])
        return SteeringResult(
            prompts=tuple(prompts), specs=self.specs, baseline=conts.get("baseline"),
            steered=conts["steered"], kl=tuple(kl) if kl is not None else None,
            logprob_diff=tuple(diff) if diff is not None else None,
            settings={"max_new_tokens": n, "temperature": temperature, "seed": seed,
                      "model": model.name, "stop_at_eos": stop_at_eos},
            first_logprobs=first, vocab=vocab,
        )

    # ---------------------------------------------------------------- logits
    def logits(
        self,
        prompts: str | Sequence[str],
        continuations: str | Sequence[str | Sequence[int]] | None = None,
        *,
        steered: bool = True,
    ) -> list[Tensor]:
        """Teacher-forced logits ``[n_tokens_i, vocab]`` of prompt (+ continuation) per prompt,
        with the specs applied (``steered=False``: without). Positions after the prompt count
        as ``"generated"``; a continuation is text or token ids.

            >>> lg = iw.steer(model, spec).logits("The capital of France is", " Paris")
        """
        model = self.model
        prompts = model.check_prompts(prompts)
        if continuations is None:
            conts: list[list[int]] = [[] for _ in prompts]
        else:
            if isinstance(continuations, str):
                continuations = [continuations]
            continuations = list(continuations)
            if len(continuations) != len(prompts):
                raise SteeringError(
                    f"{len(continuations)} continuations for {len(prompts)} prompts: pass one each"
                )
            conts = [model.tokenizer(c, add_special_tokens=False)["input_ids"] if isinstance(c, str)
                     else [int(t) for t in c] for c in continuations]
        prompt_ids = [model.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        lens = [len(p) for p in prompt_ids]
        seqs = [p + c for p, c in zip(prompt_ids, conts, strict=True)]
        too_long = [i for i, s in enumerate(seqs) if len(s) > model.n_ctx]
        if too_long:
            raise SteeringError(f"sequence {too_long[0]} is longer than the context ({model.n_ctx})")
        specs = run_specs(self.bound, lens, [steered] * len(prompts), prompts)
        out = forward_rows(model, specs, seqs, lens)
        if steered:
            for lg in out:
                _check_finite(lg, self.specs)
        return out


    def run_with_cache(
        self,
        prompts: str | Sequence[str],
        sites: Sequence[Any],
        *,
        steered: bool = True,
    ) -> tuple[Tensor, Any]:
        """One trace with the specs applied: ``(logits [batch, pos, vocab], cache)`` where
        ``cache[site]`` holds the *edited* activations (right-padded, like
        ``model.run_with_cache``; ``cache.attention_mask`` marks real tokens).

            >>> logits, cache = iw.steer(model, spec).run_with_cache(["Hi there"], ["resid_post.3"])
        """
        from ...models import ActivationCache

        model = self.model
        prompts = model.check_prompts(prompts)
        wanted = sorted({model.site(s) for s in sites}, key=lambda s: s.order_key)
        if any(s.name == "logits" for s in wanted):
            raise SteeringError("'logits' is returned as the first value: leave it out of sites")
        ids = [model.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        lens = [len(x) for x in ids]
        specs = run_specs(self.bound, lens, [steered] * len(prompts), prompts)
        logits, saved, attn = forward_rows(model, specs, ids, lens, save=wanted)
        T = attn.shape[1]
        padded = torch.zeros(len(prompts), T, logits[0].shape[-1])
        for i, lg in enumerate(logits):
            padded[i, : lg.shape[0]] = lg
        return padded, ActivationCache(saved, attn)


def steer(model: Any, specs: Steer | Steers | Sequence[Steer]) -> Steerer:
    """Bind steering specs to a model: checks sites, sizes and dictionaries now.

        >>> s = iw.steer(model, iw.Steer(sae[12], 30.0))
        >>> r = s.generate(["Tell me about your day."], max_new_tokens=32)
        >>> print(r)
    """
    return Steerer(model, specs)


# ---------------------------------------------------------------------- helpers
def _check_finite(logits: Tensor, specs: Any) -> None:
    """A steered run whose logits hold NaN / inf overflowed float32 somewhere: say so, instead
    of returning tokens chosen from NaNs."""
    if logits.numel() and not bool(torch.isfinite(logits).all()):
        raise SteeringError(
            f"the steered model produced NaN / inf logits ({specs!r}): the intervention overflowed "
            f"float32. Lower the strength (typical residual norms are 10-1000)"
        )


def _eos_ids(model: Any) -> set[int]:
    eos = model.tokenizer.eos_token_id
    cfg = getattr(model.hf, "generation_config", None)
    out = {int(eos)} if eos is not None else set()
    g = getattr(cfg, "eos_token_id", None)
    if isinstance(g, int):
        out.add(g)
    elif isinstance(g, (list, tuple)):
        out.update(int(x) for x in g)
    return out


def _cut(tokens: list[int], eos: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def _gather(logp: Tensor, tokens: Sequence[int]) -> Tensor:
    """``logp[t, tokens[t]]`` for each t (``logp`` starts at the last prompt position)."""
    idx = torch.tensor(list(tokens), dtype=torch.long)
    return logp[torch.arange(len(idx)), idx].clone()


def _vocab_fn(model: Any) -> Any:
    tok = model.tokenizer
    cache: dict[int, str] = {}

    def vocab(i: int) -> str:
        if i not in cache:
            cache[i] = tok.decode([i])
        return cache[i]

    return vocab
