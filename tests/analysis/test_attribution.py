"""Attribution graphs on tiny models: the replacement model is exact, edges are direct linear
effects (conservation, perturbation), causality, batch-size independence, neuron basis, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.attribution.build import prepare, replacement_forward
from interp_widgets.errors import (
    DictionaryError,
    GraphError,
    MemoryBudgetError,
    PromptError,
)

PROMPT = 'The opposite of "small" is "'


def random_transcoders(model, layers=None, *, width=96, k=6, arch="topk", skip=True, seed=0):
    """Random transcoders with a random (non-zero) skip, so the skip path is exercised."""
    layers = range(model.n_layers) if layers is None else layers
    out = {}
    for L in layers:
        kw = dict(k=k) if arch in ("topk", "batchtopk") else {}
        tc = iw.Transcoder.random(d_in=model.d_model, n_features=width, layer=L, architecture=arch,
                                  seed=seed + L, skip=skip, **kw)
        with torch.no_grad():
            g = torch.Generator().manual_seed(100 + L)
            tc.W_enc.mul_(3.0)
            tc.b_enc.copy_(0.1 * torch.randn(width, generator=g))
            tc.b_dec.copy_(0.05 * torch.randn(model.d_model, generator=g))
            if skip:
                tc.W_skip.copy_(0.05 * torch.randn(model.d_model, model.d_model, generator=g))
        out[L] = tc
    return out


def _active_index(prep):
    a = prep.active
    return {(int(ly), int(p), int(f)): i for i, (ly, p, f) in
            enumerate(zip(a.layer.tolist(), a.pos.tolist(), a.feature.tolist(), strict=True))}


@pytest.fixture(scope="module")
def llama_tc(tiny_llama):
    # layer 2 has no transcoder: it must contribute error nodes only
    return random_transcoders(tiny_llama, [0, 1, 3])


@pytest.fixture(scope="module")
def full_graph(tiny_llama, llama_tc):
    """Every active feature is a node (no cap), float64 so linear identities are tight."""
    return iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=10_000,
                        dtype=torch.float64, progress=False)


# ------------------------------------------------------------------ the replacement model
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-qwen2", "tiny-gemma", "tiny-mistral"])
def test_replacement_with_errors_reproduces_logits(name):
    model = iw.load_model(name)
    tcs = random_transcoders(model, list(range(model.n_layers))[::2])
    prep = prepare(model, PROMPT, tcs)
    _, _, logits = replacement_forward(prep)
    real, _ = model.run_with_cache(PROMPT, sites=[])
    assert torch.allclose(logits.float(), real[0, -1], atol=1e-4, rtol=0)
    # without the error nodes it is a different model: the errors carry real information
    _, _, no_err = replacement_forward(prep, error_scale=torch.zeros(model.n_layers, prep.n_pos))
    assert (no_err.float() - real[0, -1]).abs().max() > 1e-2


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "topk"])
def test_reconstruction_matches_each_architecture(tiny_llama, arch):
    tc = random_transcoders(tiny_llama, [1], arch=arch)[1]
    if arch == "jumprelu":
        with torch.no_grad():
            tc.threshold.fill_(0.05)
    prep = prepare(tiny_llama, PROMPT, {1: tc})
    x = prep.real.mlp_in[1]
    rep = prep.reps[1]
    # the decoder rows + bias + skip the graph uses are exactly what the transcoder computes
    assert torch.allclose(rep.reconstruction(rep.activations(x), x), tc.reconstruct(x), atol=1e-5)
    assert len(prep.active) > 0


# ------------------------------------------------------------------ conservation
def _conservation(graph):
    n = graph.nodes
    tg = n[n["kind"].isin(["feature", "logit"])]
    idx = tg.index.to_numpy()
    A = graph.adjacency
    incoming = np.asarray(A[idx].sum(1)).ravel()
    scale = np.maximum(np.asarray(abs(A[idx]).sum(1)).ravel(), tg["value"].abs().to_numpy())
    resid = incoming + tg["bias"].to_numpy() + tg["dropped"].to_numpy() - tg["value"].to_numpy()
    return resid, scale, tg


def test_conservation_every_target(full_graph):
    resid, scale, tg = _conservation(full_graph)
    assert len(tg) > 50
    assert np.all(np.abs(resid) <= 1e-4 * scale + 1e-6)
    assert np.abs(tg["dropped"]).max() < 1e-9  # nothing left out: every active feature is a node
    # the bias terms are real and reported separately (b_enc, b_dec, through the skip)
    assert tg["bias"].abs().max() > 1e-3


def test_conservation_float32_and_capped(tiny_llama, llama_tc):
    g = iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=40, progress=False)
    resid, scale, tg = _conservation(g)
    assert (g.nodes["kind"] == "feature").sum() == 40
    # left-out features show up as 'dropped', so the identity still holds
    assert tg["dropped"].abs().max() > 1e-4
    assert np.all(np.abs(resid) <= 1e-4 * scale + 1e-5)


# ------------------------------------------------------------------ edges are direct effects
def test_edge_equals_change_when_source_removed(full_graph):
    prep = full_graph._context
    idx = _active_index(prep)
    nodes = full_graph.nodes
    coo = full_graph.adjacency.tocoo()
    rng = np.random.default_rng(0)
    checked = {"feature": 0, "error": 0, "embedding": 0}
    strong = np.argsort(-np.abs(coo.data))
    for e in list(strong[:25]) + list(rng.choice(coo.nnz, 35, replace=False)):
        s, t, w = int(coo.col[e]), int(coo.row[e]), float(coo.data[e])
        src, tgt = nodes.iloc[s], nodes.iloc[t]
        kw = {}
        if src["kind"] == "feature":
            fs = torch.ones(len(prep.active))
            fs[idx[(src.layer, src.position, src.feature)]] = 0.0
            kw["feature_scale"] = fs
        elif src["kind"] == "error":
            es = torch.ones(prep.lin.n_layers, prep.n_pos)
            es[src.layer, src.position] = 0.0
            kw["error_scale"] = es
        else:
            es = torch.ones(prep.n_pos)
            es[src.position] = 0.0
            kw["embed_scale"] = es
        fi = torch.tensor([idx[(tgt.layer, tgt.position, tgt.feature)]] if tgt["kind"] == "feature" else [],
                          dtype=torch.long)
        base_f, base_l, _ = replacement_forward(prep, features=fi)
        f, lg, _ = replacement_forward(prep, features=fi, **kw)
        if tgt["kind"] == "feature":
            change = float(f[0] - base_f[0])
        else:
            j = int(np.nonzero(prep.logit_ids.numpy() == tgt.token_id)[0][0])
            change = float(lg[j] - base_l[j])
        assert change == pytest.approx(-w, rel=1e-6, abs=1e-9), (src.node_id, tgt.node_id)
        checked[src["kind"]] += 1
    assert all(v > 0 for v in checked.values()), checked


def test_no_edge_from_later_position_or_layer(full_graph):
    n = full_graph.nodes
    coo = full_graph.adjacency.tocoo()
    sl, tl = n["layer"].to_numpy()[coo.col], n["layer"].to_numpy()[coo.row]
    sp_, tp = n["position"].to_numpy()[coo.col], n["position"].to_numpy()[coo.row]
    assert coo.nnz > 1000
    assert np.all(sl < tl)  # strictly earlier layer (embeddings are -1, logits n_layers)
    assert np.all(sp_ <= tp)
    # attention really moves information: some edges cross positions
    assert np.any(sp_ < tp)
    # sources are never logits, targets never embeddings or errors
    kinds = n["kind"].to_numpy()
    assert not np.any(kinds[coo.col] == "logit")
    assert set(kinds[coo.row]) <= {"feature", "logit"}


def test_results_do_not_depend_on_batch_size(tiny_llama, llama_tc):
    kw = dict(max_feature_nodes=60, progress=False)
    a = iw.attribute(tiny_llama, PROMPT, llama_tc, batch_size=3, **kw)
    b = iw.attribute(tiny_llama, PROMPT, llama_tc, batch_size=64, **kw)
    assert list(a.nodes["node_id"]) == list(b.nodes["node_id"])
    diff = abs(a.adjacency - b.adjacency).max()
    assert diff <= 1e-5 * abs(b.adjacency).max()


# ------------------------------------------------------------------ neuron basis: exact
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_neuron_basis_has_zero_errors_and_replacement_score_one(name):
    model = iw.load_model(name)
    # every neuron is a node (short prompt): the graph is the whole exact replacement model
    g = iw.attribute(model, "Hello world", "neurons", max_feature_nodes=100_000,
                     dtype=torch.float64, progress=False)
    prep = g._context
    assert (g.nodes["kind"] == "feature").sum() == len(prep.active)
    err = prep.errors.norm(dim=-1)
    mlp = prep.real.mlp_out.norm(dim=-1)
    assert float((err / mlp).max()) < 1e-5
    s = g.scores()
    assert s["replacement"] == pytest.approx(1.0, abs=1e-5)
    assert s["completeness"] == pytest.approx(1.0, abs=1e-5)
    resid, scale, _ = _conservation(g)
    assert np.all(np.abs(resid) <= 1e-4 * scale + 1e-6)
    # capped: the left-out neurons count as unexplained (unless asked to ignore them)
    capped = iw.attribute(model, "Hello world", "neurons", max_feature_nodes=20, progress=False)
    assert capped.scores()["replacement"] < 0.99
    assert capped.scores(count_dropped=False)["replacement"] == pytest.approx(1.0, abs=1e-5)


def test_random_transcoders_are_not_exact(full_graph):
    s = full_graph.scores()
    assert 0.0 < s["replacement"] < 0.999
    assert 0.0 < s["completeness"] < 0.999


# ------------------------------------------------------------------ targets and nodes
def test_logit_targets_top_tokens_and_nodes_table(full_graph, tiny_llama):
    t = full_graph.targets
    assert 1 <= len(t) <= 10
    p = t["probability"].to_numpy()
    assert np.all(np.diff(p) <= 0)
    real, _ = tiny_llama.run_with_cache(PROMPT, sites=[])
    probs = torch.softmax(real[0, -1].double(), -1)
    top = torch.topk(probs, len(t)).indices.tolist()
    assert t["token_id"].tolist() == top
    # up to 0.95 cumulative probability or 10 tokens, whichever comes first
    assert len(t) == 10 or p.sum() >= 0.95
    n = full_graph.nodes
    for col in ("node_id", "kind", "layer", "position", "feature", "activation", "influence",
                "label", "token", "probability"):
        assert col in n.columns
    assert n["node_id"].is_unique
    assert set(n["kind"]) == {"feature", "error", "embedding", "logit"}
    emb = n[n["kind"] == "embedding"]
    assert emb["token"].tolist() == tiny_llama.to_str_tokens(PROMPT)
    assert full_graph.str_tokens == tiny_llama.to_str_tokens(PROMPT)
    # a layer without transcoder has error nodes and no features
    assert not ((n["kind"] == "feature") & (n["layer"] == 2)).any()
    assert ((n["kind"] == "error") & (n["layer"] == 2)).sum() == len(emb)


def test_explicit_targets(tiny_llama, llama_tc):
    tok = tiny_llama.tokenizer
    ids = [tok(" Paris", add_special_tokens=False)["input_ids"], tok(" is", add_special_tokens=False)["input_ids"]]
    ids = [i[0] for i in ids if len(i) == 1]
    assert ids
    g = iw.attribute(tiny_llama, PROMPT, llama_tc, targets=[tok.decode([i]) for i in ids] + [ids[0]],
                     max_feature_nodes=20, progress=False)
    assert g.targets["token_id"].tolist() == ids  # duplicates removed, order kept
    with pytest.raises(GraphError, match="one token"):
        iw.attribute(tiny_llama, PROMPT, llama_tc, targets=["The opposite of"], progress=False)
    with pytest.raises(GraphError, match="out of range"):
        iw.attribute(tiny_llama, PROMPT, llama_tc, targets=[10**7], progress=False)


def test_feature_ranking_keeps_influential_features(tiny_llama, llama_tc, full_graph):
    capped = iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=30,
                          dtype=torch.float64, progress=False)
    full = full_graph.nodes
    feats = full[full["kind"] == "feature"].sort_values("influence", ascending=False)
    chosen = set(capped.nodes.loc[capped.nodes["kind"] == "feature", "node_id"])
    # the capped graph picks by influence: most of the full graph's top features are in it
    top = list(feats["node_id"][:15])
    assert sum(i in chosen for i in top) >= 10
    # and its edges agree with the full graph's on the shared nodes
    ids = capped.nodes["node_id"]
    fi = full_graph.index(ids)
    sub = full_graph.adjacency[fi][:, fi]
    assert abs(sub - capped.adjacency).max() < 1e-9


# ------------------------------------------------------------------ errors, budget, estimate
def test_clear_errors(tiny_llama, llama_tc):
    neox = iw.load_model("tiny-neox")
    with pytest.raises(GraphError, match="not implemented for the 'gpt_neox' family"):
        iw.attribute(neox, PROMPT, progress=False)
    sae = iw.SAE.random(d_in=64, n_features=32, site="resid_post.1")
    with pytest.raises(GraphError, match="read mlp_in.1 and write mlp_out.1"):
        iw.attribute(tiny_llama, PROMPT, {1: sae}, progress=False)
    wrong = iw.Transcoder.random(d_in=32, n_features=16, layer=1)
    with pytest.raises(DictionaryError, match="d_model=64"):
        iw.attribute(tiny_llama, PROMPT, {1: wrong}, progress=False)
    with pytest.raises(GraphError, match="layers 0-3"):
        iw.attribute(tiny_llama, PROMPT, {7: llama_tc[0]}, progress=False)
    with pytest.raises(PromptError):
        iw.attribute(tiny_llama, "   ", llama_tc, progress=False)
    with pytest.raises(GraphError, match="batch_size"):
        iw.attribute(tiny_llama, PROMPT, llama_tc, batch_size=0, progress=False)
    with pytest.raises(GraphError, match="memory_budget"):
        iw.attribute(tiny_llama, PROMPT, llama_tc, memory_budget="lots", progress=False)


def test_memory_budget_refuses_with_estimate(tiny_llama, llama_tc):
    est = iw.estimate_attribution(tiny_llama, PROMPT, llama_tc, max_feature_nodes=100)
    assert est.n_active_features >= est.n_feature_nodes > 0
    assert est.memory_bytes > 0 and est.seconds > 0
    assert "tokens" in repr(est) and not est.to_pandas().empty
    with pytest.raises(MemoryBudgetError, match="Lower max_feature_nodes") as e:
        iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=100,
                     memory_budget=est.memory_bytes // 2, progress=False)
    assert "memory_budget" in str(e.value)
    g = iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=100,
                     memory_budget=est.memory_bytes * 2, progress=False)
    assert (g.nodes["kind"] == "feature").sum() == est.n_feature_nodes
    assert g.metadata["n_active_features"] == est.n_active_features


def test_estimate_grows_with_graph_size(tiny_llama, llama_tc):
    small = iw.estimate_attribution(tiny_llama, "Hello world", llama_tc, max_feature_nodes=10)
    big = iw.estimate_attribution(tiny_llama, PROMPT * 3, llama_tc, max_feature_nodes=500)
    assert big.memory_bytes > small.memory_bytes
    assert big.seconds > small.seconds


def test_interrupt_leaves_model_usable(tiny_llama, llama_tc, monkeypatch):
    from interp_widgets.analysis.attribution import engine

    calls = {"n": 0}
    real_rows = engine.EdgeEngine.rows

    def boom(self, t):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_rows(self, t)

    monkeypatch.setattr(engine.EdgeEngine, "rows", boom)
    with pytest.raises(KeyboardInterrupt):
        iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=50, batch_size=4, progress=True)
    monkeypatch.setattr(engine.EdgeEngine, "rows", real_rows)
    # nothing was left on the model: a plain forward equals the real model, and attribution runs
    before, _ = tiny_llama.run_with_cache(PROMPT, sites=[])
    with torch.no_grad():
        raw = tiny_llama.hf(tiny_llama.tokenize(PROMPT).input_ids).logits
    assert torch.allclose(before, raw, atol=1e-6)
    g = iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=10, progress=False)
    assert (g.nodes["kind"] == "feature").sum() == 10


# ------------------------------------------------------------------ interventions (real model)
def test_intervene_real_model_against_graph_prediction(tiny_llama):
    """The real model (attention patterns and norms free) follows the graph's linear prediction
    roughly; the direct-effect prediction is exactly the frozen replacement model's change."""
    g = iw.attribute(tiny_llama, PROMPT, "neurons", max_feature_nodes=400,
                     dtype=torch.float64, progress=False)
    top = g.top(8)
    out = g.group(list(top["node_id"]), "top").intervene({"top": 0.9})
    assert list(out.columns[:4]) == ["token", "node_id", "real_change", "predicted_change"]
    assert out["token"].tolist() == g.targets["token"].tolist()
    real, pred = out["real_change"].to_numpy(), out["predicted_change"].to_numpy()
    assert np.abs(real).max() > 1e-3
    assert np.corrcoef(real, pred)[0, 1] > 0.5
    strongest = int(np.argmax(np.abs(pred)))
    assert np.sign(real[strongest]) == np.sign(pred[strongest])
    # predicted_direct == what the frozen replacement model does with those features scaled
    prep = g._context
    idx = _active_index(prep)
    fs = torch.ones(len(prep.active))
    for r in top.itertuples():
        fs[idx[(r.layer, r.position, r.feature)]] = 0.9
    none = torch.zeros(0, dtype=torch.long)
    _, base, _ = replacement_forward(prep, features=none)
    _, scaled, _ = replacement_forward(prep, feature_scale=fs, features=none)
    assert np.allclose(out["predicted_direct"], (scaled - base).numpy(), rtol=1e-6, atol=1e-9)


def test_intervene_needs_model_for_loaded_graph(full_graph, tiny_llama, llama_tc, tmp_path):
    g = iw.AttributionGraph.load(full_graph.save(tmp_path / "g"))
    node = g.top(1)["node_id"].iat[0]
    with pytest.raises(GraphError, match="pass model="):
        g.intervene({node: 0.0})
    a = g.intervene({node: 0.0}, model=tiny_llama, transcoders=llama_tc)
    b = full_graph.intervene({node: 0.0})
    assert np.allclose(a["real_change"], b["real_change"], atol=1e-5)
    with pytest.raises(GraphError, match="neither a node id nor a group"):
        full_graph.intervene({"nope": 0.0})
    with pytest.raises(GraphError, match="is a logit"):
        full_graph.intervene({full_graph.targets["node_id"].iat[0]: 0.0})


def test_contributions_match_single_node_predictions(tiny_llama, llama_tc):
    g = iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=200, dtype=torch.float64,
                     progress=False)
    top_id = g.targets.sort_values("probability", ascending=False)["node_id"].iat[0]
    c = g.contributions(top_id)
    assert c.equals(g.contributions())  # default: the most probable target
    assert np.all(np.diff(c["total"].to_numpy()) <= 1e-12)  # sorted, largest first
    assert g.n_nodes - 1 == len(c)
    t = g.index(top_id)[0]
    direct = g.adjacency.getrow(t).toarray().ravel()
    by_id = c.set_index("node_id")
    ids = g.nodes["node_id"].to_numpy()
    assert np.allclose(by_id.loc[ids[direct != 0], "direct"], direct[direct != 0])
    # removing one node: the graph's propagated prediction is -total for that node
    for nid in [c["node_id"].iat[0], c["node_id"].iat[-1], g.top(1)["node_id"].iat[0]]:
        out = g.intervene({nid: 0.0}).set_index("node_id")
        assert out.loc[top_id, "predicted_change"] == pytest.approx(-by_id.loc[nid, "total"],
                                                                     rel=1e-9, abs=1e-12)
    with pytest.raises(GraphError, match="not a target"):
        g.contributions("zzz-not-a-token")


def test_last_layer_ablation_is_exact_with_final_norm_frozen(tiny_llama, llama_tc):
    """Between the last layer's MLP and the logits there is only the final norm: with its scale
    frozen the real model must move exactly as the graph predicts."""
    g = iw.attribute(tiny_llama, PROMPT, llama_tc, max_feature_nodes=10_000, progress=False)
    n = g.nodes
    last = n[(n["kind"] == "feature") & (n["layer"] == 3) & (n["position"] == n["position"].max())]
    assert len(last) >= 3
    out = g.group(list(last["node_id"][:5]), "last").intervene({"last": 0.0})
    assert np.abs(out["predicted_change"]).max() > 1e-2
    assert np.allclose(out["real_change_frozen_norm"], out["predicted_change"], rtol=1e-4, atol=1e-5)
    # the free model also rescales through the final norm, so it differs
    assert not np.allclose(out["real_change"], out["predicted_change"], rtol=1e-4, atol=1e-5)


def test_intervene_on_embeddings_and_errors(full_graph):
    n = full_graph.nodes
    emb = n.loc[n["kind"] == "embedding", "node_id"].iat[-1]
    err = n.loc[(n["kind"] == "error") & (n["layer"] == 2), "node_id"].iat[-1]
    same = full_graph.intervene({emb: 1.0, err: 1.0})  # scale 1: nothing changes
    assert np.abs(same["real_change"]).max() < 1e-5
    assert np.abs(same["predicted_change"]).max() == 0.0
    out = full_graph.intervene({emb: 0.0, err: 0.5})
    assert np.abs(out["real_change"]).max() > 1e-3
    assert np.all(np.isfinite(out["predicted_change"]))
