"""Model conveniences: prompt checks, tokenization, run_with_cache, generate, load_model errors."""

from __future__ import annotations

import pytest
import torch
from model_helpers import PROMPTS, tiny

import interp_widgets as iw
from interp_widgets.errors import InterpWidgetsError, ModelLoadError, PromptError, SiteError
from interp_widgets.models import ActivationCache, Model, Site


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", r"prompt 0 is empty or whitespace"),
        (["ok", "   \n"], r"prompt 1 is empty or whitespace"),
        ([], r"prompt list is empty"),
        (["ok", 3], r"prompt 1 is a int, not a str"),
        (b"bytes", r"prompts must be a string or a list of strings, got bytes"),
        (42, r"got int"),
    ],
)
def test_bad_prompts_raise_prompt_errors_that_say_which(tiny_llama, bad, match):
    with pytest.raises(PromptError, match=match) as e:
        tiny_llama.run_with_cache(bad, sites=["resid_post.0"])
    assert isinstance(e.value, ValueError) and isinstance(e.value, InterpWidgetsError)
    with pytest.raises(PromptError):
        tiny_llama.generate(bad, max_new_tokens=2)


def test_over_long_prompt_names_the_context_length(tiny_llama):
    long = "Hello world " * 400
    with pytest.raises(PromptError, match=r"prompt 0 has \d+ tokens, more than the limit of 256 \(tiny-llama context 256\)"):
        tiny_llama.tokenize(long)
    # generate leaves room for the new tokens
    fits = " ".join(["Hello"] * 250)
    n = len(tiny_llama.tokenize(fits).input_ids[0])
    assert n <= 256
    with pytest.raises(PromptError, match="limit of"):
        tiny_llama.generate(fits, max_new_tokens=256 - n + 1)


def test_tokenize_pads_on_the_requested_side(tiny_llama):
    right = tiny_llama.tokenize(["Hello world, the cat sat", "Paris"])
    left = tiny_llama.tokenize(["Hello world, the cat sat", "Paris"], padding_side="left")
    n_short = right.lengths[1]
    assert right.lengths == left.lengths and right.lengths[0] > n_short
    assert right.attention_mask[1].tolist() == [1] * n_short + [0] * (right.input_ids.shape[1] - n_short)
    assert left.attention_mask[1].tolist() == [0] * (left.input_ids.shape[1] - n_short) + [1] * n_short
    assert torch.equal(right.input_ids[1, :n_short], left.input_ids[1, -n_short:])


def test_to_str_tokens_round_trips(tiny_llama, smollm):
    for m in (tiny_llama, smollm):
        text = "The Eiffel Tower is in the city of Paris"
        toks = m.to_str_tokens(text)
        assert "".join(toks) == text
        assert len(toks) == len(m.tokenize(text).input_ids[0])
    # SmolLM2 adds no BOS: the first token is the first word
    assert smollm.to_str_tokens("The Eiffel")[0] == "The"


def test_run_with_cache_is_independent_of_padding_and_batch(tiny_any):
    m = tiny_any
    sites = ["resid_pre.0", "attn_out.1", "mlp_in.1", "resid_post.1"]
    logits, cache = m.run_with_cache(PROMPTS, sites=sites)
    assert isinstance(cache, ActivationCache) and len(cache) == len(sites)
    for i, p in enumerate(PROMPTS):
        one_logits, one = m.run_with_cache(p, sites=sites)
        n = one_logits.shape[1]
        assert cache.attention_mask[i].sum() == n
        torch.testing.assert_close(logits[i, :n], one_logits[0], rtol=1e-4, atol=1e-5)
        for s in sites:
            torch.testing.assert_close(cache[s][i, :n], one[s][0], rtol=1e-4, atol=1e-5)


def test_run_with_cache_default_is_every_layer_site(tiny_gpt2):
    _, cache = tiny_gpt2.run_with_cache("Hello world")
    assert list(cache) == [str(s) for s in tiny_gpt2.sites()]
    assert cache["resid_post.1"] is cache[Site("resid_post", 1)] is cache[("resid_post", 1)]
    assert "resid_pre.0: (1, 3, 32)" in repr(cache) and "(12 sites)" in repr(cache)
    with pytest.raises(SiteError, match=r"site 'embed' was not cached; cached sites: resid_pre.0"):
        cache["embed"]


def test_run_with_cache_rejects_bad_sites_before_running(tiny_llama):
    with pytest.raises(SiteError, match="layers 0-3"):
        tiny_llama.run_with_cache("Hello", sites=["resid_post.9"])


def test_run_with_cache_leaves_no_hooks_behind(tiny_llama):
    before = tiny_llama.run_with_cache("Hello world", sites=["resid_post.3"])[0]
    with pytest.raises(SiteError):
        tiny_llama.run_with_cache("Hello world", sites=["resid_post.3", "bogus.1"])
    after = tiny_llama.run_with_cache("Hello world", sites=["resid_post.3"])[0]
    assert torch.equal(before, after)
    hooks = [
        (name, len(mod._forward_hooks) + len(mod._forward_pre_hooks))
        for name, mod in tiny_llama.hf.named_modules()
        if mod._forward_hooks or mod._forward_pre_hooks
    ]
    assert hooks == []


def test_generate_is_greedy_deterministic_and_batch_independent(tiny_any):
    m = tiny_any
    one_by_one = [m.generate(p, max_new_tokens=5)[0] for p in PROMPTS]
    together = m.generate(PROMPTS, max_new_tokens=5)
    assert together == one_by_one
    assert m.generate(PROMPTS[0], max_new_tokens=5) == one_by_one[:1]
    # greedy means: each new token is the argmax of the logits
    ids = m.tokenize(PROMPTS[0]).input_ids
    with torch.no_grad():
        for _ in range(5):
            nxt = m.hf(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    n = m.tokenize(PROMPTS[0]).input_ids.shape[1]
    assert one_by_one[0] == m.decode(ids[0, n:])


def test_generate_passes_sampling_options_through(tiny_llama):
    torch.manual_seed(0)
    a = tiny_llama.generate(["Hello"] * 4, max_new_tokens=8, do_sample=True, temperature=5.0)
    assert len(set(a)) > 1, "sampling at temperature 5 should not repeat itself 4 times"
    with pytest.raises(PromptError, match="max_new_tokens must be a positive int, got 0"):
        tiny_llama.generate("Hello", max_new_tokens=0)


def test_model_attributes_and_repr(tiny_llama, tiny_gpt2):
    assert (tiny_llama.n_layers, tiny_llama.d_model, tiny_llama.n_ctx) == (4, 64, 256)
    assert (tiny_gpt2.n_layers, tiny_gpt2.d_model, tiny_gpt2.family) == (2, 32, "gpt2")
    assert tiny_llama.d_vocab == len(tiny_llama.tokenizer)
    assert repr(tiny_llama) == (
        f"Model('tiny-llama', family=llama, n_layers=4, d_model=64, d_vocab={tiny_llama.d_vocab})"
    )
    assert isinstance(tiny_llama, Model) and iw.Model is Model
    assert type(tiny_llama.nn).__name__ == "TransformersModel"


def test_tiny_models_are_deterministic():
    a, b = iw.load_model("tiny-llama"), iw.load_model("tiny-llama")
    assert a is not b
    for (na, pa), (nb, pb) in zip(a.hf.named_parameters(), b.hf.named_parameters(), strict=True):
        assert na == nb and torch.equal(pa, pb)
    assert a.generate("Hello", max_new_tokens=4) == b.generate("Hello", max_new_tokens=4)


def test_dtype_and_device_options(tiny_llama):
    m = iw.load_model("tiny-llama", dtype=torch.bfloat16, device="cpu")
    assert next(m.hf.parameters()).dtype == torch.bfloat16
    logits, cache = m.run_with_cache("Hello world", sites=["resid_post.0"])
    assert cache["resid_post.0"].dtype == torch.bfloat16
    ref = tiny_llama.run_with_cache("Hello world", sites=["resid_post.0"])[0]
    assert (logits.float() - ref).abs().max() < 0.1 * ref.abs().max()


@pytest.mark.parametrize(
    "name, match",
    [
        ("tiny-bert", r"unknown tiny model 'tiny-bert': choose one of tiny-llama, tiny-gpt2"),
        ("/no/such/folder", r"model '/no/such/folder' not found: pass None \(embedded default\), a tiny model"),
        ("meta-llama/Llama-3.2-1B", r"downloads are not done at run time"),
    ],
)
def test_load_model_errors_name_the_fix(name, match):
    with pytest.raises(ModelLoadError, match=match):
        iw.load_model(name)


def test_load_model_rejects_bad_remote_values():
    with pytest.raises(ModelLoadError, match=r"remote must be False, True or 'local', got 'ndif'"):
        iw.load_model("tiny-llama", remote="ndif")


def test_model_layer_reuses_tiny_cache():
    assert tiny("llama") is tiny("llama")


def test_interrupted_trace_leaves_the_model_clean(tiny_llama):
    """Ctrl-C in the middle of a forward pass: no hooks or edits stay on the model."""
    before = tiny_llama.run_with_cache(PROMPTS, sites=["resid_post.3"])

    def interrupt(*_):
        raise KeyboardInterrupt

    handle = tiny_llama.hf.model.layers[2].register_forward_pre_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny_llama.run_with_cache(PROMPTS, sites=["resid_pre.1", "resid_post.3"])
        with pytest.raises(KeyboardInterrupt):
            tiny_llama.generate(PROMPTS, max_new_tokens=3)
    finally:
        handle.remove()
    leftover = [n for n, mod in tiny_llama.hf.named_modules() if mod._forward_hooks or mod._forward_pre_hooks]
    assert leftover == []
    after = tiny_llama.run_with_cache(PROMPTS, sites=["resid_post.3"])
    assert torch.equal(before[0], after[0])
    assert torch.equal(before[1]["resid_post.3"], after[1]["resid_post.3"])
