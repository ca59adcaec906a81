"""Helpers for the model-layer tests (imported as ``model_helpers``; pytest puts this folder on sys.path)."""

from __future__ import annotations

import functools

# Module paths (inside one block) of the norm that feeds the MLP, written out independently of
# sites.py so the tests check the site map rather than repeat it.
BLOCK_PATH = {
    "gpt2": "transformer.h",
    "neox": "gpt_neox.layers",
}
MLP_NORM = {
    "gpt2": "ln_2",
    "gemma2": "pre_feedforward_layernorm",
    "neox": "post_attention_layernorm",
}


@functools.cache
def tiny(family: str):
    import interp_widgets as iw

    return iw.load_model(f"tiny-{family}")


def block(model, layer: int):
    obj = model.hf
    for part in BLOCK_PATH.get(model.name.removeprefix("tiny-"), "model.layers").split("."):
        obj = getattr(obj, part)
    return obj[layer]


PROMPTS = ["The Eiffel Tower is in the city of", "Hello world", "Two plus three is five. The cat"]
