"""Dose-response: how a metric changes with steering strength.

All strengths run as rows of one batch (one trace, or one ``generate`` when
``max_new_tokens > 0``), next to an unsteered row per prompt.

    >>> sw = iw.steering_sweep(model, iw.Steer(d, 1.0, site="resid_post.12"),
    ...                        [0, 16, 32, 64], "I went on holiday to", target=" Paris")
    >>> dose_response_figure(sw).show()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ...errors import SteeringError
from .engine import bind_all, check_count, check_temperature, forward_rows, generate_rows, run_specs
from .spec import Steer

Metric = Callable[[Tensor, str], float]


@dataclass(frozen=True, eq=False)  # holds tensors: compare fields, not objects
class SteeringSweep:
    """Metric values per strength and prompt.

    ``values`` ``[n_strengths, n_prompts]``; ``baseline`` ``[n_prompts]`` (no steering);
    ``texts[k][i]``: the continuation at strength k for prompt i (empty without generation).
    """

    spec: Steer
    strengths: tuple[float, ...]
    prompts: tuple[str, ...]
    metric_name: str
    values: Tensor
    baseline: Tensor
    texts: tuple[tuple[str, ...], ...] = field(repr=False, default=())
    baseline_texts: tuple[str, ...] = field(repr=False, default=())

    @property
    def mean(self) -> Tensor:
        """Mean over prompts, per strength ``[n_strengths]``."""
        return self.values.mean(1)

    @property
    def units(self) -> str:
        s = self.spec
        if s.mode == "scale":
            return "scale factor"
        if s.mode == "clamp":
            return "clamped activation" + (" (x typical norm)" if s.units == "relative" else "")
        return "strength" + (" (x typical norm)" if s.units == "relative" else " (absolute)")

    def to_pandas(self) -> Any:
        """Long table: ``strength``, ``prompt_index``, ``prompt``, ``value``, ``baseline``,
        ``delta``, ``text``."""
        import pandas as pd

        rows = []
        for k, s in enumerate(self.strengths):
            for i, p in enumerate(self.prompts):
                rows.append({
                    "strength": s, "prompt_index": i, "prompt": p,
                    "value": float(self.values[k, i]), "baseline": float(self.baseline[i]),
                    "delta": float(self.values[k, i] - self.baseline[i]),
                    "text": self.texts[k][i] if self.texts else "",
                })
        return pd.DataFrame(rows)

    def figure(self) -> Any:
        return dose_response_figure(self)

    def __repr__(self) -> str:
        pts = ", ".join(f"{s:g}: {float(v):.3f}" for s, v in zip(self.strengths, self.mean, strict=True))
        return (f"SteeringSweep({self.spec!r}\n  metric={self.metric_name}, "
                f"baseline={float(self.baseline.mean()):.3f}\n  {pts})")


def _target_ids(model: Any, target: Any) -> tuple[Tensor, str]:
    items = [target] if isinstance(target, (str, int)) else list(target)
    if not items:
        raise SteeringError("target is empty: pass a token string such as ' Paris'")
    ids = []
    for t in items:
        if isinstance(t, bool):
            raise SteeringError(f"target {t!r} is not a token")
        if isinstance(t, int):
            if not 0 <= t < model.d_vocab:
                raise SteeringError(f"target token id {t} is outside the vocabulary 0-{model.d_vocab - 1}")
            ids.append(t)
            continue
        if not isinstance(t, str) or not t:
            raise SteeringError(f"target {t!r} must be a token string or id")
        enc = model.tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise SteeringError(
                f"target {t!r} is {len(enc)} tokens {model.to_str_tokens(t)}: the metric scores one "
                f"next token, so pass single tokens (e.g. {model.to_str_tokens(t)[0]!r})"
            )
        ids.append(enc[0])
    names = "|".join(repr(model.tokenizer.decode([i])) for i in ids)
    return torch.tensor(ids, dtype=torch.long), f"log p({names})"


def steering_sweep(
    model: Any,
    spec: Steer,
    strengths: Sequence[float],
    prompt: str | Sequence[str],
    *,
    target: str | int | Sequence[str | int] | None = None,
    metric: Metric | None = None,
    max_new_tokens: int = 0,
    temperature: float = 0.0,
    seed: int = 0,
) -> SteeringSweep:
    """How a metric changes with the strength of ``spec`` (its own strength is replaced).

    ``target``: token(s) whose total next-token log-prob is the metric (after the prompt; with
    ``max_new_tokens > 0``, averaged over the generated steps). ``metric``: a function
    ``(next_token_logprobs [vocab], continuation) -> float`` instead.

        >>> sw = steering_sweep(model, spec, [0, 8, 16, 32], "I love", target=" Paris")
        >>> sw.to_pandas()
    """
    if not isinstance(spec, Steer):
        raise SteeringError(f"spec must be one iw.Steer, got {type(spec).__name__}")
    if spec.mode == "ablate":
        raise SteeringError("an ablation has no strength to sweep: use mode='scale' (1 -> 0)")
    strengths = [float(s) if not isinstance(s, bool) and isinstance(s, (int, float)) else math.nan
                 for s in strengths] if isinstance(strengths, (list, tuple, range)) else None
    if not strengths:
        raise SteeringError("strengths must be a non-empty list of numbers such as [0, 8, 16, 32]")
    bad = [s for s in strengths if not math.isfinite(s)]
    if bad:
        raise SteeringError(f"strengths must be finite numbers, got {bad[0]!r}")
    if (target is None) == (metric is None):
        raise SteeringError("pass exactly one of target= (token strings) or metric= (a function)")
    n = check_count("max_new_tokens", max_new_tokens, minimum=0)
    temperature = check_temperature(temperature)
    if n == 0 and spec.positions == "generated":
        raise SteeringError("positions='generated' changes nothing without generation: pass max_new_tokens > 0")
    prompts = model.check_prompts(prompt)
    _, (bound,) = bind_all(model, spec)
    watch, name = (_target_ids(model, target) if target is not None
                   else (None, getattr(metric, "__name__", "metric")))
    N, S = len(prompts), len(strengths)
    rows = list(prompts) * (S + 1)  # row block 0: baseline; block k+1: strength k
    steered = [False] * N + [True] * (N * S)
    coef = [0.0] * N + [s * bound.coef_scale for s in strengths for _ in prompts]
    lens = [len(model.tokenizer(p, add_special_tokens=True)["input_ids"]) for p in rows]
    specs = run_specs([bound], lens, steered, rows, coefs=[coef])

    texts: list[str] = [""] * len(rows)
    if n == 0:
        logits = forward_rows(model, specs, [model.tokenizer(p, add_special_tokens=True)["input_ids"]
                                             for p in rows], lens)
        first = torch.stack([torch.log_softmax(lg[-1], -1) for lg in logits])
        per_step = first[:, None, watch] if watch is not None else None
    else:
        raw = generate_rows(model, specs, rows, n, temperature=temperature, seed=seed,
                            groups=[r % N for r in range(len(rows))], watch=watch)
        first = raw.first
        per_step = raw.watch
        texts = [model.decode(raw.tokens[r].tolist()) for r in range(len(rows))]
    vals = []
    for r in range(len(rows)):
        if watch is not None:
            vals.append(float(torch.logsumexp(per_step[r], -1).mean()))
        else:
            v = metric(first[r], texts[r])
            try:
                vals.append(float(v))
            except (TypeError, ValueError):
                raise SteeringError(f"metric must return a number, got {type(v).__name__}") from None
    values = torch.tensor(vals, dtype=torch.float32).reshape(S + 1, N)
    return SteeringSweep(
        spec=spec, strengths=tuple(strengths), prompts=tuple(prompts), metric_name=name,
        values=values[1:], baseline=values[0],
        texts=tuple(tuple(texts[(k + 1) * N + i] for i in range(N)) for k in range(S)) if n else (),
        baseline_texts=tuple(texts[:N]) if n else (),
    )


def dose_response_figure(sweep: SteeringSweep, *, title: str | None = None) -> Any:
    """A plotly figure: metric vs strength (mean over prompts, thin line per prompt), with the
    unsteered baseline as a dashed line.

        >>> fig = dose_response_figure(sw); fig.show()
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    xs = list(sweep.strengths)
    if len(sweep.prompts) > 1:
        for i, p in enumerate(sweep.prompts):
            fig.add_trace(go.Scatter(x=xs, y=sweep.values[:, i].tolist(), mode="lines",
                                     line={"width": 1}, opacity=0.4, name=p[:30],
                                     showlegend=False, hovertext=p))
    fig.add_trace(go.Scatter(x=xs, y=sweep.mean.tolist(), mode="lines+markers", name="steered",
                             line={"width": 3}))
    fig.add_hline(y=float(sweep.baseline.mean()), line_dash="dash", annotation_text="baseline")
    fig.update_layout(
        title=title or f"{sweep.spec.target_label()} ({sweep.spec.mode} at {sweep.spec.site})",
        xaxis_title=sweep.units, yaxis_title=sweep.metric_name, template="plotly_white",
    )
    return fig
