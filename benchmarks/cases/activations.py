"""feature_activations vs a plain transformers forward + SAE encode in torch (SmolLM2).

Two cases, 64-token prompt(s):
- ``resid_post.12``: our trace stops after layer 12; the baseline runs the whole model and grabs
  the block output with a torch forward hook (what a plain-torch user writes).
- ``resid_post.29``: the last layer, so stopping early saves nothing: this isolates our overhead
  (nnsight trace, sparse storage, sink marks, reconstruction statistics).
Uses the starter SAE when the pack is built, else ``SAE.random`` (width 4096, TopK k=32).

    python -m benchmarks.cases.activations          # full (by hand)
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from benchmarks.harness import compare, machine

TEXT = (
    "The Eiffel Tower is in the city of Paris, the capital of France. It was built for the 1889 "
    "World's Fair and was at first criticised by artists, but it became a symbol of the country. "
    "Tokyo is the capital of Japan, and the two cities are far apart on the map of the world today."
)


def _prompt(model: Any, n_tokens: int) -> str:
    ids = model.tokenizer(TEXT * 4)["input_ids"][:n_tokens]
    text = model.tokenizer.decode(ids)
    assert len(model.tokenizer(text)["input_ids"]) >= n_tokens - 2
    return text


def _sae(model: Any, site: str, seed: int) -> Any:
    import interp_widgets as iw

    try:
        return iw.load_dictionary(f"starter/{site}", model=model)
    except iw.errors.DictionaryError:
        return iw.SAE.random(d_in=model.d_model, n_features=4096, site=site, architecture="topk",
                             k=32, seed=seed, metadata={"model": model.name})


def _case(model: Any, site: str, n_prompts: int, repeats: int) -> dict:
    import interp_widgets as iw
    from interp_widgets.analysis.activations import feature_activations

    sae = _sae(model, site, seed=0)
    layer = iw.Site.parse(site).layer
    prompts = [_prompt(model, 64)] * n_prompts
    toks = model.tokenize(prompts)
    block = model.hf.model.layers[layer]

    def ours() -> Any:
        return feature_activations(model, sae, prompts, batch_size=8)

    def baseline() -> Any:
        # plain torch: a forward hook on the block grabs its output during a full forward
        # (HF's last hidden_states entry is after the final norm, so a hook is the honest way)
        out, grabbed = [], {}
        handle = block.register_forward_hook(
            lambda mod, args, o: grabbed.__setitem__("h", o[0] if isinstance(o, tuple) else o))
        try:
            with torch.no_grad():
                for i in range(0, n_prompts, 8):
                    model.hf(input_ids=toks.input_ids[i:i + 8],
                             attention_mask=toks.attention_mask[i:i + 8])
                    out.append(sae.encode(grabbed["h"]))
        finally:
            handle.remove()
        return out

    # same numbers first: the comparison is only meaningful if both compute the same thing
    a = ours().dense(prompt=0)
    b = baseline()[0][0, : a.shape[0]]
    assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())
    r = compare(f"feature_activations {site} x{n_prompts}x64 tokens", ours=ours,
                baseline=baseline, repeats=repeats, warmup=1, units=64 * n_prompts,
                unit_name="tokens",
                notes="baseline: full HF forward, block output grabbed by a torch forward hook, "
                      "+ SAE.encode; ratio_of_minimums is robust to a loaded machine")
    # on a shared, loaded machine the fastest run of each side is the least disturbed one
    r["ratio_of_minimums"] = r["ours_spread_s"][0] / r["baseline_spread_s"][0]
    r["target"] = "<= 1.2x baseline"
    r["ok"] = r["ratio"] <= 1.2
    return r


def run(quick: bool) -> list[dict]:
    import interp_widgets as iw

    model = iw.load_model()
    cases = [("resid_post.12", 1)] if quick else [("resid_post.12", 1), ("resid_post.29", 1),
                                                   ("resid_post.12", 8)]
    # one torch thread for both sides: on a shared 2-core machine two threads per process thrash
    # under load and turn a 0.2 s forward into 10-40 s of noise; the ratio is what we report
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = [_case(model, site, n, repeats=2 if quick else 5) for site, n in cases]
        for r in results:
            r["machine"] = machine()
    finally:
        torch.set_num_threads(threads)
    return results


if __name__ == "__main__":
    out = run(quick="--quick" in sys.argv)
    for r in out:
        print(f"{r['name']}: ours {r['ours_median_s']:.3f}s, baseline {r['baseline_median_s']:.3f}s, "
              f"ratio {r['ratio']:.2f}")
    print(json.dumps(out, indent=1, default=str))
