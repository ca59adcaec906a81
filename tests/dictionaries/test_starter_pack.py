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


def test_per_layer_settings_in_metrics_match_the_shipped_weights():
    metrics = json.loads((PACK / "metrics.json").read_text())
    tr = metrics["training"]
    per_layer = {int(L): v for L, v in tr.get("transcoder_per_layer", {}).items()}
    for L in range(30):
        cfg = json.loads((PACK / "transcoders" / f"layer_{L:02d}" / "config.json").read_text())
        want = {"width": tr["transcoder_width"], "k": tr["k"], "lr_scale": 1.0, **per_layer.get(L, {})}
        assert (cfg["n_features"], cfg["k"]) == (want["width"], want["k"]), L
        assert cfg["metadata"]["lr"] == pytest.approx(tr["lr"] * want["lr_scale"]), L


def test_shipped_pack_meets_the_targets_recomputed_from_its_per_dictionary_metrics():
    """The issue's targets, checked from the per-dictionary numbers (not the script's own verdict),
    and the card reports the same verdict."""
    import statistics

    metrics = json.loads((PACK / "metrics.json").read_text())
    per, s = metrics["per_dictionary"], metrics["summary"]
    tcs = [per[f"transcoder.{L}"] for L in range(30)]
    saes = {k: v for k, v in per.items() if k.startswith("resid_post.")}
    median_fvu = statistics.median(t["fvu"] for t in tcs)
    assert median_fvu == pytest.approx(s["transcoders_median_fvu"], abs=1e-6)
    assert median_fvu <= 0.3 and max(t["l0"] for t in tcs) <= 64
    assert s["all_transcoders_ce_loss_recovered"] >= 0.8
    over = {k: round(v["dead_fraction"], 4) for k, v in per.items()
            if "dead_fraction" in v and v["dead_fraction"] > 0.10}
    assert sum("dead_fraction" in v for v in per.values()) == 30 + len(saes)
    assert not over, f"dead fraction above 10%: {over}"
    assert len(saes) >= 4 and all(v["fvu"] <= 0.2 for v in saes.values())
    assert all(s["targets"].values())
    card = (PACK / "README.md").read_text()
    assert "NOT met" not in card and card.count("**met**") == len(s["targets"])


def test_build_script_tc_layer_flag_names_the_format_on_bad_input():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_starter_pack", PACK.parents[2] / "scripts"
                                                  / "build_starter_pack.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_tc_layers(["29:width=256,lr_scale=0.6", "29:k=20"], 30) == {
        29: {"width": 256, "lr_scale": 0.6, "k": 20}}
    for bad in ["29:wdth=256", "x:width=256", "29:width=big", "30:width=256", "29:"]:
        with pytest.raises(SystemExit, match="--tc-layer"):
            mod.parse_tc_layers([bad], 30)


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
    """Among starter features that fire on every Paris sentence and > 3x more than on any
    unrelated one, the one whose decoder direction most promotes " Paris" through the unembedding.

    (The pack's SAEs and its late-layer transcoders are searched; see the pack card.)
    """
    pid = model.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    W_U = model.hf.lm_head.weight.detach()
    u = (W_U[pid] - W_U.mean(0)) * model.hf.model.norm.weight.detach()
    tcs = iw.load_transcoders("starter")
    dicts = [iw.load_dictionary(f"starter/resid_post.{L}") for L in (6, 12, 18, 24)]
    dicts += [tcs[L] for L in range(20, model.n_layers)]
    best = []
    for d in dicts:
        _, cache = model.run_with_cache(PARIS + OTHER, sites=[str(d.site)])
        acts = d.encode(cache[str(d.site)])[:, 1:]  # position 0 (sink) excluded
        mask = cache.attention_mask[:, 1:].bool()
        paris = torch.stack([acts[i][mask[i]].max(0).values for i in range(len(PARIS))]).min(0).values
        other = torch.stack([acts[i][mask[i]].max(0).values
                             for i in range(len(PARIS), len(PARIS) + len(OTHER))]).max(0).values
        ok = (paris > 0) & (paris > 3 * other.clamp(min=0))
        W = d.W_dec.detach()
        promote = torch.where(ok, (W @ u) / W.norm(dim=-1), torch.full_like(paris, -float("inf")))
        for j in promote.topk(3).indices.tolist():
            if ok[j]:
                best.append((d, j, float(paris[j].detach()), float(promote[j].detach()),
                             float(other[j].detach())))
    assert best, "no starter feature separates Paris text from unrelated text"
    return sorted(best, key=lambda b: -b[3])[:20]  # the strongest Paris promoters


def test_a_paris_feature_fires_on_paris_and_steering_raises_paris(smollm):
    candidates = _paris_feature(smollm)
    # each candidate fires on every Paris sentence, and > 3x more than on any unrelated sentence
    for d, f, on_paris, _, on_other in candidates:
        assert on_paris > 0 and on_paris > 3 * max(on_other, 0.0), (d.name, f, on_paris, on_other)
    # steering: add the feature's decoder direction at its site (positions >= 1) and measure logits
    prompt = "My favourite city to visit is"
    paris_id = smollm.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    toks = smollm.tokenize(prompt)


    def p_paris(d, f, alpha: float) -> float:
        direction = d.W_dec[f].detach()
        site = d.out_site or d.site
        with torch.no_grad():
            with smollm.trace(toks.as_dict()):
                h = smollm.read(site)
                steered = h.clone()
                steered[:, 1:] += alpha * direction
                smollm.write(site, steered)
                logits = smollm.read("logits").save()
        logits = getattr(logits, "value", logits)
        return float(torch.softmax(logits[0, -1].float(), -1)[paris_id])

    # existence: at least one of them, pushed at 2-8x its activation on Paris text (the best dose
    # per feature: too much overshoots), clearly raises P(" Paris")
    # (the 1.77M-token pack measured 0.20 -> 0.62 for its transcoder.25 #550 at 2x; feature ids change with each build)
    base = p_paris(candidates[0][0], candidates[0][1], 0.0)
    rises = [(d.name, f, max(p_paris(d, f, k * on_paris) for k in (2.0, 4.0, 8.0)))
             for d, f, on_paris, _, _ in candidates]
    name, f, steered = max(rises, key=lambda r: r[2])
    assert steered > 1.5 * base and steered - base > 0.1, (base, rises)
