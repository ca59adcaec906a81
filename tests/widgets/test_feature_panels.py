"""FeaturePanel and FeatureDashboard, Python side, on a tiny model with random SAEs."""

from __future__ import annotations

import numpy as np
import pytest

import interp_widgets as iw
from interp_widgets.widgets._base import from_bytes

TEXTS = [
    "The cat sat on the mat. The dog sat on the log.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "One two three four five six seven eight nine ten.",
] * 4


@pytest.fixture(scope="module")
def saes(tiny_llama):
    a = iw.SAE.random(d_in=tiny_llama.d_model, n_features=96, site="resid_post.1", architecture="topk", k=6, seed=1)
    b = iw.SAE.random(d_in=tiny_llama.d_model, n_features=64, site="resid_post.2", architecture="topk", k=6, seed=2)
    a.name, b.name = "sae.L1", "sae.L2"
    a.labels[5] = "cats and mats"
    b.labels[7] = "capital cities"
    return a, b


@pytest.fixture(scope="module")
def index(tiny_llama, saes):
    return iw.scan(tiny_llama, saes[0], iw.Corpus.from_strings(TEXTS), max_tokens=400, seq_len=16, window=8, top_k=6,
                   batch_size=4, progress=False)


def test_prompt_tokens_features_and_values(tiny_llama, saes):
    sel = iw.Selection()
    panel = iw.FeaturePanel(tiny_llama, list(saes), prompt="The cat sat on the mat", selection=sel)
    acts = iw.feature_activations(tiny_llama, list(saes), ["The cat sat on the mat"])
    assert panel.tokens == list(acts.str_tokens[0])
    assert panel.is_sink[0] is True
    assert panel.selected_token == len(panel.tokens) - 1
    top = acts.top_features(-1, k=12, dictionary="sae.L1")
    assert [r["feature"] for r in panel.token_features] == top["feature"].tolist()
    assert panel.feature == top["feature"].iloc[0]               # the top feature is pre-selected
    np.testing.assert_allclose(from_bytes(panel.token_values), acts.feature_values(("sae.L1", panel.feature)))
    assert sel.feature == saes[0][panel.feature]

    panel.selected_token = 2
    assert [r["feature"] for r in panel.token_features] == acts.top_features(2, k=12, dictionary="sae.L1")["feature"].tolist()
    assert sel.token == 2
    panel.dictionary = "sae.L2"
    assert [r["feature"] for r in panel.token_features] == acts.top_features(2, k=12, dictionary="sae.L2")["feature"].tolist()
    assert panel.current.dictionary is saes[1]

    panel.prompt = "Paris is the capital"
    assert panel.tokens == tiny_llama.to_str_tokens("Paris is the capital")
    assert panel.selected_token == 2          # still valid: kept
    panel.selected_token = 99
    assert "does not exist" in panel.error and panel.tokens  # state kept
    panel.prompt = ""
    panel.prompt = "  "
    assert "empty" in panel.error


def test_search_and_pick(tiny_llama, saes):
    panel = iw.FeaturePanel(tiny_llama, list(saes), prompt="The cat sat", selection=iw.Selection())
    panel.query = "capital"
    assert [(r["dictionary"], r["feature"]) for r in panel.search_results] == [("sae.L2", 7)]
    panel.query = "5"
    assert [(r["dictionary"], r["feature"]) for r in panel.search_results] == [("sae.L1", 5)]
    panel.query = "sae.L2#3"
    assert [(r["dictionary"], r["feature"]) for r in panel.search_results] == [("sae.L2", 3)]
    panel.query = "no such label"
    assert panel.search_results == []
    panel._on_action(panel, {"action": "pick", "dictionary": "sae.L2", "feature": 7}, [])
    assert panel.dictionary == "sae.L2" and panel.feature == 7
    assert panel.card["index"] == 7 and panel.card["label"] == "capital cities"
    panel.feature = 10_000
    assert "out of range" in panel.error


def test_dashboard_card_and_label_written_back(tiny_llama, saes, index, tmp_path):
    sae = saes[0]
    sae.save(tmp_path / "sae")
    live = int(index.live[0])
    sel = iw.Selection()
    dash = iw.FeatureDashboard(sae, live, index=index, selection=sel)
    ex = index.top_examples(live, k=8)
    assert [e["activation"] for e in dash.card["examples"]] == pytest.approx([e.activation for e in ex])
    assert dash.card["examples"][0]["tokens"] == ex[0].tokens
    assert dash.card["examples"][0]["max_position"] == ex[0].max_position
    assert dash.card["hist_counts"] == index.histogram(live)[1]
    assert dash.card["density"] == pytest.approx(index.density(live))
    dash.label = "my label"
    assert sae.labels[live] == "my label"
    assert '"my label"' in (tmp_path / "sae" / "labels.json").read_text()
    # selecting a feature elsewhere switches the dashboard; features of other dictionaries do not
    sel.feature = sae[5]
    assert dash.feature == 5 and dash.label == "cats and mats"
    sel.feature = saes[1][3]
    assert dash.feature == 5
    dash.feature = 9999
    assert "out of range" in dash.error and dash.card["index"] == 5


def test_panel_dashboard_and_steering_are_linked(tiny_llama, saes, index):
    sel = iw.Selection()
    panel = iw.FeaturePanel(tiny_llama, saes[0], prompt="The cat sat on the mat", index=index, selection=sel)
    dash = iw.FeatureDashboard(saes[0], 0, index=index, selection=sel)
    f = panel.token_features[1]["feature"]
    panel.pick("sae.L1", f)
    assert dash.feature == f and dash.card["index"] == f
    assert panel.card["examples"] == dash.card["examples"]
    requests = []
    sel.observe(lambda c: requests.append(c["new"]), names=["steer"])
    dash._on_action(dash, {"action": "steer"}, [])
    assert requests[-1] == saes[0][f] and dash.steer_clicks == 1
    dash.show(3)
    assert dash.feature == 3 and panel.feature == f   # the dashboard browsing alone does not move the panel
