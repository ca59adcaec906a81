"""The antonym prompt on SmolLM2 with the starter transcoders (the default there): the graph's
top target, and ablating its most influential feature group in the real model."""

from __future__ import annotations

import numpy as np
import pytest

import interp_widgets as iw

pytestmark = pytest.mark.smollm

ANTONYM = 'The opposite of "small" is "'


@pytest.fixture(scope="module")
def starter_graph(smollm):
    return iw.attribute(smollm, ANTONYM, max_feature_nodes=256, progress=False)


def test_default_transcoders_are_the_starter_pack(starter_graph):
    pack = iw.load_transcoders("starter")
    assert starter_graph.metadata["transcoders"] == pack.name
    assert starter_graph.metadata["transcoder_layers"] == list(range(30))
    s = starter_graph.scores()
    assert 0.0 < s["replacement"] < 1.0 and 0.0 < s["completeness"] < 1.0


def test_antonym_top_target_and_ablations_checked_on_the_real_model(starter_graph):
    g = starter_graph
    top = g.targets.sort_values("probability", ascending=False).iloc[0]
    assert top["token"].strip() in {"large", "big"}
    group = g.top(10)  # the 10 feature nodes with the most influence on the targets
    out = g.group(list(group["node_id"]), "most influential").intervene({"most influential": 0.0})
    row = out.set_index("node_id").loc[top["node_id"]]
    # the graph predicts the logit falls, and in the real model (through nnsight) it does
    assert row["predicted_change"] < 0
    assert row["real_change"] < 0
    # same direction for most targets
    assert (np.sign(out["real_change"]) == np.sign(out["predicted_change"])).mean() >= 0.7
    # the most influential features hold up every target, so removing all ten is far from
    # linear (2026-11 pack: predicted -6.4, real -1.2, and P(top) rose as its rivals fell more).
    # The features the graph says support the top target itself: zeroing them lowers its
    # probability, and prediction and reality are of the same size (predicted -6.6, real -5.3)
    c = g.contributions(top["node_id"])
    supporters = c[c["kind"] == "feature"].head(10)
    assert (supporters["total"] > 0).all()
    out = g.group(list(supporters["node_id"]), "supporters").intervene({"supporters": 0.0})
    row = out.set_index("node_id").loc[top["node_id"]]
    assert row["predicted_change"] < 0 and row["real_change"] < 0
    assert 0.25 < row["real_change"] / row["predicted_change"] < 4.0
    assert row["prob_after"] < 0.5 * row["prob_before"]
