"""CircuitView, Python side: payload as binary buffers, pruning, selection, supernodes, pins."""

from __future__ import annotations

import numpy as np
import pytest

import interp_widgets as iw
from interp_widgets.errors import GraphError
from interp_widgets.widgets._base import from_bytes
from interp_widgets.widgets.circuit_view import keep_edges, keep_nodes

from toy_graph import toy_graph


def test_payload_is_binary_and_sorted_by_weight():
    g = toy_graph(300, 2000)
    view = iw.CircuitView(g, selection=iw.Selection())
    n, m = len(g.nodes), len(g.weight)
    assert view.node_ids == g.nodes["id"].tolist()
    assert view.edge_index_bytes == 2  # < 65k nodes: uint16 indices
    src = from_bytes(view.edge_src, np.uint16)
    dst = from_bytes(view.edge_dst, np.uint16)
    w = from_bytes(view.edge_w, np.float32)
    assert len(src) == len(dst) == len(w) == m
    assert (np.diff(np.abs(w)) <= 0).all()
    # the same multiset of edges as the graph's
    got = sorted(zip(src.tolist(), dst.tolist(), np.round(w, 5).tolist()))
    want = sorted(zip(g.src.tolist(), g.dst.tolist(), np.round(g.weight, 5).tolist()))
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
    node = g.nodes.sort_values("influence").iloc[-1]["id"]
    view.selected = [node]
    d = view.node_detail
    assert d["id"] == node and d["layer"] == int(g.nodes.set_index("id").loc[node, "layer"])
    ins = view.edges_of(node).query("direction == 'in'")
    assert [r["other"] for r in d["incoming"]] == ins["other"].tolist()
    # incoming edges really end at the node, strongest first
    idx = view.node_ids.index(node)
    mask = g.dst == idx
    if mask.any():
        assert abs(d["incoming"][0]["weight"]) == pytest.approx(np.abs(g.weight[mask]).max(), rel=1e-6)
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
    assert g.pinned == {a} and view.pinned == [a]
    view.node_threshold = 0.0
    assert view.visible_nodes()[view.node_ids.index(a)]
    view.pin(a)
    assert g.pinned == set()
    view.intervene([a])
    assert "no .intervene()" in view.error


def test_large_graph_uses_uint32_and_bad_graphs_fail():
    g = toy_graph(70_000, 20_000, n_layers=4, n_pos=4)
    view = iw.CircuitView(g, selection=iw.Selection())
    assert view.edge_index_bytes == 4 and view.bytes_per_edge == 12.0
    bad = toy_graph(50, 100)
    bad.dst = bad.dst.copy(); bad.dst[0] = 10_000
    with pytest.raises(GraphError, match="outside"):
        iw.CircuitView(bad)
    dup = toy_graph(50, 100)
    dup.nodes.loc[1, "id"] = dup.nodes.loc[0, "id"]
    with pytest.raises(GraphError, match="duplicate"):
        iw.CircuitView(dup)
