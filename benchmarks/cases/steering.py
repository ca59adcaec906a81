"""Steered generation vs plain ``transformers`` ``generate`` (SmolLM2, greedy).

Cases (32 new tokens full, 4 quick; one prompt):
- one arm: ``steer(model, spec).generate(..., baseline=False, score=False)`` (steering at
  ``resid_post.12`` through nnsight, per-step log-probs recorded) vs ``model.hf.generate`` with
  the same settings. Target: >= 0.9x the tokens/s of plain generate.
- both arms: the default ``generate`` (baseline + steered batched as 2 rows, then the
  teacher-forced scoring pass for KL / per-token log-prob diffs) vs the same plain generate:
  what the steering panel pays for a comparison.
- both arms, no scoring: the batched generate alone.

    python -m benchmarks steering            # full (by hand)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import torch

from benchmarks.harness import compare, machine

PROMPT = "The Eiffel Tower is in the city of"


def _plain(model: Any, n: int):
    toks = model.tokenize([PROMPT])
    pad = model.tokenizer.pad_token_id

    def baseline() -> torch.Tensor:
        # what a plain transformers user writes: greedy, fixed length (no EOS stop, like ours)
        with torch.no_grad():
            return model.hf.generate(**toks.as_dict(), max_new_tokens=n, do_sample=False,
                                     eos_token_id=None, pad_token_id=pad)

    return baseline, toks.input_ids.shape[1]


def _cpu_timed(fn: Any, store: list[float]) -> Any:
    def timed() -> Any:
        t = time.process_time()
        out = fn()
        store.append(time.process_time() - t)
        return out

    return timed


def run(quick: bool) -> list[dict]:
    import interp_widgets as iw

    model = iw.load_model()
    n = 4 if quick else 32
    repeats = 1 if quick else 7
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(model.d_model, generator=g)
    baseline, n_prompt = _plain(model, n)

    # same computation first: a zero-strength steer must reproduce plain generate token for token
    zero = iw.steer(model, iw.Steer(direction, 0.0, site="resid_post.12"))
    ours_tokens = zero.generate(PROMPT, max_new_tokens=n, baseline=False, score=False,
                                stop_at_eos=False).steered.tokens[0]
    assert list(ours_tokens) == baseline()[0, n_prompt:].tolist()

    steerer = iw.steer(model, iw.Steer(direction, 32.0, site="resid_post.12"))
    cases = [
        ("one arm", dict(baseline=False, score=False),
         "baseline: model.hf.generate, greedy, same length"),
        ("both arms + scoring", {},
         "ours: baseline and steered batched (2 rows) + teacher-forced scoring"),
        ("both arms, no scoring", dict(score=False), "ours: baseline and steered batched (2 rows)"),
    ]
    results = []
    for label, kw, notes in cases:
        cpu: dict[str, list[float]] = {"ours": [], "baseline": []}
        r = compare(
            f"steered generate, {label}, {n} tokens", repeats=repeats, units=n, unit_name="tokens",
            ours=_cpu_timed(lambda kw=kw: steerer.generate(PROMPT, max_new_tokens=n,
                                                           stop_at_eos=False, **kw), cpu["ours"]),
            baseline=_cpu_timed(baseline, cpu["baseline"]), notes=notes)
        # process CPU time as well: on a shared, overloaded machine wall time mostly measures the
        # neighbours; CPU time (meaningful with one torch thread) measures the work
        co, cb = (statistics.median(v[1:]) for v in (cpu["ours"], cpu["baseline"]))
        r.update(ours_cpu_median_s=co, baseline_cpu_median_s=cb, cpu_throughput_ratio=cb / co,
                 torch_threads=torch.get_num_threads())
        r["notes"] += f"; CPU-time throughput x{cb / co:.2f}"
        results.append(r)
    results[0]["target"] = ">= 0.9x tokens/s"
    results[0]["ok"] = results[0]["throughput_ratio"] >= 0.9
    for r in results:
        r["machine"] = machine()
    return results


if __name__ == "__main__":
    out = run(quick="--quick" in sys.argv)
    for r in out:
        print(f"{r['name']}: ours {r['ours_median_s']:.3f}s, baseline {r['baseline_median_s']:.3f}s, "
              f"throughput x{r['throughput_ratio']:.2f} (CPU time: x{r['cpu_throughput_ratio']:.2f})")
    print(json.dumps(out, indent=1, default=str))
