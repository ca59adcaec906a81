"""Shared pieces of the reliability suite: small dictionaries for the tiny model, a folder of
good and deliberately broken files, and the "is the model still clean?" check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import interp_widgets as iw

PROMPT = "The cat sat on the mat"


def plain_logits(model, prompt: str = PROMPT) -> torch.Tensor:
    """The model's logits for ``prompt`` straight from the transformers module (no nnsight)."""
    with torch.no_grad():
        return model.hf(model.tokenize(prompt).input_ids).logits


def assert_clean(model, fresh) -> None:
    """``model`` behaves like a freshly built copy: plain forwards and a traced forward match."""
    for p in (PROMPT, "Hello world, this is"):
        assert torch.equal(plain_logits(model, p), plain_logits(fresh, p))
        got, _ = model.run_with_cache(p, sites=[])
        assert torch.allclose(got, plain_logits(fresh, p), atol=1e-6)
    # no forward hooks of any kind left behind on any module
    for m in model.hf.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__


@pytest.fixture(scope="session")
def fresh_llama():
    """A second, untouched tiny-llama (tiny models are built deterministically)."""
    return iw.load_model("tiny-llama")


@pytest.fixture(scope="module")
def sae(tiny_llama):
    s = iw.SAE.random(d_in=tiny_llama.d_model, n_features=32, site="resid_post.1",
                      architecture="topk", k=4, seed=1, metadata={"model": "tiny-llama"})
    s.name = "sae.L1"
    return s


@pytest.fixture(scope="module")
def transcoders(tiny_llama):
    return {L: iw.Transcoder.random(d_in=tiny_llama.d_model, n_features=48, layer=L,
                                    architecture="topk", k=4, seed=L)
            for L in range(tiny_llama.n_layers)}


@pytest.fixture(scope="module")
def files(tmp_path_factory, sae, transcoders):
    """A folder of good and broken dictionary / graph files (``files[name] -> Path``)."""
    root = tmp_path_factory.mktemp("files")
    out: dict[str, Path] = {}
    good = sae.save(root / "good")
    out["good"] = good
    weights = (good / "weights.safetensors").read_bytes()
    config = json.loads((good / "config.json").read_text())

    def variant(name: str, *, cfg=None, cfg_text=None, w=None, extra=None) -> Path:
        d = root / name
        d.mkdir()
        (d / "config.json").write_text(cfg_text if cfg_text is not None else json.dumps(cfg if cfg is not None else config))
        if w is not None:
            (d / "weights.safetensors").write_bytes(w)
        for fname, data in (extra or {}).items():
            (d / fname).write_bytes(data)
        out[name] = d
        return d

    variant("truncated", w=weights[: len(weights) // 2])
    variant("truncated_header", w=weights[:20])
    variant("empty_weights", w=b"")
    variant("random_bytes", w=bytes(range(256)) * 16)
    flipped = bytearray(weights)
    flipped[12] ^= 0x5B  # inside the JSON header: the header no longer parses
    variant("header_flip", w=bytes(flipped))
    huge_header = (10 ** 15).to_bytes(8, "little") + weights[8:]
    variant("huge_header_len", w=huge_header)
    variant("no_weights")
    variant("pickle_only", extra={"weights.pt": b"\x80\x04K\x01."})
    variant("missing_keys", cfg={k: v for k, v in config.items() if k not in ("d_in", "site")}, w=weights)
    variant("wrong_types", cfg={**config, "d_in": "64"}, w=weights)
    variant("float_width", cfg={**config, "n_features": 32.0}, w=weights)
    variant("negative_width", cfg={**config, "n_features": -32}, w=weights)
    variant("gigantic_width", cfg={**config, "n_features": 10 ** 12}, w=weights)
    variant("gigantic_d_in", cfg={**config, "d_in": 2 ** 62}, w=weights)
    variant("bad_site", cfg={**config, "site": "resid_post.x"}, w=weights)
    variant("site_not_str", cfg={**config, "site": 12}, w=weights)
    variant("bad_arch", cfg={**config, "architecture": "gelu"}, w=weights)
    variant("bad_k", cfg={**config, "k": -3}, w=weights)
    variant("k_too_big", cfg={**config, "k": 10 ** 9}, w=weights)
    variant("unknown_kind", cfg={**config, "kind": "autoencoder"}, w=weights)
    variant("json_array", cfg_text="[1, 2, 3]", w=weights)
    variant("json_invalid", cfg_text="{\"format\": \"interp_widgets\", ", w=weights)
    variant("json_nan", cfg_text=json.dumps(config).replace('"d_in": 64', '"d_in": NaN'), w=weights)
    variant("labels_broken", w=weights, extra={"labels.json": b"{not json"})
    variant("labels_wrong_type", w=weights, extra={"labels.json": b"[\"a\", \"b\"]"})
    variant("labels_bad_ids", w=weights, extra={"labels.json": b"{\"999\": \"x\", \"abc\": \"y\"}"})
    # transcoder sets
    ts = iw.TranscoderSet(dict(transcoders), name="tc")
    out["tset"] = ts.save(root / "tset")
    tcfg = json.loads((root / "tset" / "config.json").read_text())
    bad = root / "tset_bad_layers"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**tcfg, "layers": ["zero"]}))
    out["tset_bad_layers"] = bad
    miss = root / "tset_missing_layer"
    shutil.copytree(root / "tset", miss)
    (miss / "config.json").write_text(json.dumps({**tcfg, "layers": [0, 7]}))
    out["tset_missing_layer"] = miss
    # a SAELens folder with broken configs
    for name, patch in {"saelens_no_hook": {"hook_name": None}, "saelens_d_sae_str": {"d_sae": "32"},
                        "saelens_bad_hook": {"hook_name": "blocks.1.hook_nothing"},
                        "saelens_arch": {"architecture": "gated"}}.items():
        d = root / name
        d.mkdir()
        cfg = {"architecture": "standard", "d_in": 64, "d_sae": 32, "dtype": "float32", "device": "cpu",
               "apply_b_dec_to_input": True, "metadata": {"model_name": "tiny-llama",
                                                            "hook_name": "blocks.1.hook_resid_post"}}
        for k, v in patch.items():
            if k == "hook_name":
                cfg["metadata"][k] = v
            else:
                cfg[k] = v
        (d / "cfg.json").write_text(json.dumps(cfg))
        (d / "sae_weights.safetensors").write_bytes(weights)
        out[name] = d
    (root / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    out["pkl_file"] = root / "weights.pkl"
    return out
