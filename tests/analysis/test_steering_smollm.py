"""Steering on the embedded SmolLM2-135M: a concept direction moves the concept's tokens."""

from __future__ import annotations

import pytest
import torch

import interp_widgets as iw

pytestmark = pytest.mark.smollm

FRANCE = ["I love France and its capital Paris.", "The French city of Paris has the Eiffel Tower.",
          "We flew to Paris, France, for the holidays.", "French food in Paris is wonderful."]
JAPAN = ["I love Japan and its capital Tokyo.", "The Japanese city of Tokyo has the Skytree.",
         "We flew to Tokyo, Japan, for the holidays.", "Japanese food in Tokyo is wonderful."]
UNRELATED = "The best way to learn a new language is"


def paris_direction(model):
    """France-minus-Japan difference of means at resid_post.12 (sinks excluded), unit norm."""
    return iw.directions.from_contrast(model, FRANCE, JAPAN, "resid_post.12", label="France")


def test_paris_direction_raises_paris(smollm):
    d = paris_direction(smollm)
    spec = iw.Steer(d, 64.0, site="resid_post.12")
    r = iw.steer(smollm, spec).generate(UNRELATED, max_new_tokens=8)
    paris = smollm.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    base, steered = r.first_logprobs[0, 0, paris], r.first_logprobs[1, 0, paris]
    assert float(steered - base) > 1.0  # measured: ~3.0 nats (x21)
    assert r.steered.text[0] != r.baseline.text[0]
    assert r.mean_kl > 0.05
    # dose-response in one batched trace: monotone in strength
    sw = iw.steering_sweep(smollm, spec, [0.0, 32.0, 64.0], UNRELATED, target=" Paris")
    assert bool((sw.mean.diff() > 0).all())
    assert abs(float(sw.values[2, 0]) - float(steered)) < 1e-3  # same number two ways


def test_generated_positions_keep_prompt_logits_exact(smollm):
    spec = iw.Steer(paris_direction(smollm), 0.4, site="resid_post.12", units="relative",
                    positions="generated")
    s = iw.steer(smollm, spec)
    assert 120 < s.describe()[0]["typical_norm"] < 170  # ~140 per token at layer 12
    cont = " going to Paris with friends"
    n = len(smollm.to_str_tokens(UNRELATED))
    steered, plain = s.logits(UNRELATED, cont)[0], s.logits(UNRELATED, cont, steered=False)[0]
    assert torch.equal(steered[:n], plain[:n])
    assert float((steered[n:] - plain[n:]).abs().max()) > 0.1
