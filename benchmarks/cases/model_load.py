"""Model loading: the default model's safetensors cache vs the GGUF load it replaces; tiny models.

- ``default model``: ``load_default_hf()`` (validate the cache's sha256 + safetensors load) against
  ``load_default_hf(use_cache=False)`` (transformers' GGUF dequantization, what every load would
  cost without the cache). Both must give bitwise identical weights. Target: >= 3x faster.
- ``tiny model``: ``load_model("tiny-llama")`` (model + tokenizer + nnsight wrapper) against plain
  ``AutoModelForCausalLM.from_config`` of the same config. Target: < 1 s.

    python -m benchmarks model_load            # full (3 repeats; ~2 min on 2 cores)
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.harness import compare


def _same_weights(a: Any, b: Any) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def run(quick: bool) -> list[dict]:
    import interp_widgets as iw
    from interp_widgets.models.loading import ensure_default_cache, load_default_hf
    from interp_widgets.models.tiny import tiny_config, tiny_tokenizer

    ensure_default_cache()  # measure later loads, not the one-time conversion
    last: dict[str, Any] = {}

    def ours() -> None:
        last["ours"] = load_default_hf()[0]

    def baseline() -> None:
        last["baseline"] = load_default_hf(use_cache=False)[0]

    results = []
    r = compare(
        "default model load: safetensors cache vs GGUF",
        ours=ours,
        baseline=baseline,
        repeats=1 if quick else 3,
        warmup=0 if quick else 1,
        notes="both give bitwise identical float32 weights (checked); ours includes the sha256 check",
    )
    # the comparison only means something if both load the same weights
    r["bitwise_equal"] = _same_weights(last["ours"], last["baseline"])
    if not r["bitwise_equal"]:
        raise AssertionError("the cached default model differs from the GGUF load")
    last.clear()
    r["target"] = ">= 3x faster (ratio <= 0.333)"
    r["ok"] = r["ratio"] <= 1 / 3
    results.append(r)

    from transformers import AutoModelForCausalLM

    cfg = tiny_config("llama", vocab_size=len(tiny_tokenizer()))
    r = compare(
        "tiny model load: load_model('tiny-llama') vs from_config",
        ours=lambda: iw.load_model("tiny-llama"),
        baseline=lambda: AutoModelForCausalLM.from_config(cfg),
        repeats=3 if quick else 10,
        warmup=1,
        notes="ours adds the in-process tokenizer, seeded weights and the nnsight wrapper "
              "(libraries already imported)",
    )
    r["target"] = "< 1 s"
    r["ok"] = r["ours_median_s"] < 1.0
    results.append(r)
    return results
