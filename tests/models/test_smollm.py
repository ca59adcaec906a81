"""The embedded default (SmolLM2-135M-Instruct): real behaviour through our site map."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.smollm

PROMPT = "The Eiffel Tower is in the city of"


def test_default_model_shape(smollm):
    assert smollm.name == "SmolLM2-135M-Instruct" and smollm.family == "llama"
    assert (smollm.n_layers, smollm.d_model, smollm.d_vocab) == (30, 576, 49152)
    assert next(smollm.hf.parameters()).dtype == torch.float32
    # no BOS token: the prompt's first word is position 0
    assert smollm.tokenize("Hello").input_ids.shape == (1, 1)


def test_greedy_continuation_knows_paris(smollm):
    out = smollm.generate(PROMPT, max_new_tokens=4)
    assert " Paris" in out[0]
    assert smollm.generate([PROMPT, "Hello, my name is"], max_new_tokens=4)[0] == out[0]


def test_sites_match_transformers_hidden_states(smollm):
    logits, cache = smollm.run_with_cache(PROMPT)  # every site of every layer: one trace
    toks = smollm.tokenize(PROMPT)
    with torch.no_grad():
        ref = smollm.hf(**toks.as_dict(), output_hidden_states=True)
    assert torch.equal(logits, ref.logits)
    assert logits[0, -1].argmax() == smollm.tokenizer.encode(" Paris")[0]
    assert torch.equal(cache["resid_pre.0"], ref.hidden_states[0])
    for L in range(smollm.n_layers - 1):  # the last hidden state has the final norm applied
        assert torch.equal(cache[f"resid_post.{L}"], ref.hidden_states[L + 1]), L
    final = smollm.hf.model.norm(cache[f"resid_post.{smollm.n_layers - 1}"])
    torch.testing.assert_close(final, ref.hidden_states[-1])


def test_residual_stream_is_the_sum_of_its_parts(smollm):
    _, cache = smollm.run_with_cache(PROMPT)
    for L in range(smollm.n_layers):
        pre, attn, mid, mlp_in, mlp_out, post = (
            cache[f"{n}.{L}"] for n in ("resid_pre", "attn_out", "resid_mid", "mlp_in", "mlp_out", "resid_post")
        )
        # position 0's residual norm is ~24,000: compare at float32 resolution of that scale
        torch.testing.assert_close(pre + attn, mid, rtol=1e-5, atol=1e-2)
        torch.testing.assert_close(pre + attn + mlp_out, post, rtol=1e-5, atol=1e-2)
        with torch.no_grad():
            norm = smollm.hf.model.layers[L].post_attention_layernorm(mid)
        torch.testing.assert_close(mlp_in, norm, rtol=1e-5, atol=1e-4)


def test_position_zero_is_an_attention_sink(smollm):
    """Facts the analysis layer relies on (it leaves position 0 out of statistics)."""
    _, cache = smollm.run_with_cache(PROMPT, sites=["resid_post.12"])
    norms = cache["resid_post.12"][0].norm(dim=-1)
    assert norms[0] > 50 * norms[1:].max()
