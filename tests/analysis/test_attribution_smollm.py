"""Attribution graphs on the embedded SmolLM2: exact replacement, conservation, the antonym
prompt's target, and interventions in the real model against the graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.attribution.build import prepare, replacement_forward

pytestmark = pytest.mark.smollm

ANTONYM = 'The opposite of "small" is "'


def _random_tcs(model, width=256, k=16):
    out = {}
    for L in range(model.n_layers):
        tc = iw.Transcoder.random(d_in=model.d_model, n_features=width, layer=L,
                                  architecture="topk", k=k, seed=L, skip=True,
                                  metadata={"model": model.name})
        with torch.no_grad():
            tc.W_skip.copy_(0.02 * torch.randn(model.d_model, model.d_model,
                                               generator=torch.Generator().manual_seed(L)))
        out[L] = tc
    return out


def test_smollm_replacement_reproduces_logits(smollm):
    prep = prepare(smollm, ANTONYM, _random_tcs(smollm))
    _, _, logits = replacement_forward(prep, features=torch.zeros(0, dtype=torch.long))
    real, _ = smollm.run_with_cache(ANTONYM, sites=[])
    assert float((logits.float() - real[0, -1]).abs().max()) < 1e-4 * float(real[0, -1].abs().max()) * 10
    assert torch.allclose(logits.float(), real[0, -1], atol=1e-3, rtol=1e-4)


@pytest.fixture(scope="module")
def neuron_graph(smollm):
    # the model's own neurons in the last 4 layers (exact there); earlier MLPs are error nodes
    return iw.attribute(smollm, ANTONYM, iw.neuron_basis(smollm, range(26, 30)),
                        max_feature_nodes=64, progress=False)


def test_smollm_antonym_graph(neuron_graph):
    g = neuron_graph
    top = g.targets.sort_values("probability", ascending=False)["token"].iat[0]
    assert top.strip() in {"large", "big"}
    n = g.nodes
    # conservation in float32 on the real model: value = edges + bias + dropped
    tg = n[n["kind"].isin(["feature", "logit"])]
    idx = tg.index.to_numpy()
    incoming = np.asarray(g.adjacency[idx].sum(1)).ravel()
    scale = np.maximum(np.asarray(abs(g.adjacency[idx]).sum(1)).ravel(), tg["value"].abs())
    resid = incoming + tg["bias"] + tg["dropped"] - tg["value"]
    assert np.all(np.abs(resid) <= 1e-4 * scale)
    # causality
    coo = g.adjacency.tocoo()
    assert np.all(n["layer"].to_numpy()[coo.col] < n["layer"].to_numpy()[coo.row])
    assert np.all(n["position"].to_numpy()[coo.col] <= n["position"].to_numpy()[coo.row])
    # the neuron basis is exact where it is used: no error there
    errs = n[(n["kind"] == "error") & (n["layer"] >= 26)]
    mlp = g._context.real.mlp_out[26:].norm(dim=-1)
    assert float(errs["norm"].max()) < 1e-4 * float(mlp.max())


def test_smollm_edges_are_frozen_model_effects(neuron_graph):
    g = neuron_graph
    prep = g._context
    act = prep.active
    key = {(int(a), int(b), int(c)): i for i, (a, b, c) in
           enumerate(zip(act.layer.tolist(), act.pos.tolist(), act.feature.tolist(), strict=True))}
    n = g.nodes
    top = int(np.argmax(n["probability"].fillna(-1).to_numpy()))
    j = int(np.nonzero(prep.logit_ids.numpy() == n["token_id"].iat[top])[0][0])
    none = torch.zeros(0, dtype=torch.long)
    _, base, _ = replacement_forward(prep, features=none)
    row = g.adjacency.getrow(top)
    strongest = row.indices[np.argsort(-np.abs(row.data))[:6]]
    for s in strongest:
        src = n.iloc[s]
        kw = {}
        if src["kind"] == "feature":
            fs = torch.ones(len(act))
            fs[key[(src.layer, src.position, src.feature)]] = 0.0
            kw["feature_scale"] = fs
        elif src["kind"] == "error":
            es = torch.ones(prep.lin.n_layers, prep.n_pos)
            es[src.layer, src.position] = 0.0
            kw["error_scale"] = es
        else:
            es = torch.ones(prep.n_pos)
            es[src.position] = 0.0
            kw["embed_scale"] = es
        _, lg, _ = replacement_forward(prep, features=none, **kw)
        w = g.adjacency[top, s]
        assert float(lg[j] - base[j]) == pytest.approx(-w, rel=1e-3, abs=1e-3 * abs(float(base[j])))


def test_smollm_last_layer_ablation_matches_graph(neuron_graph):
    """The graph's strongest supporters of the top target in the last layer, ablated in the real
    model through nnsight: with the final norm frozen the change is the graph's prediction."""
    g = neuron_graph
    c = g.contributions()
    sup = c[(c["kind"] == "feature") & (c["layer"] == 29)].head(5)
    assert (sup["total"] > 0).all()
    out = g.group(list(sup["node_id"]), "supporters").intervene({"supporters": 0.0})
    top = out.set_index("node_id").loc[g.targets.sort_values("probability").node_id.iat[-1]]
    assert top["predicted_change"] == pytest.approx(-sup["total"].sum(), rel=1e-6)
    assert top["predicted_change"] < 0 and top["real_change_frozen_norm"] < 0
    assert top["real_change_frozen_norm"] == pytest.approx(top["predicted_change"], rel=1e-3)
