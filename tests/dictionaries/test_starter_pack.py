"""The shipped SmolLM2 starter pack: layout, size, fast load, script-made metrics, and meaning
(a Paris feature that fires on Paris text and, steered, raises Paris continuations)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.scan import FeatureIndex

PACK = Path(iw.__file__).resolve().parent / "data" / "starter"
PARIS = ["The Eiffel Tower is in Paris, the capital of France.",
         "We took the train to Paris and walked along the Seine to the Louvre.",
         "Paris is famous for the Eiffel Tower, Notre-Dame and French cafes."]
OTHER = ["The function returns a list of integers sorted in ascending order.",
         "And the LORD spake unto Moses, saying, Speak unto the children of Israel.",
         "A hash table maps keys to values using a hash function.",
         "Tokyo is the capital of Japan and Berlin is the capital of Germany."]


def test_layout_size_and_metrics_come_from_the_script():
    metrics = json.loads((PACK / "metrics.json").read_text())
    assert "build_starter_pack.py" in metrics["command"]
    tcs = [k for k in metrics["per_dictionary"] if k.startswith("transcoder.")]
    assert len(tcs) == 30 and all(metrics["per_dictionary"][k]["fvu"] >= 0 for k in tcs)
    size = sum(f.stat().st_size for f in PACK.rglob("*") if f.is_file())
    assert size <= 100e6, f"pack is {size / 1e6:.1f} MB"
    card = (PACK / "README.md").read_text()
    assert f"{metrics['training']['tokens_seen']:,}" in card  # the card is rendered from metrics.json
    for L in range(30):
        assert (PACK / "transcoders" / f"layer_{L:02d}" / "weights.safetensors").is_file()
    from safetensors import safe_open
    with safe_open(str(PACK / "transcoders" / "layer_12" / "weights.safetensors"), "pt") as f:
        assert f.get_tensor("W_enc").dtype == torch.float16


def test_pack_loads_in_under_five_seconds_in_a_fresh_process():
    code = ("import time, torch; t=time.perf_counter(); import interp_widgets as iw; "
            "ts=iw.load_transcoders('starter'); s=iw.load_dictionary('starter/resid_post.12'); "
            "ix=iw.FeatureIndex.load_starter('resid_post.12'); ix.top_examples(0); "
            "print(time.perf_counter()-t, len(ts), s.n_features)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, n_layers, width = out.stdout.split()
    assert int(n_layers) == 30 and int(width) > 0
    assert float(seconds) < 5.0, f"loading the pack took {seconds} s"


def test_every_live_feature_has_an_evidence_label():
    for name in ["resid_post.12", "transcoder.12"]:
        ix = FeatureIndex.load_starter(name)
        d = (iw.load_dictionary(f"starter/{name}") if name.startswith("resid")
             else iw.load_transcoders("starter")[12])
        live = set(ix.live.tolist())
        assert live and set(d.labels) == live
        f = next(iter(live))
        assert " → " in d.labels[f]


def _paris_feature(model):
    """The starter SAE feature that best separates Paris text from unrelated text."""
    best = None
    dicts = {f"resid_post.{L}": iw.load_dictionary(f"starter/resid_post.{L}") for L in (6, 12, 18, 24)}
    for name, d in dicts.items():
        ids = list(range(d.n_features))
        _, cache = model.run_with_cache(PARIS + OTHER, sites=[str(d.site)])
        acts = d.encode(cache[str(d.site)])[:, 1:, ids]  # position 0 (sink) excluded
        mask = cache.attention_mask[:, 1:].bool()
        paris = torch.stack([acts[i][mask[i]].max(0).values for i in range(len(PARIS))]).min(0).values
        other = torch.stack([acts[i][mask[i]].max(0).values for i in range(len(PARIS), len(PARIS) + len(OTHER))]).max(0).values
        margin = paris - other
        j = int(margin.argmax())
        if best is None or float(margin[j]) > best[3]:
            best = (d, ids[j], float(paris[j]), float(margin[j]), float(other[j]))
    assert best is not None
    return best


@pytest.mark.smollm
def test_a_paris_feature_fires_on_paris_and_steering_raises_paris(smollm):
    d, f, on_paris, margin, on_other = _paris_feature(smollm)
    # fires on every Paris sentence, and much more than on any unrelated sentence
    assert on_paris > 0 and on_paris > 3 * max(on_other, 0.0), (d.name, f, on_paris, on_other)
    # steering: add the feature's decoder direction at its site (positions >= 1) and measure logits
    prompt = "My favourite city to visit is"
    paris_id = smollm.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    toks = smollm.tokenize(prompt)
    strength = 2.0 * FeatureIndex.load_starter(d.site.name + f".{d.site.layer}").max_activation(f)
    direction = d.W_dec[f].detach()

    def p_paris(alpha: float) -> float:
        with torch.no_grad():
            with smollm.trace(toks.as_dict()):
                h = smollm.read(d.site)
                steered = h.clone()
                steered[:, 1:] += alpha * direction
                smollm.write(d.site, steered)
                logits = smollm.read("logits").save()
        logits = getattr(logits, "value", logits)
        return float(torch.softmax(logits[0, -1].float(), -1)[paris_id])

    base, steered = p_paris(0.0), p_paris(strength)
    assert steered > 3 * base and steered > 0.05, (base, steered)
