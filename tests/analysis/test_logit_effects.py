"""logit_effects: the final norm handled per family, checked against the model's own modules."""

from __future__ import annotations

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.logit_effects import final_norm_map, logit_effects
from interp_widgets.dictionaries import SAE
from interp_widgets.errors import DictionaryError, FeatureError


def _oracle(model, v):
    """W_U @ final_norm(v) with the norm's own division undone: the module is the reference."""
    norm = model._module(model.spec.final_norm)
    w_u = model.module(iw.Site("logits")).weight
    with torch.no_grad():
        out = norm(v[None])[0]
        if isinstance(norm, torch.nn.LayerNorm):
            out = (out - norm.bias) * torch.sqrt(v.var(unbiased=False) + norm.eps)
        else:
            eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
            out = out * torch.sqrt(v.pow(2).mean() + eps)
        return w_u @ out


@pytest.mark.parametrize("family", ["llama", "gemma", "gpt2", "neox"])
def test_effects_match_the_final_norm_module(family):
    model = iw.load_model(f"tiny-{family}")
    gamma, centers = final_norm_map(model)
    assert centers == (family in ("gpt2", "neox"))
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    df = logit_effects(v, model, k=model.d_vocab)
    eff = torch.zeros(model.d_vocab)
    eff[torch.tensor(df.token_id.to_numpy()[: model.d_vocab])] = torch.tensor(
        df.effect.to_numpy()[: model.d_vocab])
    torch.testing.assert_close(eff, _oracle(model, v), rtol=1e-3, atol=1e-4)


def test_table_shape_and_order(tiny_llama):
    sae = SAE.random(d_in=64, n_features=16, site="resid_post.3", seed=4, name="s")
    df = logit_effects(sae[2], tiny_llama, k=5)
    assert list(df.columns) == ["direction", "rank", "token", "token_id", "effect"]
    assert df.direction.tolist() == ["up"] * 5 + ["down"] * 5
    assert df["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    up, down = df[df.direction == "up"].effect.to_numpy(), df[df.direction == "down"].effect.to_numpy()
    assert (up[:-1] >= up[1:]).all() and (down[:-1] <= down[1:]).all() and up[-1] > down[0]
    assert df.attrs["feature"] == "s#2" and df.attrs["site"] == "resid_post.3"
    assert df.token.iloc[0] == tiny_llama.tokenizer.decode([int(df.token_id.iloc[0])])


def test_a_token_unembedding_direction_promotes_that_token(tiny_llama):
    gamma, _ = final_norm_map(tiny_llama)
    w_u = tiny_llama.hf.lm_head.weight.detach()
    for t in (5, 77, 300):
        d = iw.Direction(w_u[t] / gamma, "resid_post.3", label=f"token {t}")
        df = logit_effects(d, tiny_llama, k=1)
        assert int(df.token_id.iloc[0]) == t


def test_neurons_and_directions_are_accepted(tiny_gpt2):
    nb = iw.neuron_basis(tiny_gpt2, [1])[1]
    df = logit_effects(nb[3], tiny_gpt2, k=3)
    assert len(df) == 6 and df.attrs["site"] == "mlp_out.1"


def test_bad_inputs(tiny_llama, tiny_gpt2):
    with pytest.raises(DictionaryError, match="32 dimensions.*d_model=64"):
        logit_effects(torch.randn(32), tiny_llama)
    with pytest.raises(DictionaryError, match="d_model=32"):
        logit_effects(SAE.random(d_in=64, n_features=4, site="resid_post.0")[1], tiny_gpt2)
    with pytest.raises(FeatureError, match="NaN"):
        logit_effects(torch.full((64,), float("nan")), tiny_llama)
    with pytest.raises(FeatureError, match="k must be"):
        logit_effects(torch.randn(64), tiny_llama, k=0)
    with pytest.raises(FeatureError, match="needs a feature"):
        logit_effects("Paris", tiny_llama)
    with pytest.raises(FeatureError, match="out of range"):
        logit_effects(SAE.random(d_in=64, n_features=4, site="resid_post.0")[4], tiny_llama)


def _measured_vs_predicted(model, v, prompt):
    """Add eps * v (made orthogonal to the residual, so the final norm's scale does not move to
    first order) at the last block's output in a real trace; compare the logit change with
    effect / rms(x) (RMSNorm models)."""
    site = f"resid_post.{model.n_layers - 1}"
    logits, cache = model.run_with_cache([prompt], [site])
    x = cache[site][0, -1]
    v = v - (v @ x) / (x @ x) * x
    eps = 0.01 * float(x.norm()) / float(v.norm())  # small: second-order terms stay tiny
    toks = model.tokenize([prompt])
    with torch.no_grad():
        with model.trace(toks.as_dict()):
            h = model.read(site)
            h[:, -1] += eps * v
            model.write(site, h)
            out = model.read("logits").save()
    measured = (getattr(out, "value", out)[0, -1] - logits[0, -1]) / eps
    norm = model._module(model.spec.final_norm)
    rms = torch.sqrt(x.pow(2).mean() + norm.variance_epsilon)
    df = logit_effects(v, model, k=model.d_vocab)
    pred = torch.zeros(model.d_vocab)
    n = model.d_vocab
    pred[torch.tensor(df.token_id.to_numpy()[:n])] = torch.tensor(df.effect.to_numpy()[:n])
    return measured, pred / rms


def test_effects_predict_real_logit_changes(tiny_llama):
    v = torch.randn(64, generator=torch.Generator().manual_seed(3))
    measured, predicted = _measured_vs_predicted(tiny_llama, v, "The cat sat on the mat")
    assert float((measured - predicted).norm() / predicted.norm()) < 0.02


@pytest.mark.smollm
def test_smollm_effects_predict_real_logit_changes(smollm):
    gamma, _ = final_norm_map(smollm)
    paris = smollm.tokenizer(" Paris")["input_ids"][0]
    v = smollm.hf.lm_head.weight[paris].detach() / gamma
    measured, predicted = _measured_vs_predicted(smollm, v, "My favourite city is")
    err = (measured - predicted).norm() / predicted.norm()
    assert err < 0.02, err
    assert int(measured.argmax()) == int(predicted.argmax())
