"""CircuitView, Python side: payload as binary buffers, pruning, selection, supernodes, pins."""

from __future__ import annotations

import numpy as np
import pytest
from toy_graph import toy_graph

import interp_widgets as iw
from interp_widgets.errors import GraphError
from interp_widgets.widgets._base import from_bytes
from interp_widgets.widgets.circuit_view import keep_edges, keep_nodes


def test_payload_is_binary_and_sorted_by_weight():
    g = toy_graph(300, 2000)
    view = iw.CircuitView(g, selection=iw.Selection())
    m = g.n_edges
    assert view.node_ids == g.nodes["node_id"].tolist()
    assert view.edge_index_bytes == 2  # < 65k nodes: uint16 indices
    src = from_bytes(view.edge_src, np.uint16)
    dst = from_bytes(view.edge_dst, np.uint16)
    w = from_bytes(view.edge_w, np.float32)
    assert len(src) == len(dst) == len(w) == m
    assert (np.diff(np.abs(w)) <= 0).all()
    # the same multiset of edges as the graph's
    gs, gd, gw = g.edges_arrays()
    got = sorted(zip(src.tolist(), dst.tolist(), np.round(w, 5).tolist(), strict=True))
    want = sorted(zip(gs.tolist(), gd.tolist(), np.round(gw, 5).tolist(), strict=True))
    assert got == want
    assert view.bytes_per_edge == 8.0
    np.testing.assert_allclose(from_bytes(view.node_infl), g.nodes["influence"].to_numpy(), rtol=1e-6)
    assert from_bytes(view.node_layer, np.int32).tolist() == g.nodes["layer"].tolist()


def test_pruning_thresholds_change_visible_counts():
    g = toy_graph(400, 3000)
    view = iw.CircuitView(g, selection=iw.Selection())
    full = view.visible_count
    view.node_threshold = 1.0
    view.edge_threshold = 1.0
    assert view.visible_count[0] == len(g.nodes)
    view.node_threshold = 0.3
    few = view.visible_count
    assert few[0] < full[0] or full[0] < len(g.nodes)
    assert few[0] >= 8 + 3  # embeddings and logits always show
    view.edge_threshold = 0.5
    assert view.visible_count[1] < few[1]
    # the kept edges carry at least the threshold of the weight among edges between visible nodes
    nodes = view.visible_nodes()
    edges = view.visible_edges()
    w = np.abs(view._w.astype(np.float64))
    between = nodes[view._src] & nodes[view._dst]
    assert w[edges].sum() >= 0.5 * w[between].sum()
    assert (edges <= between).all()
    with pytest.raises(Exception, match="0-1"):
        view.node_threshold = 1.5


def test_keep_rules_by_hand():
    infl = np.array([5.0, 3.0, 1.0, 1.0, 0.0])
    always = np.array([False, False, False, False, True])
    assert keep_nodes(infl, always, 0.5).tolist() == [True, False, False, False, True]
    assert keep_nodes(infl, always, 0.6).tolist() == [True, True, False, False, True]
    assert keep_nodes(infl, always, 1.0).tolist() == [True, True, True, True, True]
    w = np.array([4.0, -3.0, 2.0, 1.0], dtype=np.float32)
    src = np.array([0, 1, 2, 3])
    dst = np.array([4, 4, 1, 4])
    nodes = np.array([True, True, False, True, True])  # node 2 hidden: edge 2 never shows
    assert keep_edges(w, src, dst, nodes, 0.5).tolist() == [True, False, False, False]
    assert keep_edges(w, src, dst, nodes, 0.6).tolist() == [True, True, False, False]
    assert keep_edges(w, src, dst, nodes, 1.0).tolist() == [True, True, False, True]


def test_selection_detail_and_shared_selection():
    g = toy_graph(120, 800)
    sel = iw.Selection()
    view = iw.CircuitView(g, selection=sel)
    node = g.nodes.sort_values("influence").iloc[-1]["node_id"]
    view.selected = [node]
    d = view.node_detail
    assert d["id"] == node and d["layer"] == int(g.nodes.set_index("node_id").loc[node, "layer"])
    ins = view.edges_of(node).query("direction == 'in'")
    assert [r["other"] for r in d["incoming"]] == ins["other"].tolist()
    # incoming edges really end at the node, strongest first
    idx = view.node_ids.index(node)
    gs, gd, gw = g.edges_arrays()
    mask = gd == idx
    assert mask.any()
    assert abs(d["incoming"][0]["weight"]) == pytest.approx(np.abs(gw[mask]).max(), rel=1e-6)
    assert sel.node == node
    assert view.visible_nodes()[idx]  # a selected node always shows
    view.selected = ["nope"]
    assert "not in this graph" in view.error


def test_group_pin_and_errors():
    g = toy_graph(100, 500)
    view = iw.CircuitView(g, selection=iw.Selection())
    a, b = view.node_ids[20], view.node_ids[30]
    view.selected = [a]
    view.group("solo")
    assert "at least two" in view.error and g.supernodes == {}
    view.selected = [a, b]
    name = view.group("pair")
    assert name == "pair" and g.supernodes == {"pair": [a, b]} and view.supernodes == {"pair": [a, b]}
    assert view.error == ""
    # the browser's button sends a message; same effect
    view._on_action(view, {"action": "group", "nodes": [b, view.node_ids[40]], "name": ""}, [])
    assert set(g.supernodes) == {"pair", "group 2"}
    view.ungroup("pair")
    assert set(g.supernodes) == {"group 2"}
    view.pin(a)
    assert g.pinned == [a] and view.pinned == [a]
    view.node_threshold = 0.0
    assert view.visible_nodes()[view.node_ids.index(a)]
    view.pin(a)
    assert g.pinned == []


def test_large_graph_uses_uint32_and_bad_graphs_fail():
    g = toy_graph(70_000, 20_000, n_layers=4, n_pos=4)
    view = iw.CircuitView(g, selection=iw.Selection())
    assert view.edge_index_bytes == 4 and view.bytes_per_edge == 12.0


class _Broken:
    """Duck-typed graph whose edges point past the nodes table."""

    def __init__(self, g):
        self.nodes = g.nodes
        self.supernodes, self.pinned = {}, []
        s, d, w = g.edges_arrays()
        self._e = (s, np.where(np.arange(len(d)) == 0, 10_000, d), w)

    def edges_arrays(self):
        return self._e


def test_bad_graphs_fail_clearly():
    with pytest.raises(GraphError, match="outside"):
        iw.CircuitView(_Broken(toy_graph(50, 100)))
    dup = _Broken(toy_graph(50, 100))
    dup.nodes = dup.nodes.copy()
    dup.nodes.loc[1, "node_id"] = dup.nodes.loc[0, "node_id"]
    with pytest.raises(GraphError, match="duplicate"):
        iw.CircuitView(dup)


def test_real_attribution_graph_select_and_intervene(tiny_llama):
    tcs = {L: iw.Transcoder.random(d_in=tiny_llama.d_model, n_features=64, layer=L, architecture="topk",
                                   k=4, seed=L) for L in range(tiny_llama.n_layers)}
    graph = iw.attribute(tiny_llama, "The cat sat on the", tcs, max_feature_nodes=60, progress=False)
    sel = iw.Selection()
    view = iw.CircuitView(graph, selection=sel, dictionaries=tcs)
    assert view.tokens == graph.str_tokens and view.n_layers == tiny_llama.n_layers
    kinds = graph.nodes["kind"].tolist()
    assert from_bytes(view.node_kind, np.uint8).tolist() == [
        ["embed", "feature", "error", "logit", "supernode"].index({"embedding": "embed"}.get(k, k)) for k in kinds]
    top = graph.top(2)
    a, b = top["node_id"].tolist()
    view.selected = [a]
    det = view.node_detail
    row = graph.nodes.set_index("node_id").loc[a]
    assert det["feature"] == {"dictionary": tcs[int(row["layer"])].name, "index": int(row["feature"]),
                              "label": ""}
    assert sel.feature == tcs[int(row["layer"])][int(row["feature"])]
    view.selected = [a, b]
    view.group("top two")
    assert graph.supernodes["top two"] == [a, b]
    view.intervene(["top two"], 0.0)
    assert view.error == ""
    rows = view.intervention["rows"]
    assert [r["token"] for r in rows] == graph.targets["token"].tolist()
    direct = graph.intervene({"top two": 0.0})
    np.testing.assert_allclose([r["real_change"] for r in rows], direct["real_change"], rtol=1e-5, atol=1e-6)
