"""LogitLens panel: traits in -> results in traits (tiny model)."""

from __future__ import annotations

import numpy as np

import interp_widgets as iw
from interp_widgets.widgets._base import from_bytes


def test_prompt_runs_and_fills_traits(tiny_llama):
    lens = iw.LogitLens(tiny_llama, "Hello world", k=3)
    n_pos = len(tiny_llama.to_str_tokens("Hello world"))
    assert lens.tokens == tiny_llama.to_str_tokens("Hello world")
    assert lens.layers == list(range(tiny_llama.n_layers))
    probs = from_bytes(lens.top_probs).reshape(tiny_llama.n_layers, n_pos, 3)
    np.testing.assert_allclose(probs, lens.result.top_probs)
    assert lens.selected == [tiny_llama.n_layers - 1, n_pos - 1]
    assert lens.error == "" and not lens.busy


def test_new_prompt_and_k_rerun(tiny_llama):
    lens = iw.LogitLens(tiny_llama, "Hello world")
    lens.prompt = "abc abc abc abc"
    assert lens.tokens == tiny_llama.to_str_tokens("abc abc abc abc")
    lens.k = 2
    assert len(lens.top_tokens[0][0]) == 2
    lens.selected = [1, 0]
    top = lens.selected_top()
    assert len(top) == 2 and top[0][1] >= top[1][1]
    assert top[0][0] == lens.result.top_tokens[1][0][0]


def test_bad_prompt_shows_error_and_keeps_state(tiny_llama):
    lens = iw.LogitLens(tiny_llama, "Hello world")
    before = list(lens.tokens)
    lens.prompt = "   "
    assert "empty" in lens.error
    assert lens.tokens == before and not lens.busy
    lens.prompt = "Hello again"
    assert lens.error == ""
    assert lens.tokens == tiny_llama.to_str_tokens("Hello again")
    assert "LogitLens(prompt='Hello again'" in repr(lens)
