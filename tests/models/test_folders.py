"""Loading local Hugging Face folders: every supported family, safetensors only, clear refusals."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import PROMPTS, tiny

import interp_widgets as iw
from interp_widgets.errors import ModelLoadError
from interp_widgets.models.tiny import TINY_FAMILIES


def _save(model, folder):
    model.hf.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_a_saved_folder_loads_to_the_same_model(tmp_path, family):
    ref = tiny(family)
    folder = _save(ref, tmp_path / f"my-{family}")
    assert any(folder.glob("*.safetensors"))
    m = iw.load_model(folder)
    assert m.name == f"my-{family}" and m.family == ref.family
    assert (m.n_layers, m.d_model, m.d_vocab) == (ref.n_layers, ref.d_model, ref.d_vocab)
    logits, cache = m.run_with_cache(PROMPTS, sites=["resid_post.1"])
    ref_logits, ref_cache = ref.run_with_cache(PROMPTS, sites=["resid_post.1"])
    assert torch.equal(logits, ref_logits)
    assert torch.equal(cache["resid_post.1"], ref_cache["resid_post.1"])
    assert m.generate(PROMPTS[0], max_new_tokens=4) == ref.generate(PROMPTS[0], max_new_tokens=4)


def test_folder_path_may_be_a_string_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _save(tiny("gpt2"), tmp_path / "gpt")
    assert iw.load_model("~/gpt").family == "gpt2"


def test_pickle_only_folder_is_refused(tmp_path):
    ref = tiny("llama")
    folder = tmp_path / "pickled"
    folder.mkdir()
    ref.hf.config.save_pretrained(folder)
    ref.tokenizer.save_pretrained(folder)
    torch.save(ref.hf.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"only has pickle weights \(pytorch_model.bin\); interp_widgets loads safetensors only"):
        iw.load_model(folder)


def test_safetensors_win_over_pickles_in_the_same_folder(tmp_path):
    ref = tiny("llama")
    folder = _save(ref, tmp_path / "both")
    # a pickle with different weights beside the safetensors file must not be read
    wrong = {k: torch.zeros_like(v) for k, v in ref.hf.state_dict().items()}
    torch.save(wrong, folder / "pytorch_model.bin")
    m = iw.load_model(folder)
    assert torch.equal(m.hf.model.embed_tokens.weight, ref.hf.model.embed_tokens.weight)


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"has no config.json: pass a Hugging Face model folder"):
        iw.load_model(tmp_path)


def test_folder_with_an_unsupported_architecture_names_the_supported_ones(tmp_path):
    from transformers import BertConfig, BertLMHeadModel

    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, is_decoder=True)
    BertLMHeadModel(cfg).save_pretrained(tmp_path)
    tiny("llama").tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"model_type 'bert' has no site map yet; supported families: llama, qwen2"):
        iw.load_model(tmp_path)


def test_folder_with_broken_weights_is_a_model_load_error(tmp_path):
    folder = _save(tiny("llama"), tmp_path / "broken")
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="transformers could not load"):
        iw.load_model(folder)


def test_folder_with_a_bad_config_is_a_model_load_error(tmp_path):
    folder = _save(tiny("llama"), tmp_path / "badcfg")
    (folder / "config.json").write_text(json.dumps({"model_type": "no-such-type"}))
    with pytest.raises(ModelLoadError):
        iw.load_model(folder)
