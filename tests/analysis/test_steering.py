"""Steering runs on the tiny in-process Llama: modes, positions, arms, sampling, interrupts."""

from __future__ import annotations

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.steering import typical_norm
from interp_widgets.errors import DictionaryError, SiteError, SteeringError

PROMPTS = ["The cat sat on the mat", "Paris is the capital of France"]


@pytest.fixture(scope="module")
def model(tiny_llama):
    return tiny_llama


def direction(model, seed: int = 0) -> torch.Tensor:
    return torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed))


def active_sae(model, site: str = "resid_post.1", feature: int = 5):
    """A tied ReLU SAE (encoder column = unit decoder row) whose feature is on everywhere."""
    sae = iw.SAE.random(d_in=model.d_model, n_features=48, site=site, seed=3,
                        metadata={"model": model.name})
    with torch.no_grad():
        sae.b_enc[feature] = 50.0
    return sae


# ------------------------------------------------------------------------- arms
def test_baseline_arm_is_plain_greedy_generation(model):
    r = iw.steer(model, iw.Steer(direction(model), 12.0, site="resid_post.1")).generate(
        PROMPTS, max_new_tokens=6)
    assert r.baseline.text == tuple(model.generate(PROMPTS, max_new_tokens=6))
    assert r.steered.text != r.baseline.text
    assert all(len(t) == 6 for t in r.steered.tokens)
    # the per-token tables line up with the tokens
    for arm in (r.baseline, r.steered):
        for toks, lp, other in zip(arm.tokens, arm.logprobs, arm.logprobs_other, strict=True):
            assert lp.shape == other.shape == (len(toks),)
            assert bool((lp <= 0).all())
    assert len(r.differs[0]) == 6 and any(any(d) for d in r.differs)


def test_zero_strength_changes_nothing(model):
    r = iw.steer(model, iw.Steer(direction(model), 0.0, site="resid_post.1")).generate(
        PROMPTS, max_new_tokens=5)
    assert r.steered.tokens == r.baseline.tokens
    assert all(not any(d) for d in r.differs) and r.first_difference == (None, None)
    for kl, diff in zip(r.kl, r.logprob_diff, strict=True):
        assert torch.allclose(kl, torch.zeros_like(kl), atol=1e-6)
        assert torch.allclose(diff, torch.zeros_like(diff), atol=1e-5)


def test_kl_and_logprob_diff_are_consistent(model):
    r = iw.steer(model, iw.Steer(direction(model), 10.0, site="resid_post.2")).generate(
        PROMPTS, max_new_tokens=5)
    for i in range(2):
        # scored under the steered arm, the steered tokens match what generation recorded
        assert torch.allclose(r.steered.logprobs[i], r.steered.logprobs_other[i] + r.logprob_diff[i],
                              atol=1e-4)
        assert bool((r.kl[i] > 0).all())
    # the first token's KL equals the next-token shift's KL
    assert abs(float(r.kl[0][0]) - r.next_token(0).kl) < 1e-4
    shift = r.next_token(PROMPTS[1], k=4)
    assert len(shift.up) == 4 and shift.up[0][3] - shift.up[0][2] > 0
    assert shift.down[0][3] - shift.down[0][2] < 0
    assert set(shift.to_pandas()["group"]) == {"top_baseline", "top_steered", "up", "down"}
    df = r.to_pandas()
    assert len(df) == 2 * 2 * 5
    assert {"prompt_index", "arm", "position", "token", "logprob", "logprob_other", "kl",
            "logprob_diff", "differs"} <= set(df.columns)
    assert "steered:" in repr(r) and "baseline:" in repr(r)


def test_steered_arm_alone(model):
    s = iw.steer(model, iw.Steer(direction(model), 10.0, site="resid_post.2"))
    both = s.generate(PROMPTS, max_new_tokens=4)
    one = s.generate(PROMPTS, max_new_tokens=4, baseline=False, score=False)
    assert one.baseline is None and one.kl is None and one.steered.logprobs_other is None
    assert one.steered.tokens == both.steered.tokens
    with pytest.raises(SteeringError, match="baseline"):
        one.next_token(0)


def test_generation_uses_the_kv_cache(model):
    seen = []
    hook = model.module("resid_post.0").register_forward_hook(
        lambda mod, inp, out: seen.append((out[0] if isinstance(out, tuple) else out).shape[1]))
    try:
        iw.steer(model, iw.Steer(direction(model), 4.0, site="resid_post.0")).generate(
            PROMPTS[0], max_new_tokens=5, baseline=False, score=False)
    finally:
        hook.remove()
    n_prompt = len(model.to_str_tokens(PROMPTS[0]))
    assert seen == [n_prompt, 1, 1, 1, 1]  # prompt once, then one new position per step


# -------------------------------------------------------------------- positions
def test_generated_positions_leave_the_prompt_unchanged(model):
    s = iw.steer(model, iw.Steer(direction(model), 20.0, site="resid_post.1", positions="generated"))
    r = s.generate(PROMPTS, max_new_tokens=5)
    # the first token is predicted from the prompt alone: identical in both arms, exactly
    assert torch.equal(r.first_logprobs[0], r.first_logprobs[1])
    cont = [list(t) for t in r.steered.tokens]
    steered = s.logits(PROMPTS, cont)
    plain = s.logits(PROMPTS, cont, steered=False)
    for i, p in enumerate(PROMPTS):
        n = len(model.to_str_tokens(p))
        assert torch.equal(steered[i][:n], plain[i][:n])
        assert not torch.allclose(steered[i][n:], plain[i][n:], atol=1e-3)


@pytest.mark.parametrize("positions, first", [([2], 2), ([-1], -1), (slice(3, None), 3), ("prompt", 0)])
def test_prompt_positions_edit_only_there(model, positions, first):
    s = iw.steer(model, iw.Steer(direction(model), 20.0, site="resid_post.1", positions=positions))
    p = PROMPTS[0]
    n = len(model.to_str_tokens(p))
    first = first % n
    lg, plain = s.logits(p)[0], s.logits(p, steered=False)[0]
    assert torch.equal(lg[:first], plain[:first])
    assert not torch.allclose(lg[first], plain[first], atol=1e-3)


def test_token_match_positions(model):
    p = PROMPTS[0]  # "The cat sat on the mat"
    toks = model.to_str_tokens(p)
    target = next(t for t in toks[1:] if t.strip())
    at = toks.index(target)
    s = iw.steer(model, iw.Steer(direction(model), 20.0, site="resid_post.1",
                                 positions={"token": target.strip()}))
    lg, plain = s.logits(p)[0], s.logits(p, steered=False)[0]
    assert torch.equal(lg[:at], plain[:at])
    assert not torch.allclose(lg[at], plain[at], atol=1e-3)
    with pytest.raises(SteeringError, match="no single token"):
        iw.steer(model, iw.Steer(direction(model), 1.0, site="resid_post.1",
                                 positions={"token": "zzqqxxjj"}))


def test_positions_outside_the_prompt_are_rejected(model):
    s = iw.steer(model, iw.Steer(direction(model), 2.0, site="resid_post.1", positions=[40]))
    with pytest.raises(SteeringError, match="position 40 is outside prompt"):
        s.generate(PROMPTS, max_new_tokens=2)
    s = iw.steer(model, iw.Steer(direction(model), 2.0, site="resid_post.1", positions=slice(30, 40)))
    with pytest.raises(SteeringError, match="select no token"):
        s.logits(PROMPTS)


# ------------------------------------------------------------------------ modes
def test_scale_zero_equals_ablation(model):
    sae = active_sae(model)
    f = sae[5]
    scaled = iw.steer(model, iw.Steer(f, 0.0, mode="scale")).logits(PROMPTS)
    ablated = iw.steer(model, iw.Steer(f, mode="ablate")).logits(PROMPTS)
    plain = iw.steer(model, iw.Steer(f, 1.0, mode="scale")).logits(PROMPTS)
    base = iw.steer(model, iw.Steer(f, 1.0, mode="scale")).logits(PROMPTS, steered=False)
    for a, b, c, d in zip(scaled, ablated, plain, base, strict=True):
        assert torch.equal(a, b)
        assert torch.allclose(c, d, atol=1e-5)  # scale 1 is the identity
        assert not torch.allclose(a, d, atol=1e-3)


def test_scale_edits_through_the_dictionary(model):
    sae = active_sae(model)
    s = iw.steer(model, iw.Steer(sae[5], 3.0, mode="scale"))
    _, plain = s.run_with_cache(PROMPTS, ["resid_post.1"], steered=False)
    _, cache = s.run_with_cache(PROMPTS, ["resid_post.1"])
    x, y = plain["resid_post.1"], cache["resid_post.1"]
    a = sae.encode(x)[..., 5:6]
    expect = x + 2.0 * a * sae.W_dec[5].detach()
    m = cache.attention_mask.bool()
    assert torch.allclose(y[m], expect[m], atol=1e-4)


def test_clamp_holds_the_encoded_activation(model):
    sae = active_sae(model)
    s = iw.steer(model, iw.Steer(sae[5], 7.5, mode="clamp", positions=[1, 2, 3]))
    _, plain = s.run_with_cache(PROMPTS, ["resid_post.1"], steered=False)
    _, cache = s.run_with_cache(PROMPTS, ["resid_post.1"])
    before = sae.encode(plain["resid_post.1"])[..., 5]
    after = sae.encode(cache["resid_post.1"])[..., 5]
    assert torch.allclose(after[:, 1:4], torch.full((2, 3), 7.5), atol=1e-4)  # re-encoded
    assert torch.equal(after[:, 0], before[:, 0])  # position 0 was not selected
    assert not torch.allclose(before[:, 1:4], torch.full((2, 3), 7.5), atol=1e-1)


def test_transcoder_clamp_edits_the_mlp_output(model):
    tc = iw.Transcoder.random(d_in=model.d_model, n_features=32, layer=1, seed=2)
    s = iw.steer(model, iw.Steer(tc[4], 3.0, mode="clamp"))
    _, plain = s.run_with_cache(PROMPTS, ["mlp_in.1", "mlp_out.1"], steered=False)
    _, cache = s.run_with_cache(PROMPTS, ["mlp_in.1", "mlp_out.1"])
    assert torch.equal(cache["mlp_in.1"], plain["mlp_in.1"])
    a = tc.encode(plain["mlp_in.1"])[..., 4:5]
    expect = plain["mlp_out.1"] + (3.0 - a) * tc.W_dec[4].detach()
    m = cache.attention_mask.bool()
    assert torch.allclose(cache["mlp_out.1"][m], expect[m], atol=1e-4)


def test_neuron_ablation(model):
    nb = iw.neuron_basis(model, layers=[2])[2]
    s = iw.steer(model, iw.Steer(nb[11], mode="ablate"))
    _, plain = s.run_with_cache(PROMPTS, ["mlp_in.2", "mlp_out.2"], steered=False)
    _, cache = s.run_with_cache(PROMPTS, ["mlp_out.2"])
    with torch.no_grad():
        act = nb.encode(plain["mlp_in.2"])[..., 11:12]
        expect = plain["mlp_out.2"] - act * nb.W_dec[11]
    assert float(act.abs().max()) > 1e-3  # the neuron was doing something
    m = cache.attention_mask.bool()
    assert torch.allclose(cache["mlp_out.2"][m], expect[m], atol=1e-4)


def test_site_and_direction_ablation(model):
    mean = torch.arange(model.d_model, dtype=torch.float32) / 10
    s = iw.steer(model, iw.Steer("resid_post.1", mode="ablate", ablation="mean", mean=mean,
                                 positions="prompt"))
    _, cache = s.run_with_cache(PROMPTS, ["resid_post.1"])
    m = cache.attention_mask.bool()
    assert torch.allclose(cache["resid_post.1"][m], mean.expand(int(m.sum()), -1))
    zero = iw.steer(model, iw.Steer("resid_post.0", mode="ablate"))
    _, cz = zero.run_with_cache(PROMPTS, ["resid_post.0"])
    assert float(cz["resid_post.0"][cz.attention_mask.bool()].abs().max()) == 0.0
    # a direction's projection goes to its mean, computed from prompts (position 0 excluded)
    d = direction(model, 4)
    u = d / d.norm()
    dm = iw.steer(model, iw.Steer(d, site="resid_post.2", mode="ablate", ablation="mean",
                                  mean_prompts=PROMPTS))
    _, plain = dm.run_with_cache(PROMPTS, ["resid_post.2"], steered=False)
    xs = plain["resid_post.2"][:, 1:][plain.attention_mask[:, 1:].bool()]
    _, c2 = dm.run_with_cache(PROMPTS, ["resid_post.2"])
    proj = c2["resid_post.2"][c2.attention_mask.bool()] @ u
    assert torch.allclose(proj, torch.full_like(proj, float((xs @ u).mean())), atol=1e-4)


def test_relative_units_use_the_typical_norm(model):
    norm = typical_norm(model, "resid_post.1")
    assert norm > 0 and typical_norm(model, "resid_post.1") == norm  # cached
    rel = iw.steer(model, iw.Steer(direction(model), 0.5, site="resid_post.1", units="relative"))
    ab = iw.steer(model, iw.Steer(direction(model), 0.5 * norm, site="resid_post.1"))
    assert rel.describe()[0]["typical_norm"] == norm
    assert abs(rel.describe()[0]["added_norm"] - 0.5 * norm) < 1e-4
    for a, b in zip(rel.logits(PROMPTS), ab.logits(PROMPTS), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_feature_add_uses_the_decoder_row(model):
    sae = active_sae(model)
    with torch.no_grad():
        sae._W_dec[5] *= 3.0  # a decoder row of norm 3
    s = iw.steer(model, iw.Steer(sae[5], 2.0))
    assert abs(s.describe()[0]["added_norm"] - 6.0) < 1e-4
    d = iw.steer(model, iw.Steer(sae.W_dec[5].detach() * 2.0, 1.0, site="resid_post.1"))
    assert abs(d.describe()[0]["added_norm"] - 1.0) < 1e-5  # raw directions are unit norm


# ---------------------------------------------------------------------- sampling
def test_sampling_uses_the_same_noise_in_both_arms(model):
    zero = iw.steer(model, iw.Steer(direction(model), 0.0, site="resid_post.1"))
    r1 = zero.generate(PROMPTS, max_new_tokens=8, temperature=1.0, seed=7)
    assert r1.steered.tokens == r1.baseline.tokens  # no intervention, same samples
    assert r1.baseline.tokens != zero.generate(PROMPTS, max_new_tokens=8).baseline.tokens
    r2 = zero.generate(PROMPTS, max_new_tokens=8, temperature=1.0, seed=7)
    assert r2.steered.tokens == r1.steered.tokens  # reproducible
    r3 = zero.generate(PROMPTS, max_new_tokens=8, temperature=1.0, seed=8)
    assert r3.steered.tokens != r1.steered.tokens


def test_sampling_follows_the_model_distribution(model):
    # Gumbel-max on logits / T: the first sampled token's frequencies track softmax(logits / T)
    s = iw.steer(model, iw.Steer(direction(model), 0.0, site="resid_post.1"))
    prompt = "The cat"
    lp = torch.log_softmax(s.logits(prompt, steered=False)[0][-1], -1)
    top = int(lp.argmax())
    hits = sum(
        s.generate([prompt] * 16, max_new_tokens=1, temperature=1.0, seed=k, baseline=False,
                   score=False).steered.tokens[i][0] == top
        for k in range(4) for i in range(16)
    )
    p = float(lp.exp()[top])
    # 64 draws: binomial mean 64 p, sd sqrt(64 p (1-p)); allow 4 sd
    assert abs(hits - 64 * p) <= 4 * (64 * p * (1 - p)) ** 0.5 + 1


# ------------------------------------------------------------------- combination
def all_modes(model):
    sae = active_sae(model, site="resid_post.0", feature=5)
    tc = iw.Transcoder.random(d_in=model.d_model, n_features=32, layer=2, seed=2)
    nb = iw.neuron_basis(model, layers=[3])[3]
    return [
        iw.Steer(direction(model), 6.0, site="resid_pre.0", positions={"token": "cat"}),
        iw.Steer(sae[5], 2.0, mode="scale"),
        iw.Steer(direction(model, 2), 1.5, site="resid_post.1", mode="clamp", positions=[1, 2]),
        iw.Steer(tc[3], 4.0, mode="clamp", positions="generated"),
        iw.Steer(nb[7], mode="ablate"),
        iw.Steer("attn_out.3", mode="ablate", ablation="mean", mean_prompts=PROMPTS),
    ]


def test_several_modes_in_one_run_match_remote_local(model):
    specs = all_modes(model)
    local = iw.steer(model, specs).generate(PROMPTS, max_new_tokens=4)
    remote_model = iw.load_model("tiny-llama", remote="local")
    rspecs = [s if s.kind != "feature" or s.target.dictionary.kind != "neuron_basis"
              else iw.Steer(iw.neuron_basis(remote_model, layers=[3])[3][7], mode="ablate")
              for s in specs]
    remote = iw.steer(remote_model, rspecs).generate(PROMPTS, max_new_tokens=4)
    assert remote.steered.tokens == local.steered.tokens
    assert remote.baseline.tokens == local.baseline.tokens
    assert local.steered.tokens != local.baseline.tokens
    for a, b in zip(remote.kl, local.kl, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_resid_mid_conflicts_are_reported(model):
    specs = [iw.Steer(direction(model), 1.0, site="resid_mid.1"),
             iw.Steer(direction(model), 1.0, site="mlp_out.1")]
    with pytest.raises(SteeringError, match="resid_mid.1"):
        iw.steer(model, specs)


# -------------------------------------------------------------------- bad inputs
def test_bad_inputs(model, tiny_gpt2):
    with pytest.raises(SteeringError, match="d_model=64"):
        iw.steer(model, iw.Steer(torch.randn(65), 1.0, site="resid_post.1"))
    with pytest.raises(SiteError, match="layers 0-3"):
        iw.steer(model, iw.Steer(direction(model), 1.0, site="resid_post.9"))
    with pytest.raises(SiteError, match="unknown site name"):
        iw.steer(model, iw.Steer(direction(model), 1.0, site="resid_foo.1"))
    with pytest.raises(SteeringError, match="logits"):
        iw.steer(model, iw.Steer(torch.randn(model.d_vocab), 1.0, site="logits"))
    other = iw.SAE.random(d_in=model.d_model, n_features=16, site="resid_post.1",
                          metadata={"model": "tiny-gpt2"})
    with pytest.raises(DictionaryError, match="tiny-gpt2"):
        iw.steer(model, iw.Steer(other[2], 3.0))
    wide = iw.SAE.random(d_in=tiny_gpt2.d_model + 8, n_features=16, site="resid_post.1")
    with pytest.raises(DictionaryError, match="another model"):
        iw.steer(model, iw.Steer(wide[2], 3.0))
    s = iw.steer(model, iw.Steer(direction(model), 1.0, site="resid_post.1"))
    with pytest.raises(SteeringError, match="max_new_tokens"):
        s.generate(PROMPTS, max_new_tokens=0)
    with pytest.raises(SteeringError, match="temperature"):
        s.generate(PROMPTS, temperature=-1.0)
    with pytest.raises(iw.errors.PromptError):
        s.generate(["ok", "  "], max_new_tokens=2)
    with pytest.raises(SteeringError, match="prompt index"):
        s.generate(PROMPTS[0], max_new_tokens=1).next_token(3)


# ------------------------------------------------------------------ interrupts
def test_interrupted_generation_leaves_the_model_clean(model):
    def hooks() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.hf.modules())

    s = iw.steer(model, all_modes(model))
    before = s.generate(PROMPTS, max_new_tokens=4)

    def stop(step, total):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.generate(PROMPTS, max_new_tokens=6, progress=stop)
    fresh = iw.load_model("tiny-llama")
    toks = model.tokenize(PROMPTS)
    with torch.no_grad():
        assert torch.equal(model.hf(**toks.as_dict()).logits, fresh.hf(**toks.as_dict()).logits)
    assert hooks() == 0
    assert model.generate(PROMPTS, max_new_tokens=4) == fresh.generate(PROMPTS, max_new_tokens=4)
    after = s.generate(PROMPTS, max_new_tokens=4)
    assert after.steered.tokens == before.steered.tokens


def test_progress_callback_counts_steps(model):
    seen = []
    iw.steer(model, iw.Steer(direction(model), 1.0, site="resid_post.1")).generate(
        PROMPTS[0], max_new_tokens=3, progress=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


# ------------------------------------------------------------------------ sweeps
def unembed_direction(model, token: str) -> tuple[torch.Tensor, int]:
    tid = model.tokenizer(token, add_special_tokens=False)["input_ids"][0]
    return model.hf.lm_head.weight[tid].detach().clone(), tid


def test_sweep_dose_response(model):
    d, tid = unembed_direction(model, " Paris")
    spec = iw.Steer(d, 1.0, site=f"resid_post.{model.n_layers - 1}")
    sw = iw.steering_sweep(model, spec, [0, 4, 8, 16], PROMPTS, target=" Paris")
    assert sw.values.shape == (4, 2) and sw.baseline.shape == (2,)
    assert torch.allclose(sw.values[0], sw.baseline, atol=1e-5)  # strength 0 = no steering
    assert bool((sw.mean.diff() > 0).all())  # more of the token's direction, likelier token
    # the metric is the next-token log-prob after each prompt
    lp = torch.log_softmax(iw.steer(model, spec).logits(PROMPTS[1], steered=False)[0][-1], -1)
    assert abs(float(sw.baseline[1]) - float(lp[tid])) < 1e-4
    df = sw.to_pandas()
    assert len(df) == 8 and {"strength", "prompt", "value", "baseline", "delta"} <= set(df.columns)
    fig = sw.figure()
    assert fig.data[-1].y == tuple(float(v) for v in sw.mean)
    assert "log p(' Paris')" in fig.layout.yaxis.title.text
    assert "SteeringSweep" in repr(sw)


def test_sweep_with_a_function_and_generation(model):
    d, tid = unembed_direction(model, " Paris")
    spec = iw.Steer(d, 1.0, site=f"resid_post.{model.n_layers - 1}", positions="generated")

    def paris_share(logprobs, text):
        return text.count("Paris") / max(1, len(text.split()))

    sw = iw.steering_sweep(model, spec, [0.0, 30.0], PROMPTS[0], metric=paris_share,
                           max_new_tokens=4)
    assert sw.metric_name == "paris_share" and len(sw.texts) == 2
    assert sw.texts[0] == tuple(sw.baseline_texts)  # strength 0 generates the baseline text
    assert float(sw.values[1, 0]) > float(sw.values[0, 0])
    with pytest.raises(SteeringError, match="without generation"):
        iw.steering_sweep(model, spec, [1.0], PROMPTS[0], target=" Paris")


def test_sweep_bad_inputs(model):
    spec = iw.Steer(direction(model), 1.0, site="resid_post.1")
    for bad in ([], [1.0, float("nan")], "1,2"):
        with pytest.raises(SteeringError, match="strengths"):
            iw.steering_sweep(model, spec, bad, PROMPTS[0], target=" Paris")
    with pytest.raises(SteeringError, match="exactly one"):
        iw.steering_sweep(model, spec, [1.0], PROMPTS[0])
    with pytest.raises(SteeringError, match="single tokens"):
        iw.steering_sweep(model, spec, [1.0], PROMPTS[0], target="Eiffel Tower is")
    with pytest.raises(SteeringError, match="no strength"):
        iw.steering_sweep(model, iw.Steer("resid_post.1", mode="ablate"), [1.0], PROMPTS[0],
                          target=" Paris")


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "mistral", "gemma", "gemma2", "neox"])
def test_every_family(family):
    m = iw.load_model(f"tiny-{family}")
    sae = iw.SAE.random(d_in=m.d_model, n_features=32, site="resid_post.1")
    specs = [iw.Steer(direction(m), 10.0, site="resid_post.1"),
             iw.Steer(sae[3], 0.0, mode="scale"),
             iw.Steer(direction(m, 1), 1.0, site="mlp_out.1", mode="clamp", positions="generated")]
    r = iw.steer(m, specs).generate(PROMPTS, max_new_tokens=3)
    assert list(r.baseline.text) == m.generate(PROMPTS, max_new_tokens=3)
    assert r.steered.tokens != r.baseline.tokens and r.mean_kl > 0


def test_scoring_splits_large_batches(model, monkeypatch):
    from interp_widgets.analysis.steering import engine

    s = iw.steer(model, iw.Steer(direction(model), 8.0, site="resid_post.1", positions=[1, -1]))
    whole = s.logits(PROMPTS + PROMPTS[::-1])
    monkeypatch.setattr(engine, "LOGITS_BUDGET", model.d_vocab * 8)  # one row per trace
    split = s.logits(PROMPTS + PROMPTS[::-1])
    for a, b in zip(whole, split, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_direction_objects_steer_as_unit_vectors(model):
    pos = ["I love Paris in France", "Paris is lovely"]
    neg = ["I love Tokyo in Japan", "Tokyo is lovely"]
    d = iw.directions.from_contrast(model, pos, neg, "resid_post.1", normalize=False)
    spec = iw.Steer(d, 5.0)
    assert spec.kind == "direction" and spec.site == iw.Site("resid_post", 1)
    assert "contrast@resid_post.1" in repr(spec)
    a = iw.steer(model, spec).logits(PROMPTS)
    b = iw.steer(model, iw.Steer(d.unit, 5.0, site="resid_post.1")).logits(PROMPTS)
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, atol=1e-5)
    # clamp on a Direction holds its projection on the unit vector
    _, cache = iw.steer(model, iw.Steer(d, 2.0, mode="clamp")).run_with_cache(PROMPTS, ["resid_post.1"])
    proj = cache["resid_post.1"][cache.attention_mask.bool()] @ d.unit
    assert torch.allclose(proj, torch.full_like(proj, 2.0), atol=1e-4)
    other = iw.load_model("tiny-qwen2")  # same width, another model
    with pytest.raises(DictionaryError, match="tiny-llama"):
        iw.steer(other, spec)


@pytest.mark.parametrize("positions", ["all", "generated", [1], slice(-2, None)])
def test_left_padded_batch_matches_single_prompt_runs(model, positions):
    prompts = ["Hi", "The cat sat on the mat and then the dog ran"]  # very different lengths
    s = iw.steer(model, iw.Steer(direction(model), 12.0, site="resid_post.1", positions=positions))
    batched = s.generate(prompts, max_new_tokens=4)
    for i, p in enumerate(prompts):
        alone = s.generate(p, max_new_tokens=4)
        assert batched.steered.tokens[i] == alone.steered.tokens[0]
        assert batched.baseline.tokens[i] == alone.baseline.tokens[0]
        assert torch.allclose(batched.steered.logprobs[i], alone.steered.logprobs[0], atol=1e-4)


def test_token_match_fires_on_generated_tokens(model):
    prompt = PROMPTS[1]
    base = iw.steer(model, iw.Steer(direction(model), 0.0, site="resid_post.1")).generate(
        prompt, max_new_tokens=6)
    in_prompt = {t.strip() for t in model.to_str_tokens(prompt)}
    gen = base.baseline.str_tokens[0]
    k = next(i for i, t in enumerate(gen[:-1]) if t.strip() and t.strip() not in in_prompt
             and all(g.strip() != t.strip() for g in gen[:i]))
    s = iw.steer(model, iw.Steer(direction(model), 30.0, site="resid_post.1",
                                 positions={"token": gen[k].strip()}))
    r = s.generate(prompt, max_new_tokens=6)
    # nothing to match in the prompt or before token k: identical up to and including it
    assert r.steered.tokens[0][: k + 1] == r.baseline.tokens[0][: k + 1]
    assert torch.allclose(r.steered.logprobs[0][: k + 1], r.baseline.logprobs[0][: k + 1], atol=1e-5)
    # once token k is the input, its position is steered: the next distribution moves
    assert float(r.kl[0][k + 1]) > 1e-3


def test_bfloat16_model_with_sampling():
    m = iw.load_model("tiny-llama", dtype=torch.bfloat16)
    sae = iw.SAE.random(d_in=m.d_model, n_features=32, site="resid_post.1")
    s = iw.steer(m, [iw.Steer(direction(m), 5.0, site="resid_post.1"),
                     iw.Steer(sae[2], 2.0, mode="clamp")])
    r = s.generate(PROMPTS, max_new_tokens=5, temperature=0.8, seed=3)
    assert r.steered.tokens != r.baseline.tokens and r.mean_kl > 0
    greedy = s.generate(PROMPTS, max_new_tokens=5)
    assert list(greedy.baseline.text) == m.generate(PROMPTS, max_new_tokens=5)
