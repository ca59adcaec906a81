"""The logit lens decodes each layer's residual with the model's own final norm and unembedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp_widgets.analysis.logit_lens import logit_lens
from interp_widgets.errors import PromptError, SiteError


def test_last_layer_matches_the_models_logits(tiny_llama):
    lens = logit_lens(tiny_llama, "Hello world, this is", k=4)
    logits, _ = tiny_llama.run_with_cache("Hello world, this is", sites=[])
    probs = logits[0].float().softmax(-1)
    top_p, top_i = probs.topk(4, dim=-1)
    assert lens.top_ids.shape == (tiny_llama.n_layers, len(lens.tokens), 4)
    np.testing.assert_array_equal(lens.top_ids[-1], top_i.numpy())
    np.testing.assert_allclose(lens.top_probs[-1], top_p.numpy(), atol=1e-5)
    # final_prob at the last layer is the top-1 probability by definition
    np.testing.assert_allclose(lens.final_prob[-1], top_p[:, 0].numpy(), atol=1e-5)
    assert lens.tokens == tiny_llama.to_str_tokens("Hello world, this is")


def test_earlier_layers_differ_and_are_distributions(tiny_gpt2):
    lens = logit_lens(tiny_gpt2, "abc def ghi", k=3)
    assert (np.diff(lens.top_probs, axis=-1) <= 1e-6).all()  # sorted descending
    assert (lens.top_probs > 0).all() and (lens.top_probs <= 1).all()
    assert not np.array_equal(lens.top_ids[0], lens.top_ids[-1])
    df = lens.to_pandas()
    assert len(df) == tiny_gpt2.n_layers * len(lens.tokens) * 3
    assert set(df.columns) >= {"layer", "position", "rank", "token", "prob"}
    fig = lens.figure()
    assert np.asarray(fig.data[0].z).shape == (tiny_gpt2.n_layers, len(lens.tokens))


def test_layer_subset_and_bad_input(tiny_llama):
    lens = logit_lens(tiny_llama, "Hello", layers=[2, 0])
    assert lens.layers == [0, 2]
    with pytest.raises(PromptError, match="empty"):
        logit_lens(tiny_llama, "   ")
    with pytest.raises(PromptError, match="k must be"):
        logit_lens(tiny_llama, "Hello", k=0)
    with pytest.raises(SiteError):
        logit_lens(tiny_llama, "Hello", layers=[99])
    with pytest.raises(SiteError, match="residual"):
        logit_lens(tiny_llama, "Hello", site="mlp_out")


@pytest.mark.smollm
def test_paris_emerges_late_in_smollm(smollm):
    lens = logit_lens(smollm, "The Eiffel Tower is in the city of", k=3)
    assert lens.top_tokens[-1][-1][0] == " Paris"
    assert lens.final_prob[0, -1] < 1e-3   # the embedding alone has no idea
    assert lens.final_prob[-1, -1] > 0.5
    with torch.no_grad():
        assert lens.final_prob[-5:, -1].max() > lens.final_prob[:10, -1].max()
