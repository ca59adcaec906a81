"""Dictionary training: planted-feature recovery, real nnsight streaming, resume, determinism, metrics."""

from __future__ import annotations

import pytest
import torch

import interp_widgets as iw
from interp_widgets.corpus import Corpus
from interp_widgets.dictionaries.base import SAE, Transcoder, TranscoderSet
from interp_widgets.dictionaries.train import (
    DictionarySpec,
    ShuffleBuffer,
    TrainConfig,
    _splice_losses,
    evaluate,
    train_dictionaries,
)
from interp_widgets.errors import DictionaryError, SiteError
from interp_widgets.models.sites import Site

TEXT = [f"Line {i}: the {['cat', 'dog', 'bird', 'fish'][i % 4]} sat on mat number {i * 3}. "
        "Then it went home for dinner." for i in range(400)]


def _planted_stream(d=32, m=48, active=3, n_batches=300, rows=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(m, d, generator=g)
    truth /= truth.norm(dim=-1, keepdim=True)
    site = Site("resid_post", 0)

    def stream():
        gg = torch.Generator().manual_seed(seed + 1)
        for _ in range(n_batches):
            idx = torch.rand(rows, m, generator=gg).argsort(-1)[:, :active]
            mags = torch.rand(rows, active, generator=gg) * 2 + 0.5
            coef = torch.zeros(rows, m).scatter_(1, idx, mags)
            yield {site: coef @ truth}

    return truth, site, stream


def test_topk_sae_recovers_planted_sparse_directions():
    truth, site, stream = _planted_stream()
    cfg = TrainConfig(max_tokens=10**9, batch_size=2, seq_len=129, lr=3e-3, warmup_steps=20,
                      buffer_batches=2, dead_tokens=5_000, seed=0)
    dicts, report = train_dictionaries(None, [DictionarySpec.sae(site, 96, 3)], None, config=cfg,
                                       activations=stream(), d_model=32, progress=False)
    sae = dicts[str(site)]
    dec = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
    best = (truth @ dec.T).max(dim=1).values  # best-matching learned direction per true feature
    assert (best > 0.9).float().mean() >= 0.8, best
    # the exported SAE (scales folded in) reconstructs data in original units
    x = next(stream())[site]
    fvu = (x - sae.reconstruct(x)).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert fvu < 0.2
    assert report.stopped_by == "corpus_end" and report.tokens > 50_000


def test_skip_transcoder_learns_the_linear_part_and_planted_features():
    # y = x @ A (a dense linear map) + sparse planted features of x's own code: the skip must
    # take the linear part (A, in model units after the scales are folded back) and the
    # features the sparse rest; without the skip the same budget leaves much more unexplained
    g = torch.Generator().manual_seed(3)
    d, m, active = 32, 48, 3
    A = torch.randn(d, d, generator=g) * 0.3
    truth = torch.randn(m, d, generator=g)
    truth /= truth.norm(dim=-1, keepdim=True)
    src, dst = Site("mlp_in", 0), Site("mlp_out", 0)

    def stream(seed=1, n=300, rows=256):
        gg = torch.Generator().manual_seed(seed)
        for _ in range(n):
            x = torch.randn(rows, d, generator=gg) * 2.0
            idx = torch.rand(rows, m, generator=gg).argsort(-1)[:, :active]
            coef = torch.zeros(rows, m).scatter_(1, idx, torch.rand(rows, active, generator=gg) + 0.5)
            yield {src: x, dst: 5.0 * (x @ A + coef @ truth)}

    def fit(skip):
        cfg = TrainConfig(max_tokens=10**9, batch_size=2, seq_len=129, lr=3e-3, warmup_steps=20,
                          buffer_batches=2, dead_tokens=5_000, seed=0)
        spec = DictionarySpec.transcoder(0, 96, 3, skip=skip)
        dicts, _ = train_dictionaries(None, [spec], None, config=cfg, activations=stream(),
                                      d_model=d, progress=False)
        return dicts["transcoder.0"]

    tc = fit(True)
    assert isinstance(tc, Transcoder) and tc.W_skip is not None
    rel = (tc.W_skip - 5.0 * A).norm() / (5.0 * A).norm()
    assert rel < 0.15, rel
    rows = next(stream(seed=99, n=1))
    x, y = rows[src], rows[dst]

    def fvu(t):
        with torch.no_grad():
            return float((y - t.reconstruct(x)).pow(2).sum() / (y - y.mean(0)).pow(2).sum())

    plain = fit(False)
    assert plain.W_skip is None
    assert fvu(tc) < 0.1 and fvu(tc) < 0.5 * fvu(plain), (fvu(tc), fvu(plain))


def test_resampling_reinitialises_only_dead_features_from_high_error_inputs():
    from interp_widgets.dictionaries.train import TopKTrainee

    g = torch.Generator().manual_seed(0)
    spec = DictionarySpec.transcoder(0, 40, 4, skip=True)
    t = TopKTrainee(spec, 16, 16, g)
    opt = torch.optim.Adam(t.parameters(), lr=1e-3)
    x, y = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    loss, _ = t.loss(x, y, TrainConfig())
    loss.backward()
    opt.step()
    before = {k: v.detach().clone() for k, v in t.state_dict().items()}
    cfg = TrainConfig(dead_tokens=1_000)
    with torch.no_grad():
        _, vals, idx = t.encode_topk(x)
        err = y - (t.decode_sparse(vals, idx) + t.b_dec + x @ t.W_skip)
    errs_before = err / err.norm(dim=-1, keepdim=True)
    dead = torch.tensor([3, 17, 29])
    t.since_fired[dead] = 5_000
    assert t.resample_dead(x, y, opt, cfg, g) == 3 and t.resampled == 3
    live = torch.ones(40, dtype=torch.bool)
    live[dead] = False
    # live features untouched; dead ones reset, unit decoder rows, encoder at the live mean norm
    assert torch.equal(t.W_dec[live], before["W_dec"][live]) and torch.equal(t.W_enc[:, live], before["W_enc"][:, live])
    assert not torch.allclose(t.W_dec[dead], before["W_dec"][dead])
    torch.testing.assert_close(t.W_dec[dead].norm(dim=-1), torch.ones(3))
    mean_norm = before["W_enc"][:, live].norm(dim=0).mean()
    torch.testing.assert_close(t.W_enc[:, dead].norm(dim=0), mean_norm.expand(3))
    assert (t.b_enc[dead] == 0).all() and (t.since_fired[dead] == 0).all()
    # each new decoder row is the normalised residual error of one batch input (errors taken
    # before the resampling, which is what it drew from)
    cos = t.W_dec[dead] @ errs_before.T
    torch.testing.assert_close(cos.max(dim=1).values, torch.ones(3))
    assert opt.state[t.W_dec]["exp_avg"][dead].abs().sum() == 0
    assert opt.state[t.W_enc]["exp_avg_sq"][:, dead].abs().sum() == 0
    assert opt.state[t.W_dec]["exp_avg"][live].abs().sum() > 0
    # nothing dead: nothing changes
    assert t.resample_dead(x, y, opt, cfg, g) == 0


def test_multi_topk_gives_the_features_ranked_k_to_4k_a_gradient():
    from interp_widgets.dictionaries.train import TopKTrainee

    g = torch.Generator().manual_seed(0)
    t = TopKTrainee(DictionarySpec.transcoder(0, 64, 2, skip=True), 16, 16, g)
    x, y = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    with torch.no_grad():
        ranks = (x @ t.W_enc + t.b_enc).argsort(dim=-1, descending=True)
    in_top_k = torch.zeros(64, dtype=torch.bool)
    in_top_k[ranks[:, :2].flatten()] = True
    in_top_4k = torch.zeros(64, dtype=torch.bool)
    in_top_4k[ranks[:, :8].flatten()] = True
    only_4k = in_top_4k & ~in_top_k
    assert only_4k.any()
    grads = {}
    for coef in (0.0, 0.125):
        t.zero_grad()
        loss, stats = t.loss(x, y, TrainConfig(multi_topk=coef))
        loss.backward()
        grads[coef] = t.W_enc.grad.abs().sum(0)
    assert (grads[0.0][only_4k] == 0).all()  # plain TopK: no gradient below rank k
    assert (grads[0.125][only_4k] > 0).all()
    assert (grads[0.125][~in_top_4k] == 0).all() and stats["fvu_4k"] > 0


def test_lr_scale_gives_one_dictionary_its_own_learning_rate():
    _, site, stream = _planted_stream(n_batches=30)

    def run(lr, scale):
        cfg = TrainConfig(max_tokens=10**9, batch_size=2, seq_len=129, lr=lr, warmup_steps=5,
                          buffer_batches=2, seed=0)
        spec = DictionarySpec.sae(site, 64, 3, lr_scale=scale)
        d, _ = train_dictionaries(None, [spec], None, config=cfg, activations=stream(), d_model=32,
                                  progress=False)
        return d[str(site)]

    half = run(2e-3, 0.5)
    assert torch.equal(half.W_dec, run(1e-3, 1.0).W_dec)  # lr 2e-3 x 0.5 is lr 1e-3, step for step
    assert not torch.equal(half.W_dec, run(2e-3, 1.0).W_dec)
    assert half.metadata["lr"] == pytest.approx(1e-3)
    with pytest.raises(DictionaryError, match="lr_scale"):
        run(1e-3, 0.0)


def test_resampling_runs_inside_training_and_is_reported():
    truth, site, stream = _planted_stream()
    cfg = TrainConfig(max_tokens=10**9, batch_size=2, seq_len=129, lr=3e-3, warmup_steps=20,
                      buffer_batches=2, dead_tokens=2_000, resample_every=10, seed=0)
    # 400 features for 48 true ones: many die, and get resampled
    dicts, report = train_dictionaries(None, [DictionarySpec.sae(site, 400, 3)], None, config=cfg,
                                       activations=stream(), d_model=32, progress=False)
    assert report.metrics[str(site)]["resampled"] > 0
    sae = dicts[str(site)]
    dec = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
    assert ((truth @ dec.T).max(dim=1).values > 0.9).float().mean() >= 0.8


def test_random_directions_are_not_recovered_without_training():
    # the same metric on an untrained dictionary stays low: the planted test above can fail
    truth, _, _ = _planted_stream()
    sae = SAE.random(d_in=32, n_features=96, site="resid_post.0", architecture="topk", k=3, seed=5)
    best = (truth @ sae.W_dec.T).max(dim=1).values
    assert (best > 0.9).float().mean() < 0.1


def test_one_forward_trains_sae_and_transcoders_on_tiny_model(tiny_llama, tmp_path):
    corpus = Corpus.from_strings(TEXT)
    cfg = TrainConfig(max_tokens=8_000, batch_size=4, seq_len=32, buffer_batches=2, seed=1,
                      lr=3e-3, warmup_steps=5)
    specs = [DictionarySpec.transcoder(1, 64, 8), DictionarySpec.sae("resid_post.2", 128, 8)]
    dicts, report = train_dictionaries(tiny_llama, specs, corpus, config=cfg, progress=False)
    tc, sae = dicts["transcoder.1"], dicts["resid_post.2"]
    assert isinstance(tc, Transcoder) and tc.site == Site("mlp_in", 1) and tc.out_site == Site("mlp_out", 1)
    assert isinstance(sae, SAE) and sae.architecture == "topk" and sae.k == 8
    norms = sae.W_dec.norm(dim=-1)  # unit-norm rows in training units, one common scale after export
    assert torch.allclose(norms, norms[0].expand_as(norms), rtol=1e-4)
    assert report.tokens >= 6_000 and sae.metadata["tokens_seen"] == report.tokens
    assert sae.metadata["model"] == "tiny-llama"
    m = evaluate(tiny_llama, dicts, Corpus.from_strings(TEXT[:60]), max_tokens=1024, batch_size=4,
                 seq_len=32, ce_batches=1)
    for name in dicts:
        assert 0 <= m[name]["fvu"] < 1.0  # better than predicting the mean
        assert 0 < m[name]["l0"] <= 8
        assert 0 <= m[name]["dead_fraction"] <= 1
        assert {"ce_clean", "ce_spliced", "ce_zero", "ce_loss_recovered"} <= set(m[name])
    # round trip through our format keeps behaviour
    sae.save(tmp_path / "sae")
    again = iw.dictionaries.base.load_ours(tmp_path / "sae")
    x = torch.randn(5, tiny_llama.d_model)
    assert torch.allclose(again.encode(x), sae.encode(x), atol=1e-5)


def test_training_is_deterministic_and_resumes_from_checkpoint(tiny_llama, tmp_path):
    corpus = Corpus.from_strings(TEXT)
    cfg = TrainConfig(max_tokens=1_500, batch_size=4, seq_len=32, buffer_batches=2, seed=3)
    spec = [DictionarySpec.sae("resid_post.1", 64, 4)]
    a, _ = train_dictionaries(tiny_llama, spec, corpus, config=cfg, progress=False)
    b, _ = train_dictionaries(tiny_llama, spec, corpus, config=cfg, progress=False)
    assert torch.equal(a["resid_post.1"].W_dec, b["resid_post.1"].W_dec)
    # first run stops early; a second call with a larger budget continues from the checkpoint
    ck = tmp_path / "ck"
    first, r1 = train_dictionaries(tiny_llama, spec, corpus, config=cfg, checkpoint_dir=ck, progress=False)
    assert (ck / "checkpoint.safetensors").is_file() and (ck / "checkpoint.json").is_file()
    cfg2 = TrainConfig(max_tokens=3_000, batch_size=4, seq_len=32, buffer_batches=2, seed=3)
    second, r2 = train_dictionaries(tiny_llama, spec, corpus, config=cfg2, checkpoint_dir=ck, progress=False)
    assert r2.tokens >= 3_000 and r2.steps > r1.steps
    assert not torch.equal(first["resid_post.1"].W_dec, second["resid_post.1"].W_dec)


def test_interrupt_saves_checkpoint_and_leaves_model_clean(tiny_llama, tmp_path):
    def docs():
        for i, t in enumerate(TEXT):
            if i == 60:
                raise KeyboardInterrupt
            yield t

    corpus = Corpus(docs, name="interrupting")
    cfg = TrainConfig(max_tokens=100_000, batch_size=4, seq_len=32, buffer_batches=2)
    with pytest.raises(KeyboardInterrupt, match="resume"):
        train_dictionaries(tiny_llama, [DictionarySpec.sae("resid_post.1", 32, 4)], corpus, config=cfg,
                           checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoint.json").is_file()
    # no hooks or edits left behind: a clean forward still matches plain transformers
    ids = tiny_llama.tokenize("the cat sat").input_ids
    with torch.no_grad():
        ref = tiny_llama.hf(input_ids=ids).logits
    logits, _ = tiny_llama.run_with_cache("the cat sat", sites=[])
    assert torch.allclose(logits, ref, atol=1e-5)


def test_splice_identity_matches_clean_and_zero_ablation_hurts(tiny_llama):
    ids = torch.randint(5, tiny_llama.d_vocab, (2, 24))
    clean = _splice_losses(tiny_llama, ids, {})
    same = _splice_losses(tiny_llama, ids, {Site("mlp_out", 1): (Site("mlp_out", 1), lambda x: x)})
    zero = _splice_losses(tiny_llama, ids, {Site("resid_post", 1): (Site("resid_post", 1), torch.zeros_like)})
    assert torch.allclose(clean, same, atol=1e-5)
    assert abs(float(zero) - float(clean)) > 1e-3


def test_shuffle_buffer_mixes_batches_and_keeps_sites_aligned():
    g = torch.Generator().manual_seed(0)
    s1, s2 = Site("mlp_in", 0), Site("mlp_out", 0)
    buf = ShuffleBuffer(8, {s1: 1, s2: 1}, g)
    outs = []
    for b in range(6):
        rows = torch.arange(b * 4, b * 4 + 4).float().view(4, 1)
        out = buf.push({s1: rows, s2: rows * 10})
        if out is not None:
            outs.append(out)
            assert torch.equal(out[s2], out[s1] * 10)
    assert outs and len(outs) == 4
    drawn = torch.cat([o[s1] for o in outs]).flatten()
    assert len(set(drawn.tolist())) == len(drawn)  # each row leaves once
    assert drawn.min() < 8 and any(int(v) // 4 != i // 4 + 2 for i, v in enumerate(drawn.tolist()))


def test_public_wrappers_and_errors(tiny_llama):
    corpus = Corpus.from_strings(TEXT[:200])
    sae = iw.train_sae(tiny_llama, "resid_post.0", corpus, n_features=32, k=4, max_tokens=2_000,
                       batch_size=4, seq_len=32, buffer_batches=1, progress=False)
    assert sae.site == Site("resid_post", 0) and "fvu" in sae.metadata["training"]
    tcs = iw.train_transcoders(tiny_llama, [0, 2], corpus, n_features=32, k=4, max_tokens=2_000,
                               batch_size=4, seq_len=32, buffer_batches=1, progress=False)
    assert isinstance(tcs, TranscoderSet) and tcs.layers == [0, 2]
    with pytest.raises(SiteError):
        iw.train_sae(tiny_llama, "resid_post.99", corpus, progress=False)
    with pytest.raises(DictionaryError, match="k must be"):
        train_dictionaries(tiny_llama, [DictionarySpec.sae("resid_post.0", 8, 9)], corpus, progress=False)
