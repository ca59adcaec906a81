"""Results of a steered generation: both arms, per-token log-probs, KL, next-token shifts.

    >>> r = iw.steer(model, spec).generate(["The weather today is"], max_new_tokens=16)
    >>> r.baseline.text[0], r.steered.text[0]
    >>> r.next_token(0)            # which next tokens the intervention made likelier / rarer
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ...errors import SteeringError
from .spec import Steers


def _short(text: str, n: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 3] + "..."


@dataclass(frozen=True, eq=False)  # holds tensors: compare fields, not objects
class Continuation:
    """One arm's generated text (continuation only, one entry per prompt).

    ``tokens[i]`` the generated ids (cut after the first EOS, which is kept), ``str_tokens[i]``
    their strings, ``text[i]`` the decoded continuation, ``logprobs[i]`` ``[n_i]`` the log-prob
    of each token under this arm, ``logprobs_other[i]`` the same tokens scored (teacher-forced)
    under the other arm, or ``None`` when the run was not scored.
    """

    arm: str
    tokens: tuple[tuple[int, ...], ...]
    str_tokens: tuple[tuple[str, ...], ...]
    text: tuple[str, ...]
    logprobs: tuple[Tensor, ...]
    logprobs_other: tuple[Tensor, ...] | None = None

    def __len__(self) -> int:
        return len(self.text)

    def __repr__(self) -> str:
        texts = ", ".join(repr(_short(t, 40)) for t in self.text[:3])
        more = "" if len(self.text) <= 3 else f", ... ({len(self.text)} prompts)"
        return f"Continuation({self.arm}: {texts}{more})"


@dataclass(frozen=True)
class NextTokenShift:
    """How the next-token distribution after a prompt moved (steered vs baseline).

    ``table`` rows: ``(token, id, p_baseline, p_steered)``; ``up`` / ``down``: the ``k`` tokens
    whose probability rose / fell the most; ``top_baseline`` / ``top_steered``: each arm's top
    ``k``. ``kl``: KL(steered || baseline) of the whole distribution.
    """

    prompt: str
    kl: float
    top_baseline: tuple[tuple[str, int, float, float], ...]
    top_steered: tuple[tuple[str, int, float, float], ...]
    up: tuple[tuple[str, int, float, float], ...]
    down: tuple[tuple[str, int, float, float], ...]

    def to_pandas(self) -> Any:
        """Long table: ``group`` (top_baseline, top_steered, up, down), ``rank``, ``token``,
        ``id``, ``p_baseline``, ``p_steered``, ``delta_p``."""
        import pandas as pd

        rows = []
        for group in ("top_baseline", "top_steered", "up", "down"):
            for rank, (tok, i, pb, ps) in enumerate(getattr(self, group)):
                rows.append({"group": group, "rank": rank, "token": tok, "id": i,
                             "p_baseline": pb, "p_steered": ps, "delta_p": ps - pb})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        def fmt(rows: tuple) -> str:
            return ", ".join(f"{t!r} {pb:.3f}->{ps:.3f}" for t, _, pb, ps in rows[:5])

        return (f"NextTokenShift({_short(self.prompt, 40)!r}, KL={self.kl:.4f}\n"
                f"  up:   {fmt(self.up)}\n  down: {fmt(self.down)})")


@dataclass(frozen=True, eq=False)  # holds tensors: compare fields, not objects
class SteeringResult:
    """A steered generation next to its baseline.

    - ``baseline`` / ``steered``: :class:`Continuation` (``.tokens``, ``.text``, ``.logprobs``,
      ``.logprobs_other``); ``baseline`` is ``None`` when run with ``baseline=False``.
    - ``kl[i]`` ``[n_i]``: KL(steered || baseline) of the next-token distribution at each
      token of the steered text (both teacher-forced on the steered text).
    - ``logprob_diff[i]`` ``[n_i]``: log p_steered - log p_baseline of each steered token.
    - ``differs[i]``: per steered token, whether the baseline has another token there.
    - ``next_token(i)``: the shift of the first generated token's distribution.
    """

    prompts: tuple[str, ...]
    specs: Steers
    baseline: Continuation | None
    steered: Continuation
    kl: tuple[Tensor, ...] | None
    logprob_diff: tuple[Tensor, ...] | None
    settings: dict[str, Any]
    first_logprobs: Tensor = field(repr=False)  # [arms, prompts, vocab]: after each prompt
    vocab: Any = field(repr=False, default=None)  # id -> token string

    # ------------------------------------------------------------------ views
    @property
    def differs(self) -> tuple[tuple[bool, ...], ...]:
        """Per prompt and steered token: True where the baseline's token differs (or is
        missing because the baseline ended earlier)."""
        if self.baseline is None:
            raise SteeringError("this run has no baseline arm: generate with baseline=True")
        out = []
        for b, s in zip(self.baseline.tokens, self.steered.tokens, strict=True):
            out.append(tuple(i >= len(b) or b[i] != t for i, t in enumerate(s)))
        return tuple(out)

    @property
    def first_difference(self) -> tuple[int | None, ...]:
        """Index of the first steered token that differs from the baseline (None: identical)."""
        res = []
        for d, b, s in zip(self.differs, self.baseline.tokens, self.steered.tokens, strict=True):
            idx = next((i for i, x in enumerate(d) if x), None)
            if idx is None and len(b) != len(s):
                idx = len(s)
            res.append(idx)
        return tuple(res)

    @property
    def mean_kl(self) -> float | None:
        """Mean per-token KL over all steered tokens (None when not scored)."""
        if self.kl is None:
            return None
        allk = torch.cat(list(self.kl))
        return float(allk.mean()) if allk.numel() else 0.0

    def _prompt_index(self, prompt: int | str) -> int:
        if isinstance(prompt, str):
            if prompt not in self.prompts:
                raise SteeringError(f"prompt {_short(prompt)!r} is not in this result; prompts: "
                                    f"{[_short(p, 30) for p in self.prompts]}")
            return self.prompts.index(prompt)
        if isinstance(prompt, bool) or not isinstance(prompt, int) or not -len(self.prompts) <= prompt < len(self.prompts):
            raise SteeringError(f"prompt index {prompt!r} out of range 0-{len(self.prompts) - 1}")
        return prompt % len(self.prompts)

    def next_token(self, prompt: int | str = 0, k: int = 10) -> NextTokenShift:
        """The next-token distribution after ``prompt`` in both arms: top tokens, and the
        tokens made most / least likely by the intervention (by probability change)."""
        if self.baseline is None:
            raise SteeringError("next_token needs the baseline arm: generate with baseline=True")
        i = self._prompt_index(prompt)
        lb, ls = self.first_logprobs[0, i], self.first_logprobs[1, i]
        pb, ps = lb.exp(), ls.exp()
        kl = float((ps * (ls - lb)).sum())

        def rows(ids: Tensor) -> tuple[tuple[str, int, float, float], ...]:
            return tuple((self._tok(int(t)), int(t), float(pb[t]), float(ps[t])) for t in ids)

        k = max(1, min(int(k), pb.shape[0]))
        delta = ps - pb
        return NextTokenShift(
            prompt=self.prompts[i], kl=kl,
            top_baseline=rows(pb.topk(k).indices), top_steered=rows(ps.topk(k).indices),
            up=rows(delta.topk(k).indices), down=rows((-delta).topk(k).indices),
        )

    def _tok(self, i: int) -> str:
        if self.vocab is None:
            return str(i)
        return self.vocab(i)

    def to_pandas(self) -> Any:
        """One row per generated token: ``prompt_index``, ``arm``, ``position`` (index in the
        continuation), ``token_id``, ``token``, ``logprob``, ``logprob_other``, and for the
        steered arm ``kl``, ``logprob_diff``, ``differs``."""
        import pandas as pd

        rows = []
        arms = [a for a in (self.baseline, self.steered) if a is not None]
        differs = self.differs if self.baseline is not None else None
        for arm in arms:
            for i in range(len(self.prompts)):
                for t, tok in enumerate(arm.tokens[i]):
                    row = {
                        "prompt_index": i, "arm": arm.arm, "position": t, "token_id": tok,
                        "token": arm.str_tokens[i][t], "logprob": float(arm.logprobs[i][t]),
                        "logprob_other": float(arm.logprobs_other[i][t]) if arm.logprobs_other else None,
                    }
                    if arm.arm == "steered":
                        row["kl"] = float(self.kl[i][t]) if self.kl is not None else None
                        row["logprob_diff"] = (float(self.logprob_diff[i][t])
                                               if self.logprob_diff is not None else None)
                        row["differs"] = differs[i][t] if differs is not None else None
                    rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        lines = [f"SteeringResult({len(self.prompts)} prompt(s), {len(self.specs)} spec(s), "
                 f"max_new_tokens={self.settings.get('max_new_tokens')}, "
                 f"temperature={self.settings.get('temperature')}"
                 + (f", mean KL={self.mean_kl:.4f}" if self.kl is not None else "") + ")"]
        lines += [f"  spec: {s!r}" for s in self.specs]
        for i, p in enumerate(self.prompts[:4]):
            lines.append(f"  [{i}] {_short(p, 50)!r}")
            if self.baseline is not None:
                lines.append(f"      baseline: {_short(self.baseline.text[i])!r}")
            lines.append(f"      steered:  {_short(self.steered.text[i])!r}")
        if len(self.prompts) > 4:
            lines.append(f"  ... ({len(self.prompts) - 4} more prompts)")
        return "\n".join(lines)
