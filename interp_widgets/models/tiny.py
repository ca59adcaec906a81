"""Tiny, deterministic, in-process test models (no download): ``load_model("tiny-llama")``.

Each family gets a randomly initialised model from a fixed seed and a byte-level BPE tokenizer
trained in process on a fixed paragraph, so tests are fast and reproducible.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

_TRAIN_TEXT = (
    "The Eiffel Tower is in the city of Paris. The opposite of small is large. "
    "The capital of France is Paris and the capital of Japan is Tokyo. "
    "A transformer reads tokens and writes a residual stream. Features are directions. "
    "Two plus three is five. The cat sat on the mat while the dog ran in the park. "
    "Hello world! def main(): return 42  # python code, numbers 0123456789 and symbols <>/=\"'"
)

TINY_FAMILIES = ("llama", "gpt2", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "neox")


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TRAIN_TEXT] * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=256,
    )
    return tok


def tiny_config(family: str, vocab_size: int) -> Any:
    import transformers as tf

    common_llama: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    if family == "llama":
        return tf.LlamaConfig(**common_llama)
    if family == "qwen2":
        return tf.Qwen2Config(**common_llama)
    if family == "qwen3":
        return tf.Qwen3Config(**{**common_llama, "head_dim": 16})
    if family == "mistral":
        return tf.MistralConfig(**common_llama, sliding_window=None)
    if family == "gemma":
        return tf.GemmaConfig(**{**common_llama, "head_dim": 16})
    if family == "gemma2":
        return tf.Gemma2Config(**{**common_llama, "head_dim": 16, "sliding_window": 64})
    if family == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab_size, n_positions=256, n_embd=32, n_layer=2, n_head=4,
            bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )
    if family == "neox":
        return tf.GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=256, use_parallel_residual=True,
            bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
        )
    raise ValueError(family)


def build_tiny(family: str) -> tuple[Any, Any]:
    """Return ``(hf_model, tokenizer)`` for a tiny model of ``family`` (deterministic weights)."""
    import transformers as tf

    tok = tiny_tokenizer()
    cfg = tiny_config(family, vocab_size=len(tok))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        # Larger-than-default weights so activations are not all ~0 and features are varied.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.08)
                elif "norm" in name or "ln" in name:
                    # Gemma norms are (1 + w): keep w near 0 there, near 1 elsewhere.
                    base = 0.0 if family.startswith("gemma") else 1.0
                    p.copy_(base + 0.05 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.02)
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
