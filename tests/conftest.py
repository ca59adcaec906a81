"""Shared fixtures: tiny in-process models (fast) and the embedded SmolLM2 (session-scoped)."""

from __future__ import annotations

import os

import pytest
import torch

torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_llama():
    import interp_widgets as iw

    return iw.load_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2():
    import interp_widgets as iw

    return iw.load_model("tiny-gpt2")


@pytest.fixture(scope="session")
def smollm():
    """The embedded default model (SmolLM2-135M-Instruct), loaded once per test session."""
    import interp_widgets as iw

    return iw.load_model()


@pytest.fixture(scope="session")
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
