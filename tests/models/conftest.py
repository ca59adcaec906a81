"""Fixtures for the model layer: one tiny model per supported family, built once per session."""

from __future__ import annotations

import pytest
from model_helpers import PROMPTS, tiny

from interp_widgets.models.tiny import TINY_FAMILIES


@pytest.fixture(params=TINY_FAMILIES)
def tiny_any(request):
    """Each tiny family in turn (llama, gpt2, qwen2, qwen3, mistral, gemma, gemma2, neox)."""
    return tiny(request.param)


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    return list(PROMPTS)
