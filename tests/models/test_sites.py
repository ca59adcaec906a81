"""The site map: every site of every supported family resolves, and means what its name says."""

from __future__ import annotations

import pytest
import torch
from model_helpers import MLP_NORM, block, tiny

import interp_widgets as iw
from interp_widgets.errors import InterpWidgetsError, SiteError
from interp_widgets.models import GLOBAL_SITES, LAYER_SITES, SUPPORTED_FAMILIES, Site
from interp_widgets.models.tiny import TINY_FAMILIES


def _mlp_out_of(model, layer: int, x: torch.Tensor) -> torch.Tensor:
    """What the block adds to the residual for MLP input-to-norm ``x`` (independent of sites.py)."""
    fam = model.name.removeprefix("tiny-")
    b = block(model, layer)
    out = b.mlp(getattr(b, MLP_NORM.get(fam, "post_attention_layernorm"))(x))
    return b.post_feedforward_layernorm(out) if fam == "gemma2" else out


def _mlp_of(model, layer: int, x: torch.Tensor) -> torch.Tensor:
    fam = model.name.removeprefix("tiny-")
    b = block(model, layer)
    return b.post_feedforward_layernorm(b.mlp(x)) if fam == "gemma2" else b.mlp(x)


def test_every_tiny_family_is_a_supported_family():
    fams = {tiny(f).family for f in TINY_FAMILIES}
    assert fams == set(SUPPORTED_FAMILIES), "add a tiny model for each new family"


def test_every_site_resolves_and_caches_with_the_right_shape(tiny_any, prompts):
    m = tiny_any
    names = m.site_names
    assert set(names) >= {"resid_pre", "attn_out", "mlp_in", "mlp_out", "resid_post", "embed", "logits"}
    if not m.spec.parallel_residual:
        assert "resid_mid" in names
    every = [f"{n}.{L}" for L in range(m.n_layers) for n in names if n not in GLOBAL_SITES]
    for s in every + list(GLOBAL_SITES):
        assert isinstance(m.module(s), torch.nn.Module)
    logits, cache = m.run_with_cache(prompts, sites=["embed", *every])
    toks = m.tokenize(prompts)
    b, n = toks.input_ids.shape
    assert logits.shape == (b, n, m.d_vocab)
    assert set(cache) == {"embed", *every}
    for k, v in cache.items():
        assert v.shape == (b, n, m.d_model), k
        assert torch.isfinite(v).all(), k
        assert v.abs().max() > 0, f"{k} is all zeros: the accessor probably points at the wrong tensor"
    assert torch.equal(cache.attention_mask, toks.attention_mask)


def test_sites_mean_what_their_names_say(tiny_any, prompts):
    """resid_post.L == hidden_states[L+1]; resid_pre + attn_out + mlp_out == resid_post; ..."""
    m = tiny_any
    logits, cache = m.run_with_cache(prompts)  # every layer site
    toks = m.tokenize(prompts)
    with torch.no_grad():
        ref = m.hf(**toks.as_dict(), output_hidden_states=True)
    hs = ref.hidden_states
    assert torch.equal(logits, ref.logits)
    assert torch.equal(cache["resid_pre.0"], hs[0])
    for L in range(m.n_layers):
        pre, attn, mlp_out, post = (cache[f"{n}.{L}"] for n in ("resid_pre", "attn_out", "mlp_out", "resid_post"))
        torch.testing.assert_close(pre + attn + mlp_out, post, rtol=1e-5, atol=1e-5)
        if L < m.n_layers - 1:  # the last hidden state has the final norm applied
            assert torch.equal(post, hs[L + 1])
            assert torch.equal(cache[f"resid_pre.{L + 1}"], post)
        with torch.no_grad():
            if m.spec.parallel_residual:
                mlp_norm_in = pre
            else:
                mid = cache[f"resid_mid.{L}"]
                torch.testing.assert_close(mid, pre + attn, rtol=1e-5, atol=1e-5)
                mlp_norm_in = mid
            fam = m.name.removeprefix("tiny-")
            norm = getattr(block(m, L), MLP_NORM.get(fam, "post_attention_layernorm"))
            torch.testing.assert_close(cache[f"mlp_in.{L}"], norm(mlp_norm_in))
            torch.testing.assert_close(mlp_out, _mlp_of(m, L, cache[f"mlp_in.{L}"]))


def test_embed_is_the_token_embedding(tiny_any):
    m = tiny_any
    toks = m.tokenize("Hello world")
    _, cache = m.run_with_cache("Hello world", sites=["embed"])
    with torch.no_grad():
        ref = m.module("embed")(toks.input_ids)
    assert torch.equal(cache["embed"], ref)


def test_write_replaces_each_kind_of_site(tiny_any, prompts):
    m = tiny_any
    toks = m.tokenize(prompts)
    shape = (*toks.input_ids.shape, m.d_model)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(shape, generator=g)
    with torch.no_grad():
        # resid_post.0 := v  -> the next block reads v
        with m.trace(toks.as_dict()):
            m.write("resid_post.0", v)
            nxt = m.read("resid_pre.1").save()
        assert torch.equal(nxt, v)
        # mlp_out.1 := 0  -> resid_post.1 = resid_pre.1 + attn_out.1
        with m.trace(toks.as_dict()):
            pre = m.read("resid_pre.1").save()
            attn = m.read("attn_out.1").save()
            m.write("mlp_out.1", torch.zeros(shape))
            post = m.read("resid_post.1").save()
        torch.testing.assert_close(post, pre + attn)
        # mlp_in.1 := v  -> mlp_out.1 is the MLP of v
        with m.trace(toks.as_dict()):
            m.write("mlp_in.1", v)
            mo = m.read("mlp_out.1").save()
        torch.testing.assert_close(mo, _mlp_of(m, 1, v))
        # resid_pre.1 := v  -> attention and MLP add onto v
        with m.trace(toks.as_dict()):
            m.write("resid_pre.1", v)
            attn = m.read("attn_out.1").save()
            mo = m.read("mlp_out.1").save()
            post = m.read("resid_post.1").save()
        torch.testing.assert_close(post, v + attn + mo, rtol=1e-5, atol=1e-5)
        # logits := 0 -> the model's output is 0
        with m.trace(toks.as_dict()):
            m.write("logits", torch.zeros(*toks.input_ids.shape, m.d_vocab))
            out = m.nn.output.save()
        assert out.logits.abs().max() == 0


def test_write_resid_mid_moves_the_skip_connection_too(tiny_any, prompts):
    m = tiny_any
    if m.spec.parallel_residual:
        with pytest.raises(SiteError, match="parallel"):
            m.site("resid_mid.0")
        return
    toks = m.tokenize(prompts)
    v = torch.randn(*toks.input_ids.shape, m.d_model, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with m.trace(toks.as_dict()):
            m.write("resid_mid.1", v)
            post = m.read("resid_post.1").save()
        torch.testing.assert_close(post, v + _mlp_out_of(m, 1, v), rtol=1e-5, atol=1e-5)


def test_unknown_site_name_lists_the_valid_ones(tiny_llama):
    with pytest.raises(SiteError) as e:
        tiny_llama.site("resid_psot.1")
    msg = str(e.value)
    assert "'resid_psot'" in msg
    for name in LAYER_SITES:
        assert f"{name}.<layer>" in msg
    assert "embed" in msg and "logits" in msg
    # also a KeyError and an InterpWidgetsError, so either kind of handler catches it
    assert isinstance(e.value, KeyError) and isinstance(e.value, InterpWidgetsError)


def test_bad_layer_names_the_valid_range(tiny_llama, tiny_gpt2):
    with pytest.raises(SiteError, match=r"layer 4 does not exist: tiny-llama has layers 0-3"):
        tiny_llama.site("resid_post.4")
    with pytest.raises(SiteError, match=r"layers 0-1"):
        tiny_gpt2.site(("mlp_out", 7))
    with pytest.raises(SiteError, match=r"layer -3 does not exist"):
        tiny_gpt2.site("mlp_out.-3")
    with pytest.raises(SiteError, match=r"needs a layer: write 'resid_pre.<layer>' with layer in 0-3"):
        tiny_llama.site("resid_pre")
    with pytest.raises(SiteError, match="takes no layer"):
        tiny_llama.site("logits.3")


def test_negative_layers_count_from_the_end(tiny_llama):
    assert tiny_llama.site("resid_post.-1") == Site("resid_post", 3)
    assert tiny_llama.site(Site("attn_out", -4)) == Site("attn_out", 0)


@pytest.mark.parametrize("spec", ["resid post 3", "", "12", "resid_post.x", None, 3.0, ("resid_post", "1")])
def test_unparseable_sites_are_site_errors(spec):
    with pytest.raises(SiteError):
        Site.parse(spec)


def test_site_parse_forms_agree():
    assert Site.parse("resid_post.12") == Site("resid_post", 12) == Site.parse(("resid_post", 12))
    assert Site.parse(" mlp_in . 3 ") == Site("mlp_in", 3)
    assert str(Site("mlp_in", 3)) == "mlp_in.3" and str(Site.parse("embed")) == "embed"


def test_sites_sort_in_forward_order(tiny_llama):
    every = tiny_llama.sites()
    assert len(every) == tiny_llama.n_layers * len(LAYER_SITES)
    assert every[:6] == [Site(n, 0) for n in LAYER_SITES]
    keys = [s.order_key for s in [Site("embed"), *every, Site("logits")]]
    assert keys == sorted(keys)
    assert tiny_llama.sites(["resid_post"]) == [Site("resid_post", L) for L in range(4)]


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import BertConfig

    from interp_widgets.models.sites import family_spec

    with pytest.raises(iw.errors.ModelLoadError, match="'bert' has no site map yet; supported families: llama"):
        family_spec(BertConfig())
