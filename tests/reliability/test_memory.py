"""Memory: attribution and scans compare their estimate with the memory available *before*
allocating, and refuse with a message that names the fix, instead of being killed by the OS."""

from __future__ import annotations

import time

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis import scan as scan_module
from interp_widgets.analysis.attribution import build
from interp_widgets.errors import CorpusError, MemoryBudgetError

GB = 1 << 30
DOCS = [f"Report {i}: the train left station {i % 7} at noon." for i in range(60)]


def never(name):
    def fail(*a, **k):
        raise AssertionError(f"{name} ran: the memory check must refuse before any forward pass")
    return fail


@pytest.mark.smollm
@pytest.mark.timeout(120)
def test_long_prompt_attribution_is_refused_before_any_forward(smollm, monkeypatch):
    """An 8,000-token prompt on SmolLM2: its frozen attention patterns alone are ~70 GB. On a 16 GB
    machine ("auto" = 80% of what is available) the call refuses in about a second, naming the
    prompt length and what to do, and the model never runs."""
    monkeypatch.setattr(build, "_available_memory", lambda: 16 * GB)
    monkeypatch.setattr(build, "capture", never("capture"))
    prompt = "The Eiffel Tower is in the city of Paris. " * 720
    n_tok = len(smollm.tokenize(prompt).input_ids[0])
    assert 7000 < n_tok < smollm.n_ctx
    t = time.monotonic()
    with pytest.raises(MemoryBudgetError) as e:
        iw.attribute(smollm, prompt, progress=False)
    assert time.monotonic() - t < 30
    msg = str(e.value)
    assert f"a {n_tok}-token prompt needs at least ~" in msg
    assert "attention patterns ~" in msg and "80% of the memory available now" in msg
    assert "Shorten the prompt" in msg and "memory_budget" in msg
    # the floor is the real size of what would be allocated first: 30 layers x 9 heads x P^2 floats
    floor = sum(build._prompt_floor(smollm, prompt)[1].values())
    assert floor >= 30 * 9 * n_tok ** 2 * 4


def test_auto_budget_follows_available_memory(tiny_llama, transcoders, monkeypatch):
    prompt = "The cat sat on the mat. " * 30
    need = sum(build._prompt_floor(tiny_llama, prompt)[1].values())
    monkeypatch.setattr(build, "_available_memory", lambda: int(need / 0.8) - 1)
    with pytest.raises(MemoryBudgetError, match="Shorten the prompt"):
        iw.attribute(tiny_llama, prompt, transcoders, progress=False)
    # the same prompt passes the floor with a little more memory (then the full estimate is checked)
    monkeypatch.setattr(build, "_available_memory", lambda: 64 * GB)
    g = iw.attribute(tiny_llama, prompt, transcoders, max_feature_nodes=4, progress=False)
    assert g.n_nodes > 0


def test_prompt_floor_is_a_lower_bound_of_the_full_estimate(tiny_llama, transcoders):
    prompt = "The cat sat on the mat. " * 8
    floor = build._prompt_floor(tiny_llama, prompt)[1]
    est = iw.estimate_attribution(tiny_llama, prompt, transcoders, max_feature_nodes=10)
    assert floor["attention patterns"] >= est.breakdown["frozen model"] - 5 * tiny_llama.n_layers * est.n_tokens * 64 * 4
    assert sum(floor.values()) <= est.memory_bytes + floor["logits"] + floor["recorded activations"]


@pytest.mark.timeout(60)
def test_oversized_scan_is_refused_before_allocating(tiny_llama, monkeypatch):
    wide = iw.SAE.random(d_in=64, n_features=65_536, site="resid_post.1", architecture="topk", k=8)
    monkeypatch.setattr(scan_module, "read_sites", never("the model"))
    monkeypatch.setattr(scan_module, "_Accumulator", never("the accumulators"))
    t = time.monotonic()
    with pytest.raises(MemoryBudgetError) as e:
        iw.scan(tiny_llama, wide, iw.Corpus.from_strings(DOCS), batch_size=1024, seq_len=256,
                max_tokens=1024 * 256, progress=False)
    assert time.monotonic() - t < 10
    msg = str(e.value)
    assert "largest part: batch activations" in msg and "Lower batch_size (now 1024)" in msg
    assert "80% of the" in msg and "available" in msg


def test_scan_budget_values(tiny_llama, sae):
    corpus = iw.Corpus.from_strings(DOCS)
    kw = dict(max_tokens=128, batch_size=2, seq_len=16, top_k=2, window=4, progress=False)
    with pytest.raises(MemoryBudgetError, match="memory_budget is 1.0 KB"):
        iw.scan(tiny_llama, sae, corpus, memory_budget="1KB", **kw)
    with pytest.raises(CorpusError, match="'4GB'"):
        iw.scan(tiny_llama, sae, corpus, memory_budget="lots", **kw)
    assert iw.scan(tiny_llama, sae, corpus, memory_budget=None, **kw).n_features == sae.n_features


def test_scan_estimate_covers_the_state_it_allocates(tiny_llama, sae):
    """The estimate's 'feature state' is at least what the accumulators really hold."""
    parts = scan_module.scan_memory(tiny_llama, sae, max_tokens=4096, batch_size=4, seq_len=64, top_k=8, window=12)
    acc = scan_module._Accumulator(sae.n_features, 8, 12)
    real = sum(t.numel() * t.element_size() for t in acc.state().values())
    assert real <= parts["feature state"] <= 1.2 * real
    acts = torch.zeros(4, 64, sae.n_features)
    assert parts["batch activations"] >= acts.numel() * acts.element_size() * 3
