"""NeuronBasis: the MLP's own neurons as an exact transcoder, for every supported family."""

from __future__ import annotations

import pytest
import torch

import interp_widgets as iw
from interp_widgets.dictionaries import Feature, FeatureDictionary, TranscoderSet
from interp_widgets.dictionaries.neurons import NeuronBasis, neuron_basis
from interp_widgets.errors import DictionaryError, FeatureError, SiteError

PROMPTS = ["The cat sat on the mat while the dog ran", "Hello world"]
FAMILIES = ["llama", "gpt2", "qwen2", "mistral", "gemma", "gemma2", "neox"]


def _mlp_io(model, layers):
    sites = [f"mlp_in.{L}" for L in layers] + [f"mlp_out.{L}" for L in layers]
    _, cache = model.run_with_cache(PROMPTS, sites)
    mask = cache.attention_mask.bool()
    return {L: (cache[f"mlp_in.{L}"][mask], cache[f"mlp_out.{L}"][mask]) for L in layers}


@pytest.mark.parametrize("family", FAMILIES)
def test_neuron_basis_reconstructs_mlp_out_exactly(family):
    model = iw.load_model(f"tiny-{family}")
    tset = iw.neuron_basis(model)
    assert isinstance(tset, TranscoderSet) and tset.layers == list(range(model.n_layers))
    for layer, (x, y) in _mlp_io(model, tset.layers).items():
        nb = tset[layer]
        assert str(nb.site) == f"mlp_in.{layer}" and str(nb.out_site) == f"mlp_out.{layer}"
        with torch.no_grad():
            recon = nb.reconstruct(x)
            f = nb.encode(x)
        assert f.shape == (x.shape[0], nb.n_features)
        torch.testing.assert_close(recon, y, rtol=1e-5, atol=1e-5)
        # decode is the linear map f @ W_dec + b_dec (Gemma-2: then its post-MLP norm)
        with torch.no_grad():
            lin = f @ nb.W_dec + nb.b_dec
            if family == "gemma2":
                w = nb.out_norm.weight
                lin = (1.0 + w) * lin * nb.out_norm_scale(f)
        torch.testing.assert_close(lin, y, rtol=1e-4, atol=1e-5)


def test_gpt2_conv1d_layout(tiny_gpt2):
    nb = NeuronBasis(tiny_gpt2, 1)
    mlp = tiny_gpt2.hf.transformer.h[1].mlp
    # Conv1D stores [in, out]: W_enc is the weight itself, W_dec too (no transpose)
    assert nb.W_enc.shape == (tiny_gpt2.d_model, nb.n_features)
    assert nb.W_dec.shape == (nb.n_features, tiny_gpt2.d_model)
    assert nb.W_enc.data_ptr() == mlp.c_fc.weight.data_ptr()
    x = torch.randn(5, tiny_gpt2.d_model)
    with torch.no_grad():
        want = torch.nn.functional.gelu(x @ mlp.c_fc.weight + mlp.c_fc.bias, approximate="tanh")
        torch.testing.assert_close(nb.encode(x), want)
        torch.testing.assert_close(nb.activate(nb.pre_acts(x)), want)
        torch.testing.assert_close(nb[7].direction, mlp.c_proj.weight[7])


def test_gated_basis_freezes_the_gate_linearly(tiny_llama):
    nb = NeuronBasis(tiny_llama, 2)
    mlp = tiny_llama.hf.model.layers[2].mlp
    assert nb.gated and nb.W_gate.shape == (tiny_llama.d_model, nb.n_features)
    # views, not copies: the basis shares storage with the model
    assert nb.W_dec.data_ptr() == mlp.down_proj.weight.data_ptr()
    assert nb.W_enc.data_ptr() == mlp.up_proj.weight.data_ptr()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, tiny_llama.d_model, generator=g)
    dx = torch.randn(3, tiny_llama.d_model, generator=g)
    with torch.no_grad():
        gate = nb.gate_values(x0)
        torch.testing.assert_close(nb.frozen_encode(x0, gate), nb.encode(x0))
        # with the gate frozen the activation is linear in x
        delta = nb.frozen_encode(x0 + dx, gate) - nb.frozen_encode(x0, gate)
        torch.testing.assert_close(delta, gate * (dx @ nb.W_enc + nb.b_enc), rtol=1e-4, atol=1e-5)
        # but the true encode is not (the gate moves)
        assert not torch.allclose(nb.encode(x0 + dx) - nb.encode(x0), delta, atol=1e-4)
    with pytest.raises(DictionaryError, match="gate"):
        nb.activate(torch.zeros(nb.n_features))


def test_neuron_basis_is_a_feature_dictionary(tiny_llama):
    nb = iw.NeuronBasis(tiny_llama, 1)
    assert isinstance(nb, FeatureDictionary)
    assert nb.n_features == 128 and nb.layer == 1 and nb.W_skip is None and nb.threshold is None
    feat = nb[5]
    assert isinstance(feat, Feature) and feat.site == nb.out_site
    torch.testing.assert_close(feat.direction, tiny_llama.hf.model.layers[1].mlp.down_proj.weight[:, 5])
    nb.set_label(5, "cat neuron")
    assert nb[5].label == "cat neuron" and "cat neuron" in repr(nb[5])
    assert torch.equal(nb.skip(torch.ones(2, 64)), torch.zeros(2, 64))
    nb.check_model(tiny_llama)
    # the basis never registers the model's weights as its own
    assert list(nb.parameters()) == [] and nb.state_dict() == {}


def test_neuron_basis_bad_inputs(tiny_llama, tiny_gpt2):
    nb = NeuronBasis(tiny_llama, 0)
    with pytest.raises(FeatureError, match="0-127"):
        nb[128]
    with pytest.raises(FeatureError):
        nb[-1]
    with pytest.raises(SiteError, match="layers 0-3"):
        NeuronBasis(tiny_llama, 4)
    with pytest.raises(DictionaryError, match="last dim 64"):
        nb.encode(torch.zeros(2, 32))
    with pytest.raises(DictionaryError, match="128 neurons"):
        nb.decode(torch.zeros(2, 5))
    with pytest.raises(DictionaryError, match="iw.neuron_basis"):
        nb.save("/tmp/never")
    with pytest.raises(DictionaryError, match="layers is empty"):
        neuron_basis(tiny_llama, [])
    with pytest.raises(DictionaryError, match="'tiny-llama'.*'tiny-gpt2'"):
        nb.check_model(tiny_gpt2)


def test_neuron_basis_subset_and_negative_layers(tiny_llama):
    tset = neuron_basis(tiny_llama, [1, -1])
    assert tset.layers == [1, 3]
    with pytest.raises(DictionaryError, match="available layers: 1, 3"):
        tset[2]


@pytest.mark.smollm
def test_neuron_basis_exact_on_smollm(smollm):
    layers = [0, 12, 29]
    tset = neuron_basis(smollm, layers)
    assert tset[12].n_features == 1536 and tset[12].gated
    for layer, (x, y) in _mlp_io(smollm, layers).items():
        with torch.no_grad():
            recon = tset[layer].reconstruct(x)
        # float precision: relative to the output's scale
        err = (recon - y).norm() / y.norm()
        assert err < 1e-6, (layer, err)
