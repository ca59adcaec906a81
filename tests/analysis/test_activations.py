"""feature_activations: batch independence, sparse storage, sinks, reconstruction, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.activations import FeatureActivations, feature_activations
from interp_widgets.dictionaries import SAE, Transcoder, TranscoderSet
from interp_widgets.dictionaries.base import mark_sinks
from interp_widgets.errors import DictionaryError, FeatureError, PromptError, SiteError

PROMPTS = [
    "The cat sat on the mat while the dog ran in the park",
    "Hello",
    "The capital of France is Paris and the capital of Japan is Tokyo",
    "Two plus three is five",
    "def main(): return 42",
]


def _dicts(model):
    sae = SAE.random(d_in=64, n_features=200, site="resid_post.2", architecture="jumprelu", seed=1,
                     metadata={"model": model.name}, name="sae2")
    with torch.no_grad():
        sae.b_enc.fill_(-0.1)
        sae.threshold.fill_(0.05)
    topk = SAE.random(d_in=64, n_features=300, site="resid_mid.1", architecture="topk", k=7, seed=2,
                      apply_b_dec_to_input=True, name="topk1")
    tc = Transcoder.random(d_in=64, n_features=150, layer=3, skip=True, seed=3, name="tc3")
    with torch.no_grad():
        tc.W_skip.normal_(0, 0.02)
    return [sae, topk, TranscoderSet({3: tc}), iw.neuron_basis(model, [0])]


@pytest.fixture(scope="module")
def llama_acts(tiny_llama):
    return feature_activations(tiny_llama, _dicts(tiny_llama), PROMPTS, batch_size=2)


def test_batched_equals_one_by_one(tiny_llama, llama_acts):
    dicts = list(llama_acts.dictionaries.values())
    assert llama_acts.dictionary_names == ("sae2", "topk1", "tc3", "neurons.0")
    for i, p in enumerate(PROMPTS):
        single = feature_activations(tiny_llama, dicts, [p])
        assert single.str_tokens[0] == llama_acts.str_tokens[i]
        for name in llama_acts.dictionary_names:
            torch.testing.assert_close(llama_acts.dense(name, prompt=i), single.dense(name),
                                       rtol=1e-5, atol=1e-5)
    # another batch size and another prompt order give the same activations
    perm = [3, 0, 4, 2, 1]
    other = feature_activations(tiny_llama, dicts, [PROMPTS[i] for i in perm], batch_size=3)
    for j, i in enumerate(perm):
        for name in llama_acts.dictionary_names:
            torch.testing.assert_close(other.dense(name, prompt=j), llama_acts.dense(name, prompt=i),
                                       rtol=1e-5, atol=1e-5)


def test_activations_match_the_dictionaries_on_cached_sites(tiny_llama, llama_acts):
    """An independent reference: run_with_cache on one prompt, then encode by hand."""
    sae, topk = llama_acts.dictionaries["sae2"], llama_acts.dictionaries["topk1"]
    _, cache = tiny_llama.run_with_cache([PROMPTS[2]], ["resid_mid.1", "resid_post.2"])
    with torch.no_grad():
        torch.testing.assert_close(llama_acts.dense("sae2", prompt=2), sae.encode(cache["resid_post.2"][0]),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(llama_acts.dense("topk1", prompt=2), topk.encode(cache["resid_mid.1"][0]),
                                   rtol=1e-5, atol=1e-5)
    nnz = (llama_acts.dense("topk1", prompt=2) != 0).sum(-1)
    assert int(nnz.max()) <= 7


def test_remote_local_gives_the_same_result(tiny_llama):
    remote = iw.load_model("tiny-llama", remote="local")
    sae = SAE.random(d_in=64, n_features=64, site="resid_post.1", seed=5)
    a = feature_activations(remote, [sae, iw.neuron_basis(remote, [2])], PROMPTS[:3])
    b = feature_activations(tiny_llama, [sae, iw.neuron_basis(tiny_llama, [2])], PROMPTS[:3])
    for name in a.dictionary_names:
        for p in range(3):
            torch.testing.assert_close(a.dense(name, p), b.dense(name, p), rtol=1e-5, atol=1e-5)


def test_forward_stops_after_the_last_needed_site(tiny_llama):
    calls = []
    layers = tiny_llama.hf.model.layers
    handles = [layers[i].register_forward_hook(lambda *a, i=i: calls.append(i)) for i in (0, 2)]
    try:
        feature_activations(tiny_llama, SAE.random(d_in=64, n_features=32, site="resid_post.1"),
                            PROMPTS[:2])
        assert calls == [0]  # layer 0 ran, layer 2 never did
        calls.clear()
        feature_activations(tiny_llama, SAE.random(d_in=64, n_features=32, site="resid_post.3"),
                            PROMPTS[:2])
        assert calls == [0, 2]
    finally:
        for h in handles:
            h.remove()


def test_sparse_storage_and_queries(llama_acts):
    acts = llama_acts
    assert isinstance(acts, FeatureActivations)
    assert acts.n_prompts == 5 and acts.n_tokens == sum(len(t) for t in acts.token_ids)
    sp = acts.sparse["sae2"]
    assert sp.nnz == int((np.concatenate([acts.dense("sae2", p).numpy() for p in range(5)]) != 0).sum())
    dense0 = acts.dense("sae2", prompt=0).numpy()
    # top_features: sorted, k rows, right values
    top = acts.top_features(-1, k=4, prompt=0, dictionary="sae2")
    assert list(top.columns) == ["dictionary", "feature", "activation", "label"] and len(top) == 4
    assert np.all(np.diff(top.activation.to_numpy()) <= 0)
    np.testing.assert_allclose(top.activation.to_numpy(), np.sort(dense0[-1])[::-1][:4], rtol=1e-6)
    # all dictionaries at once: mixed table
    assert set(acts.top_features(3, k=50, prompt=0).dictionary) >= {"sae2", "neurons.0"}
    # feature_values is the dense column; Feature objects, (name, i) and "name#i" all work
    f = int(top.feature.iloc[0])
    sae = acts.dictionaries["sae2"]
    np.testing.assert_array_equal(acts.feature_values(sae[f], prompt=0), dense0[:, f])
    np.testing.assert_array_equal(acts.feature_values(("sae2", f), prompt=0), dense0[:, f])
    np.testing.assert_array_equal(acts.feature_values(f"sae2#{f}", prompt=0), dense0[:, f])
    # top_tokens leaves the sinks out unless asked
    tt = acts.top_tokens(sae[f], k=100)
    assert not tt.is_sink.any() and (tt.position > 0).all()
    assert np.all(np.diff(tt.activation.to_numpy()) <= 0)
    with_sinks = acts.top_tokens(sae[f], k=100, include_sinks=True)
    assert len(with_sinks) >= len(tt)
    # max_per_feature over non-sink tokens
    allx = np.concatenate([acts.dense("sae2", p).numpy()[1:] for p in range(5)])
    np.testing.assert_allclose(acts.max_per_feature("sae2"), np.maximum(allx.max(0), 0), rtol=1e-6)
    # long table
    df = acts.to_pandas()
    assert list(df.columns) == ["prompt", "position", "token", "dictionary", "feature", "activation",
                                "label", "is_sink"]
    assert len(df) == sum(s.nnz for s in acts.sparse.values())
    row = df[(df.dictionary == "sae2") & (df.prompt == 0)].iloc[0]
    assert row.token == acts.str_tokens[0][row.position]
    assert "sink" in repr(acts) and "sae2" in repr(acts)


def test_save_and_load(tmp_path, llama_acts):
    llama_acts.dictionaries["sae2"].set_label(1, "one", save=False)
    llama_acts.save(tmp_path / "run")
    back = FeatureActivations.load(tmp_path / "run")
    assert back.str_tokens == llama_acts.str_tokens and back.is_sink == llama_acts.is_sink
    assert back.dictionary_names == llama_acts.dictionary_names
    for name in back.dictionary_names:
        for p in range(back.n_prompts):
            torch.testing.assert_close(back.dense(name, p), llama_acts.dense(name, p))
    assert back.reconstruction["sae2"] == llama_acts.reconstruction["sae2"]
    assert back.dictionaries["sae2"].labels[1] == "one"
    live = FeatureActivations.load(tmp_path / "run", dictionaries=llama_acts.dictionaries)
    assert live.top_tokens(llama_acts.dictionaries["sae2"][1]).shape[1] == 5
    (tmp_path / "run" / "activations.safetensors").write_bytes(b"junk")
    with pytest.raises(DictionaryError, match="truncated or corrupted"):
        FeatureActivations.load(tmp_path / "run")


def _hook_counts(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.hf.modules())


def test_interrupt_leaves_the_model_clean(tiny_llama):
    class Interrupting(SAE):
        calls = 0

        def encode(self, x):
            type(self).calls += 1
            if type(self).calls == 2:  # second batch: as if the user pressed stop
                raise KeyboardInterrupt
            return super().encode(x)

    sae = Interrupting(d_in=64, n_features=16, site="resid_post.1")
    before = _hook_counts(tiny_llama)
    reference = feature_activations(tiny_llama, SAE.random(d_in=64, n_features=16, site="resid_post.1",
                                                           seed=4), PROMPTS)
    with pytest.raises(KeyboardInterrupt):
        feature_activations(tiny_llama, sae, PROMPTS, batch_size=2)
    assert _hook_counts(tiny_llama) == before
    again = feature_activations(tiny_llama, SAE.random(d_in=64, n_features=16, site="resid_post.1",
                                                       seed=4), PROMPTS)
    for p in range(len(PROMPTS)):
        torch.testing.assert_close(again.dense(prompt=p), reference.dense(prompt=p))


def test_labels_flow_into_tables(tiny_llama):
    sae = SAE.random(d_in=64, n_features=16, site="resid_post.0", seed=9)
    sae.set_label(3, "three")
    acts = feature_activations(tiny_llama, sae, ["The cat sat on the mat"])
    df = acts.to_pandas()
    assert set(df[df.feature == 3].label) <= {"three"}
    top = acts.top_features(2, k=16)
    assert all((lab == "three") == (f == 3) for f, lab in zip(top.feature, top.label, strict=True))


def test_sinks_are_marked(llama_acts):
    for row in llama_acts.is_sink:
        assert row[0] is True
    assert "position 0" in llama_acts.sink_rule
    # the norm rule on its own
    assert mark_sinks(torch.tensor([5.0, 1.0, 1.2, 50.0, 0.9]), 10.0) == [True, False, False, True, False]
    assert mark_sinks(torch.tensor([5.0]), 10.0) == [True]


def test_reconstruction_quality(tiny_llama, llama_acts):
    q = llama_acts.reconstruction
    assert q["neurons.0"].fvu < 1e-8 and q["neurons.0"].error_norm < 1e-5
    assert q["neurons.0"].site == "mlp_out.0" and q["tc3"].site == "mlp_out.3"
    # SAE FVU by hand over the non-sink tokens
    sae, tc = llama_acts.dictionaries["sae2"], llama_acts.dictionaries["tc3"]
    _, cache = tiny_llama.run_with_cache(PROMPTS, ["resid_post.2", "mlp_in.3", "mlp_out.3"])
    m = cache.attention_mask.bool().clone()
    m[:, 0] = False
    with torch.no_grad():
        x = cache["resid_post.2"][m].double()
        r = sae.reconstruct(x.float()).double()
        fvu = ((x - r) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        y = cache["mlp_out.3"][m].double()
        yhat = tc.reconstruct(cache["mlp_in.3"][m]).double()
        enorm = (y - yhat).norm(dim=-1).mean()
    assert q["sae2"].fvu == pytest.approx(float(fvu), rel=1e-4)
    assert q["tc3"].error_norm == pytest.approx(float(enorm), rel=1e-4)
    assert q["topk1"].l0 == pytest.approx(7.0)
    assert set(llama_acts.quality().dictionary) == set(llama_acts.dictionary_names)


def test_gpt2_transcoder_set_named_by_mapping(tiny_gpt2):
    acts = feature_activations(tiny_gpt2, {"mlp": iw.neuron_basis(tiny_gpt2)}, PROMPTS[:2])
    assert acts.dictionary_names == ("mlp.0", "mlp.1")
    assert acts.reconstruction["mlp.1"].fvu < 1e-8


def test_bad_inputs(tiny_llama):
    sae = SAE.random(d_in=64, n_features=16, site="resid_post.0")
    with pytest.raises(PromptError, match="empty"):
        feature_activations(tiny_llama, sae, [])
    with pytest.raises(PromptError, match="empty or whitespace"):
        feature_activations(tiny_llama, sae, ["ok", "  "])
    with pytest.raises(PromptError, match="more than the limit of 256"):
        feature_activations(tiny_llama, sae, ["cat " * 400])
    with pytest.raises(PromptError, match="batch_size"):
        feature_activations(tiny_llama, sae, ["ok"], batch_size=0)
    with pytest.raises(SiteError, match="layers 0-3"):
        feature_activations(tiny_llama, SAE.random(d_in=64, n_features=8, site="resid_post.7"), ["ok"])
    with pytest.raises(DictionaryError, match="d_in=32.*d_model=64"):
        feature_activations(tiny_llama, SAE.random(d_in=32, n_features=8, site="resid_post.0"), ["ok"])
    with pytest.raises(DictionaryError, match="'tiny-gpt2'.*'tiny-llama'"):
        feature_activations(tiny_llama, SAE.random(d_in=64, n_features=8, site="resid_post.0",
                                                   metadata={"model": "tiny-gpt2"}), ["ok"])
    with pytest.raises(DictionaryError, match="no dictionaries"):
        feature_activations(tiny_llama, [], ["ok"])
    with pytest.raises(DictionaryError, match="both named"):
        feature_activations(tiny_llama, [sae, SAE.random(d_in=64, n_features=8, site="resid_post.1",
                                                         name=sae.name)], ["ok"])
    acts = feature_activations(tiny_llama, [sae, iw.neuron_basis(tiny_llama, [1])], ["The cat sat"])
    with pytest.raises(FeatureError, match="0-15"):
        acts.feature_values((sae.name, 16))
    with pytest.raises(DictionaryError, match="several dictionaries"):
        acts.max_per_feature()
    with pytest.raises(DictionaryError, match="not in this result"):
        acts.feature_values(SAE.random(d_in=64, n_features=16, site="resid_post.0", name="other")[0])
    with pytest.raises(PromptError, match="prompts 0-0"):
        acts.dense(sae.name, prompt=3)
    with pytest.raises(PromptError, match="tokens 0-"):
        acts.top_features(99)


@pytest.mark.smollm
def test_smollm_sink_and_exact_neurons(smollm):
    sae = SAE.random(d_in=576, n_features=512, site="resid_post.12", architecture="topk", k=16,
                     metadata={"model": smollm.name})
    acts = feature_activations(smollm, [sae, iw.neuron_basis(smollm, [12])],
                               ["The Eiffel Tower is in the city of", "Hello there, how are you?"])
    for row in acts.is_sink:
        assert row[0] and not any(row[1:])  # position 0 (norm ~24,000) and nothing else
    assert acts.reconstruction["neurons.12"].relative_error < 1e-5
    top = acts.top_tokens(sae[int(acts.top_features(-1, k=1, dictionary=sae.name).feature[0])])
    assert (top.position > 0).all()
