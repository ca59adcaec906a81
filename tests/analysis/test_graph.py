"""AttributionGraph as data: influence (closed form), pruning fractions, scores, Neuronpedia JSON
(schema, round trip, malformed files), binary save/load, groups, diff."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import interp_widgets as iw
from interp_widgets.analysis.graph import (
    AttributionGraph,
    cumulative_scores,
    influence,
    normalized_abs,
    prune_masks,
)
from interp_widgets.errors import GraphError

PROMPT = 'The opposite of "small" is "'

# What Neuronpedia's viewer requires (apps/webapp/app/api/graph/graph-schema.json in
# hijohnnylin/neuronpedia): required keys and their JSON types, transcribed.
NEURONPEDIA_SCHEMA = {
    "type": "object",
    "required": ["metadata", "qParams", "nodes", "links"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["slug", "scan", "prompt_tokens", "prompt"],
            "properties": {
                "slug": {"type": "string"}, "scan": {"type": "string"},
                "prompt_tokens": {"type": "array", "items": {"type": "string"}},
                "prompt": {"type": "string"}, "node_threshold": {"type": "number"},
                "info": {"type": "object"}, "generation_settings": {"type": "object"},
                "pruning_settings": {"type": "object"},
            },
        },
        "qParams": {
            "type": "object",
            "properties": {"pinnedIds": {"type": "array", "items": {"type": "string"}},
                           "supernodes": {"type": "array"}, "linkType": {"type": "string"},
                           "clickedId": {"type": "string"}, "sg_pos": {"type": "string"}},
        },
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"],
                "properties": {
                    "node_id": {"type": "string"}, "feature": {"type": ["integer", "null"]},
                    "layer": {"type": ["string", "integer"]}, "ctx_idx": {"type": "integer"},
                    "feature_type": {"type": "string"}, "jsNodeId": {"type": "string"},
                    "clerp": {"type": "string"}, "influence": {"type": ["number", "null"]},
                    "activation": {"type": ["number", "null"]},
                },
            },
        },
        "links": {
            "type": "array",
            "items": {"type": "object", "required": ["source", "target", "weight"],
                      "properties": {"source": {"type": "string"}, "target": {"type": "string"},
                                     "weight": {"type": "number"}}},
        },
    },
}


def hand_graph(adj: np.ndarray, kinds: list[str], probs: dict[int, float] | None = None) -> AttributionGraph:
    probs = probs or {}
    rows = []
    for i, k in enumerate(kinds):
        rows.append(dict(node_id=f"n{i}", kind=k, layer={"embedding": -1, "logit": 9}.get(k, i),
                         position=0, feature=i if k == "feature" else -1,
                         probability=probs.get(i, np.nan), token=f"t{i}", label=f"node {i}"))
    return AttributionGraph.build(prompt="p", str_tokens=["p"], token_ids=[0],
                                  nodes=pd.DataFrame(rows), adjacency=sp.csr_matrix(adj))


@pytest.fixture(scope="module")
def graph(tiny_llama):
    g = iw.attribute(tiny_llama, PROMPT, "neurons", max_feature_nodes=80, progress=False)
    return g


# ------------------------------------------------------------------ influence and scores
def test_influence_matches_closed_form():
    rng = np.random.default_rng(0)
    n = 12
    A = np.tril(rng.normal(size=(n, n)), k=-1) * (rng.random((n, n)) < 0.6)
    w = np.zeros(n)
    w[-3:] = [0.5, 0.3, 0.2]
    An = np.abs(A) / np.maximum(np.abs(A).sum(1, keepdims=True), 1e-30)
    closed = w @ (np.linalg.inv(np.eye(n) - An) - np.eye(n))
    assert np.allclose(influence(sp.csr_matrix(A), w), closed, atol=1e-12)
    assert np.allclose(normalized_abs(sp.csr_matrix(A)).toarray(), An)


def test_influence_rejects_cycles():
    A = np.array([[0, 1.0], [1.0, 0]])
    with pytest.raises(GraphError, match="cycle"):
        influence(sp.csr_matrix(A), np.array([1.0, 0.0]))


def test_scores_on_hand_built_graph():
    # embedding e(0) -> feature f(1) -> logit(3); error r(2) -> logit
    A = np.zeros((4, 4))
    A[1, 0], A[3, 1], A[3, 2] = 2.0, 3.0, -1.0
    g = hand_graph(A, ["embedding", "feature", "error", "logit"], {3: 1.0})
    assert np.allclose(g.nodes["influence"], [0.75, 0.75, 0.25, 0.0])
    s = g.scores()
    assert s["replacement"] == pytest.approx(0.75)
    # non-error share of inputs, weighted by influence + logit weight: (0.75+0.25+0.75+0.75)/2.75
    assert s["completeness"] == pytest.approx(2.5 / 2.75)


def test_scores_count_dropped_input_as_unexplained():
    A = np.zeros((4, 4))
    A[1, 0], A[3, 1], A[3, 2] = 2.0, 3.0, -1.0
    g = hand_graph(A, ["embedding", "feature", "error", "logit"], {3: 1.0})
    g.nodes["dropped_abs"] = [np.nan, 2.0, np.nan, 0.0]  # the feature lost half its input
    # feature row: 2 of 4 from the embedding; influence: f 0.75, e 0.375, r 0.25, dropped 0.375
    s = g.scores()
    assert s["replacement"] == pytest.approx(0.375 / (0.375 + 0.25 + 0.375))
    # non-error input shares weighted by influence + logit weight: e 1, f 0.5, r 1, logit 0.75
    assert s["completeness"] == pytest.approx((0.375 + 0.75 * 0.5 + 0.25 + 0.75) / 2.375)
    assert g.scores(count_dropped=False)["replacement"] == pytest.approx(0.75)


def test_cumulative_scores():
    c = cumulative_scores(np.array([1.0, 3.0, 0.0, 6.0]))
    assert np.allclose(c, [1.0, 0.9, 1.0, 0.6])


# ------------------------------------------------------------------ pruning
@pytest.mark.parametrize("nt,et", [(0.8, 0.98), (0.5, 0.9), (0.95, 0.99)])
def test_prune_keeps_advertised_fractions(graph, nt, et):
    res = prune_masks(graph, nt, et)
    infl = influence(graph.adjacency, graph.logit_weights())
    kinds = graph.nodes["kind"].to_numpy()
    always = (kinds == "embedding") | (kinds == "logit")
    assert res.node_fraction >= nt - 1e-9
    assert res.edge_fraction >= et - 1e-9
    # minimal: the threshold step keeps nodes by decreasing influence and stops at nt
    order = np.sort(infl)[::-1]
    k = int(np.searchsorted(np.cumsum(order) / order.sum(), nt - 1e-12)) + 1
    assert np.cumsum(order)[k - 2] / order.sum() < nt
    assert res.node_mask[always].all()
    small = graph.prune(nt, et)
    assert small is not graph and small.n_nodes == int(res.node_mask.sum())
    assert small.n_nodes < graph.n_nodes and small.n_edges < graph.n_edges
    assert small.metadata["pruning"]["node_threshold"] == nt
    # kept features have an incoming and an outgoing edge; errors an outgoing one
    A = small.adjacency
    k = small.nodes["kind"].to_numpy()
    has_in = np.asarray((A != 0).sum(1)).ravel() > 0
    has_out = np.asarray((A != 0).sum(0)).ravel() > 0
    assert has_in[k == "feature"].all() and has_out[k == "feature"].all()
    assert has_out[k == "error"].all()
    # the original is untouched (pure function)
    assert graph.metadata["pruning"] is None
    assert len(small.targets) == len(graph.targets)


def test_prune_argument_errors(graph):
    with pytest.raises(GraphError, match="node_threshold"):
        graph.prune(node_threshold=1.5)
    with pytest.raises(GraphError, match="edge_threshold"):
        graph.prune(edge_threshold=-0.1)


# ------------------------------------------------------------------ views
def test_edges_arrays_and_tables(graph):
    src, dst, w = graph.edges_arrays()
    assert src.dtype == np.int32 and dst.dtype == np.int32 and w.dtype == np.float32
    assert len(src) == graph.n_edges
    A = graph.adjacency.toarray()
    assert np.allclose(A[dst, src], w, rtol=1e-6)
    e = graph.edges()
    assert list(e.columns) == ["source", "target", "weight"]
    assert abs(e["weight"].iat[0]) == pytest.approx(np.abs(A).max())
    assert graph.to_pandas("edges").shape == e.shape
    assert "feature" in repr(graph) and "edges" in repr(graph)
    with pytest.raises(GraphError):
        graph.to_pandas("links")


def test_groups_pins_labels(graph):
    ids = list(graph.top(3)["node_id"])
    g2 = graph.group(ids[:2], "pair")
    assert g2.supernodes == {"pair": ids[:2]} and graph.supernodes == {}
    g3 = g2.group(["pair", ids[2]], "trio")  # groups can name other groups
    assert g3.supernodes["trio"] == ids
    assert list(g3.index("trio")) == list(graph.index(ids))
    # the widget edits these plain objects in place
    g3.pinned.append(ids[0])
    g3.labels[ids[0]] = "my label"
    assert g3.label_of(ids[0]) == "my label"
    assert g3.to_pandas().set_index("node_id").loc[ids[0], "label"] == "my label"
    with pytest.raises(GraphError, match="non-empty string"):
        graph.group(ids, "")
    with pytest.raises(GraphError, match="neither a node id nor a group"):
        graph.group(["zzz"], "bad")


# ------------------------------------------------------------------ Neuronpedia JSON
def test_json_meets_neuronpedia_schema(graph, tmp_path):
    import jsonschema  # a dev dependency: a missing one fails the test rather than skipping it
    g = graph.group(list(graph.top(2)["node_id"]), "top2")
    g.pinned.extend(list(graph.top(2)["node_id"]))
    data = g.to_json(tmp_path / "g.json", node_threshold=0.8, edge_threshold=0.98)
    jsonschema.validate(json.loads((tmp_path / "g.json").read_text()), NEURONPEDIA_SCHEMA)
    ids = [n["node_id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids))
    full = graph.to_json()  # unpruned: every node kind, ids unique across kinds
    jsonschema.validate(full, NEURONPEDIA_SCHEMA)
    assert len({n["node_id"] for n in full["nodes"]}) == graph.n_nodes
    types = {n["feature_type"] for n in full["nodes"]}
    assert types == {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}
    assert data["qParams"]["supernodes"][0][0] == "top2"
    assert data["metadata"]["pruning_settings"] == {"node_threshold": 0.8, "edge_threshold": 0.98}
    logits = [n for n in data["nodes"] if n["feature_type"] == "logit"]
    assert sum(n["is_target_logit"] for n in logits) == 1
    assert all(n["clerp"].startswith("Output") for n in logits)


def test_json_round_trip(graph, tmp_path):
    g = graph.group(list(graph.top(3)["node_id"]), "g")
    g.labels[g.top(1)["node_id"].iat[0]] = "edited"
    g.pinned.append(g.top(1)["node_id"].iat[0])
    g.to_json(tmp_path / "g.json")
    back = AttributionGraph.from_json(tmp_path / "g.json")
    cols = ["node_id", "kind", "layer", "position", "feature", "token", "token_id"]
    pd.testing.assert_frame_equal(back.nodes[cols], g.nodes[cols], check_dtype=False)
    for c in ("activation", "influence", "value", "bias", "probability"):
        assert np.allclose(back.nodes[c], g.nodes[c], equal_nan=True)
    assert abs(back.adjacency - g.adjacency).max() < 1e-6
    assert back.supernodes == g.supernodes and back.pinned == g.pinned and back.labels == g.labels
    assert back.prompt == g.prompt and back.token_ids == g.token_ids
    assert back.scores() == pytest.approx(g.scores())


def _foreign(data):
    """The same graph as another tool writes it: no interp_widgets extras."""
    d = json.loads(json.dumps(data))
    d["metadata"].pop("interp_widgets")
    for n in d["nodes"]:
        n.pop("iw")
    return d


def test_import_circuit_tracer_style_json(graph):
    data = graph.prune().to_json()
    g = AttributionGraph.from_json(_foreign(data))
    src = graph.prune()
    assert list(g.nodes["kind"]) == list(src.nodes["kind"])
    feats = g.nodes["kind"] == "feature"
    assert list(g.nodes.loc[feats, "feature"]) == list(src.nodes.loc[feats, "feature"])
    assert list(g.nodes["layer"]) == list(src.nodes["layer"])
    assert list(g.targets["token_id"]) == list(src.targets["token_id"])
    assert np.allclose(g.targets["probability"], src.targets["probability"])
    assert abs(g.adjacency - src.adjacency).max() < 1e-6
    # cumulative influence is the file's (what Neuronpedia prunes by); raw influence recomputed
    assert np.allclose(g.nodes.loc[feats, "cumulative_influence"],
                       src.nodes.loc[feats, "cumulative_influence"])


@pytest.mark.parametrize("break_it,match", [
    (lambda d: d.pop("links"), "missing top-level keys"),
    (lambda d: d["metadata"].pop("prompt"), "metadata.prompt"),
    (lambda d: d["nodes"][0].pop("ctx_idx"), "has no 'ctx_idx'"),
    (lambda d: d["nodes"][1].update(ctx_idx="3"), "wrong type"),
    (lambda d: d["nodes"][1].update(node_id=d["nodes"][0]["node_id"]), "duplicate node_id"),
    (lambda d: d["links"][0].update(target="nope"), "dangling edge"),
    (lambda d: d["links"][0].update(weight="big"), "finite number"),
    (lambda d: d["qParams"].update(pinnedIds=["ghost"]), "unknown nodes"),
    (lambda d: d["qParams"].update(supernodes=[["name", "ghost"]]), "unknown nodes"),
    (lambda d: d["nodes"][0].update(activation="x"), "number or null"),
])
def test_import_rejects_malformed(graph, break_it, match):
    data = _foreign(graph.prune().to_json())
    break_it(data)
    with pytest.raises(GraphError, match=match):
        AttributionGraph.from_json(data)


def test_import_file_errors(tmp_path):
    with pytest.raises(GraphError, match="does not exist"):
        AttributionGraph.from_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GraphError, match="not valid JSON"):
        AttributionGraph.from_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(GraphError, match="top level"):
        AttributionGraph.from_json(tmp_path / "list.json")


# ------------------------------------------------------------------ binary save / load
def test_binary_round_trip(graph, tmp_path):
    g = graph.group(list(graph.top(2)["node_id"]), "pair")
    folder = g.save(tmp_path / "graph")
    assert {p.name for p in folder.iterdir()} == {"graph.safetensors", "graph.json"}
    back = AttributionGraph.load(folder)
    pd.testing.assert_frame_equal(back.nodes, g.nodes, check_dtype=False)
    assert (back.adjacency != g.adjacency).nnz == 0
    assert back.supernodes == g.supernodes and back.metadata["model"] == "tiny-llama"
    # far smaller than the JSON for the same graph
    g.to_json(tmp_path / "g.json")
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < (tmp_path / "g.json").stat().st_size / 3


def test_binary_load_errors(graph, tmp_path):
    with pytest.raises(GraphError, match="does not exist"):
        AttributionGraph.load(tmp_path / "missing")
    folder = graph.save(tmp_path / "g")
    (folder / "graph.safetensors").write_bytes(b"garbage")
    with pytest.raises(GraphError, match="safetensors"):
        AttributionGraph.load(folder)


# ------------------------------------------------------------------ diff
def test_diff_against_itself_and_pruned(graph):
    same = graph.diff(graph)
    assert len(same.nodes_gained) == len(same.nodes_lost) == len(same.nodes_changed) == 0
    assert len(same.edges_gained) == len(same.edges_lost) == len(same.edges_changed) == 0
    d = graph.diff(graph.prune(0.5, 0.9), by="node")
    assert len(d.nodes_lost) == graph.n_nodes - graph.prune(0.5, 0.9).n_nodes
    assert len(d.nodes_gained) == 0
    assert len(d.edges_lost) > 0
    assert set(d.to_pandas()["change"]) <= {"gained", "lost", "changed"}


def test_diff_two_prompts_by_feature(tiny_llama, graph):
    other = iw.attribute(tiny_llama, 'The opposite of "large" is "', "neurons",
                         max_feature_nodes=80, progress=False)
    d = graph.diff(other)
    assert "GraphDiff" in repr(d)
    for t in (d.nodes_gained, d.nodes_lost, d.nodes_changed):
        assert {"key", "kind", "layer", "feature", "influence_a", "influence_b", "delta"} <= set(t.columns)
    # embeddings of tokens both prompts share are matched, the swapped word is gained / lost
    a, b = set(graph.str_tokens), set(other.str_tokens)
    emb = lambda t: {k[3:] for k in t.loc[t["kind"] == "embedding", "key"]}  # noqa: E731
    assert emb(d.nodes_changed) == a & b
    assert emb(d.nodes_lost) == a - b and emb(d.nodes_gained) == b - a
    assert len(a - b) > 0
    deltas = d.nodes_changed["delta"].abs().to_numpy()
    assert np.all(np.diff(deltas) <= 1e-12)  # strongest change first
    with pytest.raises(GraphError, match="by="):
        graph.diff(other, by="position")


def test_import_a_real_circuit_tracer_export(tmp_path):
    """A file written by circuit-tracer 0.5.0's create_graph_files (SmolLM2, random TopK
    transcoders, 'The capital of France is'; see benchmarks/circuit_tracer_attribution.py)."""
    from pathlib import Path

    path = Path(__file__).parent / "data" / "circuit_tracer_export.json"
    raw = json.loads(path.read_text())
    g = AttributionGraph.from_json(path)
    counts = g.nodes["kind"].value_counts().to_dict()
    assert counts == {"error": 139, "feature": 31, "logit": 10, "embedding": 6}
    assert g.n_edges == len(raw["links"])
    top = g.targets.sort_values("probability").iloc[-1]
    assert top["token"] == " Paris" and top["probability"] == pytest.approx(0.749, abs=1e-3)
    feats = g.nodes[g.nodes["kind"] == "feature"]
    assert feats["layer"].between(0, 29).all() and (feats["feature"] >= 0).all()
    assert g.n_layers == 30
    s = g.scores(count_dropped=False)
    assert 0.0 <= s["replacement"] <= 1.0
    # and it goes back out in the same format, edges intact
    again = AttributionGraph.from_json(g.to_json(tmp_path / "again.json"))
    assert abs(again.adjacency - g.adjacency).max() < 1e-9
    assert list(again.nodes["node_id"]) == list(g.nodes["node_id"])
