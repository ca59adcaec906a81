"""Hypothesis fuzzing of everything that parses outside input: graph JSON (Neuronpedia format and
our binary form), dictionary configs (ours and SAELens), site names and hook names, steering
positions and specs.

Two properties each: any input either parses or raises *our* error (nothing else escapes), and
what we write reads back exactly (round trips).

Runs derandomized (the same examples every run, so CI is reproducible); set
``IW_FUZZ_EXAMPLES=2000`` to search harder by hand.
"""

from __future__ import annotations

import copy
import json
import math
import os
import string

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interp_widgets as iw
from interp_widgets.analysis.graph import (
    AttributionGraph,
    embedding_id,
    error_id,
    feature_id,
    logit_id,
)
from interp_widgets.analysis.steering.spec import (
    Steer,
    TokenMatch,
    normalize_positions,
    positions_to_json,
)
from interp_widgets.dictionaries.formats import hook_from_site, site_from_hook
from interp_widgets.errors import (
    DictionaryError,
    GraphError,
    InterpWidgetsError,
    SiteError,
    SteeringError,
)
from interp_widgets.models.sites import GLOBAL_SITES, LAYER_SITES, Site
from interp_widgets.widgets.steering_panel import _positions as panel_positions

N = int(os.environ.get("IW_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int):
    return settings(max_examples=N or examples, deadline=None, derandomize=not N, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# JSON-like values, with the nasty ones: huge ints, NaN / inf, deep nesting, markup, empty things
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", " ", "../../etc/passwd", "<img src=x onerror=alert(1)>", "resid_post.1", "0_1_2",
                     "embedding", "logit", "cross layer transcoder", "mlp reconstruction error", "topk"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)


def paths(obj, prefix=(), limit_list=4):
    """Every (container path, key) in a JSON value (the first few items of long lists)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out += paths(v, prefix + (k,), limit_list)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:limit_list]):
            out.append(prefix + (i,))
            out += paths(v, prefix + (i,), limit_list)
    return out


def mutate(obj, data, n_max=3):
    """Replace, delete or retype 1-3 values anywhere in a deep copy of ``obj``."""
    obj = copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, n_max), label="n mutations")):
        ps = paths(obj)
        if not ps:
            break
        path = data.draw(st.sampled_from(ps), label="path")
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        op = data.draw(st.sampled_from(["replace", "delete", "duplicate"]), label="op")
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[key] = data.draw(json_values, label="value")
    return obj


# ============================================================================ graph JSON
@st.composite
def graphs(draw):
    """Random valid AttributionGraphs: every kind of node, random edges, annotations."""
    n_layers = draw(st.integers(1, 6))
    text = st.text(alphabet=string.printable + "é中<>&\"'", min_size=0, max_size=6)
    toks = draw(st.lists(text, min_size=1, max_size=5))
    P = len(toks)
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    rows = []
    for p, t in enumerate(toks):
        rows.append(dict(node_id=embedding_id(p, p), kind="embedding", layer=-1, position=p, feature=-1, token=t,
                         token_id=p, activation=np.nan, label=""))
    for _ in range(draw(st.integers(0, 12))):
        L, p, f = draw(st.integers(0, n_layers - 1)), draw(st.integers(0, P - 1)), draw(st.integers(0, 10 ** 6))
        rows.append(dict(node_id=feature_id(L, f, p), kind="feature", layer=L, position=p, feature=f,
                         token=toks[p], token_id=p, activation=draw(finite), label=draw(text)))
    for _ in range(draw(st.integers(0, 3))):
        L, p = draw(st.integers(0, n_layers - 1)), draw(st.integers(0, P - 1))
        rows.append(dict(node_id=error_id(L, p), kind="error", layer=L, position=p, feature=-1, token=toks[p],
                         token_id=p, activation=np.nan, label=""))
    for j in range(draw(st.integers(1, 3))):
        rows.append(dict(node_id=logit_id(n_layers, 100 + j, P - 1), kind="logit", layer=n_layers,
                         position=P - 1, feature=-1, token=draw(text), token_id=100 + j,
                         probability=draw(st.floats(0, 1)), activation=np.nan, label=""))
    nodes = pd.DataFrame(rows).drop_duplicates("node_id").reset_index(drop=True)
    n = len(nodes)
    lay, pos = nodes["layer"].to_numpy(), nodes["position"].to_numpy()
    # edges go up in layer and never back in position (the graph is acyclic, like a real one)
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=40, unique=True))
    pairs = [(a, b) for a, b in pairs if lay[b] < lay[a] and pos[b] <= pos[a]]
    w = [draw(finite.filter(lambda x: x != 0)) for _ in pairs]
    dst = [a for a, _ in pairs]
    src = [b for _, b in pairs]
    adj = sp.csr_matrix((np.array(w, dtype=np.float64), (dst, src)), shape=(n, n))
    ids = nodes["node_id"].tolist()
    groups = {draw(text.filter(bool)): draw(st.lists(st.sampled_from(ids), min_size=2, max_size=4))
              for _ in range(draw(st.integers(0, 2)))}
    pinned = draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))
    labels = {i: draw(text) for i in draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))}
    return AttributionGraph.build(prompt="".join(toks), str_tokens=toks, token_ids=list(range(P)), nodes=nodes,
                                  adjacency=adj, metadata={"n_layers": n_layers, "model": "fuzz"},
                                  supernodes=groups, pinned=pinned, labels=labels)


COLS = ["node_id", "kind", "layer", "position", "feature", "token", "token_id"]
FLOATS = ["activation", "influence", "probability"]


def assert_same_graph(a: AttributionGraph, b: AttributionGraph) -> None:
    pd.testing.assert_frame_equal(a.nodes[COLS].reset_index(drop=True), b.nodes[COLS].reset_index(drop=True),
                                  check_dtype=False)
    for c in FLOATS:
        assert np.array_equal(a.nodes[c].to_numpy(np.float64), b.nodes[c].to_numpy(np.float64), equal_nan=True), c
    assert (a.adjacency != b.adjacency).nnz == 0  # exact, not approximate
    assert a.supernodes == b.supernodes and a.pinned == b.pinned and a.labels == b.labels
    assert a.prompt == b.prompt and a.str_tokens == b.str_tokens and a.token_ids == b.token_ids


@fuzz(60)
@given(g=graphs())
def test_graph_json_round_trip_is_exact(g):
    text = json.dumps(g.to_json(), ensure_ascii=False)  # through real JSON text
    assert_same_graph(AttributionGraph.from_json(json.loads(text)), g)


@fuzz(25)
@given(g=graphs())
def test_graph_binary_round_trip_is_exact(g, tmp_path_factory):
    folder = tmp_path_factory.mktemp("g")
    g.save(folder)
    assert_same_graph(AttributionGraph.load(folder), g)


@pytest.fixture(scope="module")
def graph_json(tiny_llama):
    g = iw.attribute(tiny_llama, "The cat sat", "neurons", max_feature_nodes=5, progress=False)
    g = g.group(list(g.top(2)["node_id"]), "pair")
    g.pinned.append(g.top(1)["node_id"].iat[0])
    return g.to_json()


def _load_or_our_error(data):
    try:
        return AttributionGraph.from_json(data)
    except GraphError:
        return None


@fuzz(150)
@given(data=st.data())
def test_mutated_graph_json_loads_or_raises_graph_error(graph_json, data):
    g = _load_or_our_error(mutate(graph_json, data))
    if g is not None:
        # what loads is usable: it re-exports, reloads, prunes and opens in the view
        again = AttributionGraph.from_json(json.loads(json.dumps(g.to_json())))
        assert again.n_nodes == g.n_nodes and again.n_edges == g.n_edges
        try:
            g.prune(0.8, 0.98)
            iw.CircuitView(g, selection=iw.Selection()).close()
        except GraphError:
            pass


@fuzz(40)
@given(data=st.data())
def test_mutated_graph_file_text_loads_or_raises_graph_error(graph_json, data, tmp_path_factory):
    """Byte-level damage to the file: truncation and flipped bytes."""
    raw = json.dumps(graph_json).encode()
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), max_size=4), label="flips")
    b = bytearray(raw[:cut] if data.draw(st.booleans(), label="truncate") else raw)
    for i, x in flips:
        if i < len(b):
            b[i] ^= x
    p = tmp_path_factory.mktemp("gj") / "g.json"
    p.write_bytes(bytes(b))
    try:
        AttributionGraph.from_json(p)
    except GraphError:
        pass


# ============================================================================ dictionary configs
@pytest.fixture(scope="module")
def dict_folder(tmp_path_factory, sae):
    folder = sae.save(tmp_path_factory.mktemp("dict") / "sae")
    return folder, json.loads((folder / "config.json").read_text())


@fuzz(120)
@given(data=st.data())
def test_mutated_dictionary_config_loads_or_raises_dictionary_error(dict_folder, data):
    folder, cfg = dict_folder
    (folder / "config.json").write_text(json.dumps(mutate(cfg, data)))
    try:
        d = iw.load_dictionary(folder)
    except DictionaryError:
        return
    # what loads matches its weights and encodes / decodes without error
    x = torch.randn(3, d.d_in)
    acts = d.encode(x)
    assert acts.shape == (3, d.n_features) and torch.isfinite(acts).all()
    assert d.decode(acts).shape == (3, d.d_out)


SAELENS_CFG = {"architecture": "jumprelu", "d_in": 64, "d_sae": 32, "dtype": "float32", "device": "cpu",
               "apply_b_dec_to_input": True, "normalize_activations": "none", "k": 4,
               "metadata": {"model_name": "tiny-llama", "hook_name": "blocks.1.hook_resid_post", "hook_layer": 1}}


@pytest.fixture(scope="module")
def saelens_folder(tmp_path_factory, sae):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("saelens")
    sd = {k: v.contiguous() for k, v in sae.state_dict().items()}
    sd["threshold"] = torch.full((32,), 0.1)
    save_file(sd, str(folder / "sae_weights.safetensors"))
    return folder


@fuzz(120)
@given(data=st.data())
def test_mutated_saelens_config_loads_or_raises_dictionary_error(saelens_folder, data):
    (saelens_folder / "cfg.json").write_text(json.dumps(mutate(SAELENS_CFG, data)))
    try:
        d = iw.load_dictionary(saelens_folder)
    except DictionaryError:
        return
    acts = d.encode(torch.randn(3, d.d_in))
    assert acts.shape == (3, d.n_features) and torch.isfinite(acts).all()


# ============================================================================ sites and hooks
site_texts = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"\A\s?[a-z_]{1,12}(\s?\.\s?-?\d{1,25})?\s?\Z"),
    st.builds(lambda n, L: f"{n}.{L}", st.sampled_from(LAYER_SITES + GLOBAL_SITES), st.integers(-10, 10 ** 20)),
)


@fuzz(300)
@given(text=site_texts)
def test_site_parser_parses_or_raises_site_error(text, tiny_llama):
    try:
        s = Site.parse(text)
    except SiteError:
        return
    assert Site.parse(str(s)) == s  # round trip
    try:
        v = tiny_llama.site(text)
    except SiteError:
        return
    assert v.name in LAYER_SITES + GLOBAL_SITES
    assert (v.layer is None) == (v.name in GLOBAL_SITES)
    assert v.layer is None or 0 <= v.layer < tiny_llama.n_layers
    assert tiny_llama.site(str(v)) == v


@fuzz(200)
@given(text=st.one_of(site_texts, st.from_regex(r"\Ablocks\.\d{1,3}\.[a-z_.]{1,20}\Z"),
                      st.from_regex(r"\A(model\.)?layers\.\d{1,3}(\.mlp)?\Z")),
       layer=st.one_of(st.none(), st.integers(0, 40)))
def test_hook_names_map_or_raise_dictionary_error(text, layer):
    try:
        s = site_from_hook(text, layer)
    except (DictionaryError, SiteError):
        return
    assert isinstance(s, Site)
    if s.name in ("resid_pre", "attn_out", "resid_mid", "mlp_in", "mlp_out", "resid_post", "embed"):
        assert site_from_hook(hook_from_site(s)) == s  # our site -> TransformerLens hook -> our site


# ============================================================================ positions and specs
position_values = st.one_of(
    json_values, st.sampled_from(["all", "prompt", "generated", "last", "middle"]),
    st.lists(st.integers(-300, 300), max_size=5), st.integers(-10 ** 30, 10 ** 30),
    st.builds(slice, st.one_of(st.none(), st.integers(-5, 5)), st.one_of(st.none(), st.integers(-5, 5)),
              st.one_of(st.none(), st.integers(-2, 2))),
    st.builds(lambda t: {"token": t}, st.text(max_size=5)),
    st.builds(lambda a: {"slice": a}, st.lists(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=2)),
                                               max_size=4)),
)


@fuzz(400)
@given(p=position_values)
def test_positions_normalize_or_raise_steering_error(p):
    try:
        norm = normalize_positions(p)
    except SteeringError:
        return
    assert normalize_positions(positions_to_json(norm)) == norm  # round trip
    assert isinstance(norm, (str, tuple, slice, TokenMatch))


@fuzz(300)
@given(text=st.one_of(st.text(max_size=15), st.from_regex(r"\A(-?\d{1,4},?){0,4}\Z"),
                      st.builds(lambda t: "token:" + t, st.text(max_size=5))))
def test_panel_positions_field_parses_or_raises_steering_error(text):
    try:
        p = panel_positions(text)
    except SteeringError:
        return
    try:
        normalize_positions(p)
    except SteeringError:
        pass  # e.g. "token:" or "," parse but select nothing: the spec refuses them with our error


@fuzz(150)
@given(strength=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 40, 10 ** 40),
                          st.none(), st.text(max_size=3)),
       mode=st.sampled_from(["add", "scale", "clamp", "ablate", "push"]), positions=position_values,
       feature=st.integers(-3, 40))
def test_steer_specs_build_or_raise_our_error_and_round_trip(strength, mode, positions, feature, sae):
    try:
        spec = Steer(sae[feature], strength, mode=mode, positions=positions)
    except InterpWidgetsError:
        return
    assert math.isfinite(spec.strength) if spec.strength is not None else mode == "ablate"
    back = Steer.from_json(json.loads(json.dumps(spec.to_json())), dictionaries={sae.name: sae})
    assert back.to_json() == spec.to_json() and repr(back) == repr(spec)
