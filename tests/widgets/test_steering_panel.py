"""SteeringPanel, Python side: rows -> specs, live runs with request ids, stale results dropped,
dose-response, and "steer with this" from a shared selection."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import interp_widgets as iw
from interp_widgets.widgets._base import from_bytes

PROMPT = "The cat sat on the"


@pytest.fixture(scope="module")
def sae(tiny_llama):
    s = iw.SAE.random(d_in=tiny_llama.d_model, n_features=48, site="resid_post.1", architecture="relu", seed=3)
    s.name = "sae.L1"
    return s


def test_rows_become_specs_and_results_match_the_analysis(tiny_llama, sae):
    panel = iw.SteeringPanel(tiny_llama, sae, prompt=PROMPT, max_new_tokens=6, selection=iw.Selection())
    plain = panel.wait()           # no rows yet: both arms are the plain model
    assert plain.steered.tokens == plain.baseline.tokens and not any(panel.differs)
    assert panel.error == "" and panel.baseline == panel.steered
    rid = panel.add(sae[5], strength=12.0)
    res = panel.wait()
    assert panel.rows[0]["id"] == rid and panel.result_id == panel.request_id
    ref = iw.steer(tiny_llama, iw.Steer(sae[5], 12.0)).generate(PROMPT, max_new_tokens=6)
    assert res.steered.tokens == ref.steered.tokens and res.baseline.tokens == ref.baseline.tokens
    assert panel.steered == list(ref.steered.str_tokens[0])
    assert panel.baseline == list(ref.baseline.str_tokens[0])
    assert panel.differs == list(ref.differs[0])
    np.testing.assert_allclose(from_bytes(panel.logprob_diff), ref.logprob_diff[0].numpy(), rtol=1e-5, atol=1e-6)
    assert panel.prompt_tokens == tiny_llama.to_str_tokens(PROMPT)

    panel.set_mode(0, "ablate")
    panel.wait()
    assert panel.specs()[0].mode == "ablate" and panel.specs()[0].strength is None
    panel.set_mode(0, "scale")
    panel.set_strength(0, 3.0)
    panel.wait()
    ref = iw.steer(tiny_llama, iw.Steer(sae[5], 3.0, mode="scale")).generate(PROMPT, max_new_tokens=6)
    assert panel.result.steered.tokens == ref.steered.tokens
    panel._edit(0, positions="last")
    assert panel.specs()[0].positions == (-1,)
    panel._edit(0, positions="2,x")
    assert "positions" in panel.error
    panel._edit(0, positions="all")
    panel.prompt = "   "
    assert "empty" in panel.error
    panel.close()


def test_newer_request_supersedes_and_stale_results_are_dropped(tiny_llama, sae):
    panel = iw.SteeringPanel(tiny_llama, sae, prompt=PROMPT, steers=[sae[5]], max_new_tokens=8, selection=iw.Selection())
    panel.wait()
    shown = []
    panel.observe(lambda c: shown.append(c["new"]), names=["result_id"])
    runs_before = panel.runs
    for s in np.linspace(1.0, 30.0, 12):      # a slider dragged across: 12 requests in a burst
        panel.set_strength(0, float(s))
    last = panel.request_id
    panel.wait()
    assert panel.result_id == last
    assert shown == sorted(shown) and shown[-1] == last   # never an older result after a newer one
    assert panel.runs - runs_before < 12                  # superseded requests never ran
    ref = iw.steer(tiny_llama, iw.Steer(sae[5], 30.0)).generate(PROMPT, max_new_tokens=8)
    assert panel.result.steered.tokens == ref.steered.tokens
    # an old result arriving late is refused
    old = panel.result
    assert panel._apply(last - 1, old) is False and panel.result_id == last
    panel.close()


def test_running_generation_stops_when_superseded(tiny_llama, sae):
    panel = iw.SteeringPanel(tiny_llama, sae, prompt=PROMPT, steers=[sae[5]], max_new_tokens=4, selection=iw.Selection())
    panel.wait()
    started, release = threading.Event(), threading.Event()
    seen_steps = []
    real = panel._stale

    def slow_stale(rid):  # the first request waits at its first step until a newer one exists
        seen_steps.append(rid)
        if rid == first and not release.is_set():
            started.set()
            release.wait(10)
        return real(rid)

    panel._stale = slow_stale
    panel.max_new_tokens = 40
    first = panel.request_id
    assert started.wait(10)
    panel.set_strength(0, 2.0)                 # newer request while the first is running
    release.set()
    panel.wait()
    assert panel.result_id == panel.request_id > first
    assert len(panel.result.steered.tokens[0]) <= 40
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny_llama.hf.modules())
    assert hooks == 0
    panel.close()


def test_steer_with_this_and_dose_response(tiny_llama, sae):
    sel = iw.Selection()
    panel = iw.SteeringPanel(tiny_llama, sae, prompt=PROMPT, max_new_tokens=4, selection=sel)
    dash = iw.FeatureDashboard(sae, 7, selection=sel)
    dash.steer()
    assert [r["label"] for r in panel.rows] == ["sae.L1#7"]
    panel.wait()
    panel._on_action(panel, {"action": "add", "dictionary": "sae.L1", "feature": 9}, [])
    assert len(panel.rows) == 2
    panel._on_action(panel, {"action": "add", "dictionary": "nope", "feature": 9}, [])
    assert "no dictionary" in panel.error
    panel.wait()
    sw = panel.dose_response(0, strengths=[0.0, 10.0, 20.0], target=" the")
    assert panel.dose["strengths"] == [0.0, 10.0, 20.0]
    assert panel.dose["values"] == pytest.approx(sw.mean.tolist())
    ref = iw.steering_sweep(tiny_llama, iw.Steer(sae[7], 1.0), [0.0, 10.0, 20.0], PROMPT, target=" the")
    assert panel.dose["values"] == pytest.approx(ref.mean.tolist(), rel=1e-5)
    panel._on_action(panel, {"action": "remove", "id": panel.rows[1]["id"]}, [])
    assert len(panel.rows) == 1
    panel.close()
