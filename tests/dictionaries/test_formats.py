"""On-disk formats: SAELens and circuit-tracer files written by hand in their layouts, ours,
the starter-pack names, and every bad input the issue lists."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import save_file

import interp_widgets as iw
from interp_widgets.dictionaries import SAE, Transcoder, TranscoderSet, formats
from interp_widgets.dictionaries.formats import (
    detect_format,
    hook_from_site,
    load_circuit_tracer,
    save_circuit_tracer,
    save_saelens,
    site_from_hook,
)
from interp_widgets.errors import DictionaryError, SiteError, UnsafeFileError

D, N = 64, 96


def _w(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _write_saelens(folder, cfg: dict, tensors: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "sae_weights.safetensors"))


def _saelens_tensors(seed: int = 0, d_out: int = D) -> dict:
    return {
        "W_enc": _w(seed, D, N, scale=0.2),
        "W_dec": _w(seed + 1, N, d_out, scale=0.2),
        "b_enc": _w(seed + 2, N, scale=0.1),
        "b_dec": _w(seed + 3, d_out, scale=0.1),
    }


def _v6_cfg(arch: str, **extra) -> dict:
    return {"architecture": arch, "d_in": D, "d_sae": N, "dtype": "float32", "device": "cpu",
            "apply_b_dec_to_input": True, "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": {"model_name": "tiny-llama", "hook_name": "blocks.2.hook_resid_post",
                         "sae_lens_version": "6.3.0"}, **extra}


X = _w(99, 7, D)


# --------------------------------------------------------------------------- SAELens math
def test_saelens_standard_matches_saelens_formulas(tmp_path):
    t = _saelens_tensors()
    _write_saelens(tmp_path / "std", _v6_cfg("standard"), t)
    sae = iw.load_dictionary(tmp_path / "std")
    assert isinstance(sae, SAE) and str(sae.site) == "resid_post.2" and sae.architecture == "relu"
    # SAELens StandardSAE: relu((x - b_dec) @ W_enc + b_enc); decode f @ W_dec + b_dec
    f_want = torch.relu((X - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    with torch.no_grad():
        f = sae.encode(X)
        torch.testing.assert_close(f, f_want)
        torch.testing.assert_close(sae.decode(f), f_want @ t["W_dec"] + t["b_dec"])
    assert (f > 0).any() and (f == 0).any()


def test_saelens_jumprelu_matches_formulas(tmp_path):
    t = _saelens_tensors(10)
    t["threshold"] = _w(20, N, scale=0.3).abs()
    _write_saelens(tmp_path / "jr", _v6_cfg("jumprelu", apply_b_dec_to_input=False), t)
    sae = iw.load_dictionary(tmp_path / "jr")
    pre = X @ t["W_enc"] + t["b_enc"]
    f_want = torch.relu(pre) * (pre > t["threshold"])
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(X), f_want)
        torch.testing.assert_close(sae.reconstruct(X), f_want @ t["W_dec"] + t["b_dec"])
    # the threshold really removes some positive pre-activations
    assert ((pre > 0) & (pre <= t["threshold"])).any()


@pytest.mark.parametrize("rescale", [False, True])
def test_saelens_topk_matches_formulas(tmp_path, rescale):
    t = _saelens_tensors(30)
    t["W_dec"] = t["W_dec"] * _w(31, N, 1).abs()  # uneven decoder norms make rescaling matter
    _write_saelens(tmp_path / "tk", _v6_cfg("topk", k=5, rescale_acts_by_decoder_norm=rescale), t)
    sae = iw.load_dictionary(tmp_path / "tk")
    assert sae.architecture == "topk" and sae.k == 5
    pre = (X - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    norms = t["W_dec"].norm(dim=-1)
    if rescale:
        pre = pre * norms
    vals, idx = pre.topk(5, dim=-1)
    f_want = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
    dec_in = f_want / norms if rescale else f_want
    with torch.no_grad():
        f = sae.encode(X)
        torch.testing.assert_close(f, f_want)
        torch.testing.assert_close(sae.decode(f), dec_in @ t["W_dec"] + t["b_dec"])
    assert int((f != 0).sum(-1).max()) <= 5


def test_saelens_pre_v6_flat_config(tmp_path):
    t = _saelens_tensors(40)
    cfg = {"d_in": D, "d_sae": N, "hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1,
           "model_name": "tiny-llama", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3},
           "dtype": "float32", "normalize_activations": False}
    _write_saelens(tmp_path / "old", cfg, t)
    sae = iw.load_dictionary(tmp_path / "old")
    assert str(sae.site) == "resid_pre.1" and sae.architecture == "topk" and sae.k == 3
    assert sae.apply_b_dec_to_input  # SAELens' default before v6


def test_saelens_finetuning_scaling_factor_is_folded(tmp_path):
    t = _saelens_tensors(45)
    s = _w(46, N).abs() + 0.5
    t["finetuning_scaling_factor"] = s
    _write_saelens(tmp_path / "fsf", _v6_cfg("standard", finetuning_scaling_factor=True), t)
    sae = iw.load_dictionary(tmp_path / "fsf")
    f = torch.relu((X - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    with torch.no_grad():
        torch.testing.assert_close(sae.reconstruct(X), (f * s) @ t["W_dec"] + t["b_dec"])


def test_saelens_skip_transcoder(tmp_path):
    t = _saelens_tensors(50)
    t["W_skip"] = _w(51, D, D, scale=0.05)  # SAELens layout: [d_out, d_in]
    cfg = _v6_cfg("skip_transcoder", d_out=D, hook_name_out="blocks.2.hook_mlp_out")
    cfg["metadata"]["hook_name"] = "blocks.2.ln2.hook_normalized"
    _write_saelens(tmp_path / "tc", cfg, t)
    tc = iw.load_dictionary(tmp_path / "tc")
    assert isinstance(tc, Transcoder) and str(tc.site) == "mlp_in.2" and str(tc.out_site) == "mlp_out.2"
    # SAELens transcoders never subtract b_dec from the input; skip = x @ W_skip.T
    f = torch.relu(X @ t["W_enc"] + t["b_enc"])
    with torch.no_grad():
        torch.testing.assert_close(tc.reconstruct(X), f @ t["W_dec"] + t["b_dec"] + X @ t["W_skip"].T)
    tset = iw.load_transcoders(tmp_path / "tc")
    assert isinstance(tset, TranscoderSet) and tset.layers == [2]


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "topk", "batchtopk"])
def test_save_saelens_round_trip(tmp_path, arch):
    sae = SAE.random(d_in=D, n_features=N, site="resid_mid.3", architecture=arch,
                     k=6 if "topk" in arch else None, apply_b_dec_to_input=arch == "relu", seed=3)
    with torch.no_grad():
        sae.b_enc.copy_(_w(60, N, scale=0.1))
        sae.b_dec.copy_(_w(61, D, scale=0.1))
        if sae.threshold is not None:
            sae.threshold.copy_(_w(62, N, scale=0.2).abs())
    save_saelens(sae, tmp_path / "rt", model_name="tiny-llama")
    cfg = json.loads((tmp_path / "rt" / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_mid"
    back = iw.load_dictionary(tmp_path / "rt")
    with torch.no_grad():
        torch.testing.assert_close(back.encode(X), sae.encode(X))
        torch.testing.assert_close(back.reconstruct(X), sae.reconstruct(X))


# --------------------------------------------------------------------------- circuit-tracer
def _relu_gpt2():
    """A real tiny GPT-2 whose MLPs use ReLU: a circuit-tracer ReLU transcoder made from its
    neurons reproduces mlp_out exactly, so any layout mistake shows up as error."""
    model = iw.load_model("tiny-gpt2")
    for block in model.hf.transformer.h:
        block.mlp.act = torch.nn.ReLU()
    return model


def _write_ct_from_mlps(model, folder, *, listed: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for layer, block in enumerate(model.hf.transformer.h):
        mlp = block.mlp
        tensors = {  # circuit-tracer layout: W_enc [d_tc, d_model] used as F.linear(x, W_enc, b_enc)
            "W_enc": mlp.c_fc.weight.detach().T.contiguous(), "b_enc": mlp.c_fc.bias.detach().clone(),
            "W_dec": mlp.c_proj.weight.detach().clone(), "b_dec": mlp.c_proj.bias.detach().clone(),
        }
        name = f"tc_{layer}.safetensors" if listed else f"layer_{layer}.safetensors"
        save_file(tensors, str(folder / name))
        names.append(name)
    cfg = {"model_name": "tiny-gpt2", "model_kind": "transcoder_set",
           "feature_input_hook": "mlp.hook_in", "feature_output_hook": "mlp.hook_out"}
    if listed:
        cfg["transcoders"] = names
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.mark.parametrize("listed", [False, True])
def test_circuit_tracer_set_reproduces_mlp_out(tmp_path, listed):
    model = _relu_gpt2()
    _write_ct_from_mlps(model, tmp_path / "ct", listed=listed)
    assert detect_format(tmp_path / "ct") == "circuit_tracer"
    tset = iw.load_transcoders(tmp_path / "ct", model=model)
    assert tset.layers == [0, 1] and tset[1].architecture == "relu"
    sites = [f"mlp_in.{L}" for L in tset.layers] + [f"mlp_out.{L}" for L in tset.layers]
    _, cache = model.run_with_cache(["The cat sat on the mat", "Paris is nice"], sites)
    for layer in tset.layers:
        x, y = cache[f"mlp_in.{layer}"], cache[f"mlp_out.{layer}"]
        with torch.no_grad():
            err = (tset[layer].reconstruct(x) - y).norm() / y.norm()
        assert err < 1e-5, (layer, err)
    # and the same files with perturbed decoders are off by exactly the perturbation
    with torch.no_grad():
        x = cache["mlp_in.0"]
        noise = _w(5, *tset[0].W_dec.shape, scale=0.01)
        f = tset[0].encode(x)
        tset[0].W_dec.add_(noise)
        torch.testing.assert_close(tset[0].reconstruct(x) - cache["mlp_out.0"], f @ noise,
                                   rtol=1e-4, atol=1e-5)


def test_circuit_tracer_jumprelu_topk_and_skip_math(tmp_path):
    d_tc = 48
    base = {"W_enc": _w(1, d_tc, D, scale=0.3), "W_dec": _w(2, d_tc, D, scale=0.3),
            "b_enc": _w(3, d_tc, scale=0.1), "b_dec": _w(4, D, scale=0.1)}
    jr = dict(base, **{"activation_function.threshold": _w(5, d_tc, scale=0.3).abs(),
                       "W_skip": _w(6, D, D, scale=0.05)})
    (tmp_path / "jr").mkdir()
    save_file(jr, str(tmp_path / "jr" / "layer_0.safetensors"))
    save_file(dict(base), str(tmp_path / "jr" / "layer_1.safetensors"))
    (tmp_path / "jr" / "config.yaml").write_text(yaml.safe_dump(
        {"model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in",
         "feature_output_hook": "mlp.hook_out", "model_name": "meta-llama/tiny-llama"}))
    tset = load_circuit_tracer(tmp_path / "jr")
    tc = tset[0]
    assert tc.architecture == "jumprelu" and tc.W_skip is not None and tset[1].architecture == "relu"
    pre = torch.nn.functional.linear(X, jr["W_enc"], jr["b_enc"])
    f = pre * (pre > jr["activation_function.threshold"])
    with torch.no_grad():
        torch.testing.assert_close(tc.encode(X), f)
        torch.testing.assert_close(tc.reconstruct(X), f @ jr["W_dec"] + jr["b_dec"] + X @ jr["W_skip"].T)
    # TopK as circuit-tracer computes it: x * gate, keeping the sign of the kept values
    (tmp_path / "tk").mkdir()
    neg = dict(base, b_enc=base["b_enc"] - 50.0)  # every pre-activation negative: the sign matters
    save_file(neg, str(tmp_path / "tk" / "layer_0.safetensors"))
    (tmp_path / "tk" / "config.yaml").write_text(yaml.safe_dump(
        {"model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in",
         "feature_output_hook": "mlp.hook_out", "activation": "topk", "k": 4}))
    tk = load_circuit_tracer(tmp_path / "tk")[0]
    low = X
    pre = torch.nn.functional.linear(low, neg["W_enc"], neg["b_enc"])
    _, idx = pre.topk(4, dim=-1)
    gate = torch.zeros_like(pre).scatter(-1, idx, 1.0)
    with torch.no_grad():
        torch.testing.assert_close(tk.encode(low), pre * gate)
    assert (tk.encode(low) < 0).any()


def test_labels_persist_beside_foreign_formats(tmp_path):
    _write_saelens(tmp_path / "s", _v6_cfg("standard"), _saelens_tensors(7))
    iw.load_dictionary(tmp_path / "s").set_label(4, "four")
    assert iw.load_dictionary(tmp_path / "s")[4].label == "four"
    tset = TranscoderSet({L: Transcoder.random(d_in=D, n_features=N, layer=L, seed=L) for L in range(2)})
    save_circuit_tracer(tset, tmp_path / "ct")
    ct = iw.load_transcoders(tmp_path / "ct")
    ct[0].set_label(1, "zero/one")
    ct[1].set_label(1, "one/one")
    again = iw.load_transcoders(tmp_path / "ct")
    assert again[0][1].label == "zero/one" and again[1][1].label == "one/one"


def test_save_circuit_tracer_round_trip(tmp_path):
    tcs = {}
    for layer in range(3):
        tc = Transcoder.random(d_in=D, n_features=N, layer=layer, architecture="jumprelu", seed=layer,
                               skip=True)
        with torch.no_grad():
            tc.threshold.copy_(_w(70 + layer, N, scale=0.1).abs())
            tc.W_skip.copy_(_w(80 + layer, D, D, scale=0.05))
        tcs[layer] = tc
    tset = TranscoderSet(tcs, name="mine", metadata={"model": "tiny-llama"})
    save_circuit_tracer(tset, tmp_path / "out")
    cfg = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert cfg["model_kind"] == "transcoder_set" and cfg["model_name"] == "tiny-llama"
    back = iw.load_transcoders(tmp_path / "out")
    for layer in range(3):
        with torch.no_grad():
            torch.testing.assert_close(back[layer].reconstruct(X), tset[layer].reconstruct(X))
    with pytest.raises(DictionaryError, match="every layer 0-2"):
        save_circuit_tracer(TranscoderSet({0: tcs[0], 2: tcs[2]}), tmp_path / "gap")


# --------------------------------------------------------------------------- ours + names
def test_ours_round_trip_and_detection(tmp_path, tiny_llama):
    sae = SAE.random(d_in=64, n_features=N, site="resid_post.1", architecture="topk", k=4,
                     metadata={"model": "tiny-llama"})
    sae.save(tmp_path / "ours")
    sae.set_label(3, "cats")
    assert detect_format(tmp_path / "ours") == "interp_widgets"
    back = iw.load_dictionary(str(tmp_path / "ours"), model=tiny_llama)
    assert back[3].label == "cats"
    # a file inside the folder works too
    assert iw.load_dictionary(tmp_path / "ours" / "weights.safetensors").n_features == N


def test_starter_names(tmp_path, monkeypatch, tiny_llama):
    root = tmp_path / "starter"
    monkeypatch.setattr(formats, "starter_dir", lambda: root)
    with pytest.raises(DictionaryError, match="starter pack is not built"):
        iw.load_transcoders("starter")
    tset = TranscoderSet({L: Transcoder.random(d_in=64, n_features=32, layer=L, seed=L) for L in range(4)},
                         name="starter", metadata={"model": "tiny-llama"})
    tset.save(root / "transcoders", dtype=torch.float16)
    SAE.random(d_in=64, n_features=48, site="resid_post.2", metadata={"model": "tiny-llama"}).save(
        root / "saes" / "resid_post.2")
    got = iw.load_transcoders("starter", model=tiny_llama)
    assert got.layers == [0, 1, 2, 3]
    assert iw.load_dictionary("starter/resid_post.2", model=tiny_llama).n_features == 48
    assert iw.load_dictionary("starter/mlp_in.1").site == iw.Site("mlp_in", 1)
    assert iw.load_transcoders("starter/mlp_in.3").layers == [3]
    with pytest.raises(DictionaryError, match="available: starter, starter/resid_post.2"):
        iw.load_dictionary("starter/resid_post.9")
    with pytest.raises(DictionaryError, match="not transcoders"):
        iw.load_transcoders("starter/resid_post.2")


# --------------------------------------------------------------------------- bad inputs
def test_pickle_weights_are_refused(tmp_path):
    (tmp_path / "sae.pt").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UnsafeFileError, match="arbitrary code"):
        iw.load_dictionary(tmp_path / "sae.pt")
    with pytest.raises(UnsafeFileError, match=r"\.pt"):
        iw.load_dictionary(str(tmp_path / "missing.pt"))
    only = tmp_path / "only_pickle"
    only.mkdir()
    (only / "sae_weights.bin").write_bytes(b"x")
    with pytest.raises(UnsafeFileError, match="safetensors"):
        iw.load_dictionary(only)
    sl = tmp_path / "saelens_pickle"
    sl.mkdir()
    (sl / "cfg.json").write_text(json.dumps(_v6_cfg("standard")))
    (sl / "sae_weights.pt").write_bytes(b"x")
    with pytest.raises(UnsafeFileError):
        iw.load_dictionary(sl)


def test_truncated_safetensors(tmp_path):
    t = _saelens_tensors(90)
    _write_saelens(tmp_path / "tr", _v6_cfg("standard"), t)
    f = tmp_path / "tr" / "sae_weights.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DictionaryError, match="truncated or corrupted"):
        iw.load_dictionary(tmp_path / "tr")
    SAE.random(d_in=D, n_features=N, site="resid_post.0").save(tmp_path / "ours")
    g = tmp_path / "ours" / "weights.safetensors"
    g.write_bytes(g.read_bytes()[:100])
    with pytest.raises(DictionaryError, match="truncated"):
        iw.load_dictionary(tmp_path / "ours")


def test_shape_mismatch_names_both_sides(tmp_path):
    t = _saelens_tensors(91)
    t["W_enc"] = t["W_enc"][:, :80]
    _write_saelens(tmp_path / "bad", _v6_cfg("standard"), t)
    with pytest.raises(DictionaryError, match=r"W_enc has shape \(64, 80\).*\(64, 96\)"):
        iw.load_dictionary(tmp_path / "bad")
    ct = tmp_path / "ct"
    ct.mkdir()
    save_file({"W_enc": _w(1, D, 40), "W_dec": _w(2, 40, D), "b_enc": _w(3, 40), "b_dec": _w(4, D)},
              str(ct / "layer_0.safetensors"))
    (ct / "config.yaml").write_text("model_kind: transcoder_set\n")
    with pytest.raises(DictionaryError, match=r"W_enc has shape \(64, 40\).*\(40, 64\)"):
        iw.load_transcoders(ct)


def test_model_mismatch_and_wrong_site(tmp_path, tiny_llama, tiny_gpt2):
    _write_saelens(tmp_path / "s", _v6_cfg("standard"), _saelens_tensors(92))
    with pytest.raises(DictionaryError, match="d_in=64.*d_model=32"):
        iw.load_dictionary(tmp_path / "s", model=tiny_gpt2, check_name=False)
    with pytest.raises(DictionaryError, match="'tiny-llama'.*'tiny-gpt2'"):
        iw.load_dictionary(tmp_path / "s", model=tiny_gpt2)
    assert iw.load_dictionary(tmp_path / "s", model=tiny_llama).d_in == 64
    cfg = _v6_cfg("standard")
    cfg["metadata"]["hook_name"] = "blocks.9.hook_resid_post"
    _write_saelens(tmp_path / "deep", cfg, _saelens_tensors(93))
    with pytest.raises(SiteError, match="layers 0-3"):
        iw.load_dictionary(tmp_path / "deep", model=tiny_llama)
    cfg["metadata"]["hook_name"] = "blocks.1.attn.hook_q"
    _write_saelens(tmp_path / "q", cfg, _saelens_tensors(94))
    with pytest.raises(DictionaryError, match="no interp_widgets site"):
        iw.load_dictionary(tmp_path / "q")


def test_unknown_paths_and_formats(tmp_path):
    with pytest.raises(DictionaryError, match="neither an existing path nor a known name"):
        iw.load_dictionary("no/such/sae")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DictionaryError, match="not a dictionary folder"):
        iw.load_dictionary(tmp_path / "empty")
    _write_saelens(tmp_path / "norm", _v6_cfg("standard", normalize_activations="layer_norm"),
                   _saelens_tensors(95))
    with pytest.raises(DictionaryError, match="layer_norm"):
        iw.load_dictionary(tmp_path / "norm")
    (tmp_path / "clt").mkdir()
    (tmp_path / "clt" / "config.yaml").write_text("model_kind: cross_layer_transcoder\n")
    with pytest.raises(DictionaryError, match="cross_layer_transcoder"):
        iw.load_transcoders(tmp_path / "clt")


def test_hook_name_mapping():
    assert site_from_hook("blocks.12.hook_resid_post") == iw.Site("resid_post", 12)
    assert site_from_hook("blocks.3.ln2.hook_normalized") == iw.Site("mlp_in", 3)
    assert site_from_hook("mlp.hook_in", 5) == iw.Site("mlp_in", 5)
    assert site_from_hook("blocks.{layer}.hook_mlp_out", 2) == iw.Site("mlp_out", 2)
    assert site_from_hook("model.layers.7") == iw.Site("resid_post", 7)
    assert site_from_hook("hook_embed") == iw.Site("embed")
    assert site_from_hook("resid_mid.4") == iw.Site("resid_mid", 4)
    for s in ["resid_pre.1", "attn_out.2", "resid_mid.3", "mlp_in.4", "mlp_out.5", "resid_post.6"]:
        assert site_from_hook(hook_from_site(s)) == iw.Site.parse(s)
