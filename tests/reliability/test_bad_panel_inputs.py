"""Bad input to every panel's traitlets and actions, the way it arrives: from Python (setting a
trait, calling a method) or from the browser (``set_state`` / a custom message, exactly what
ipywidgets does with a comm message).

A row passes when nothing escapes into the kernel (no exception from a trait change or a
message; a Python method may raise *our* error), the panel's ``error`` names the problem in our
words (not a foreign ``SomeError: ...``), the previous result stays on screen, and the next good
input clears the error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import interp_widgets as iw
from interp_widgets.errors import InterpWidgetsError

LONG = "cat " * 400
FOREIGN = re.compile(r"^[A-Z]\w*(Error|Exception|Interrupt)\b")


@dataclass(frozen=True)
class Row:
    panel: str
    what: str
    act: Callable[[Any], Any]
    match: str

    @property
    def id(self) -> str:
        return f"{self.panel}: {self.what}"


def browser(**state: Any) -> Callable[[Any], Any]:
    """What a comm 'update' message from the browser does."""
    return lambda p: p.set_state(state)


def message(**content: Any) -> Callable[[Any], Any]:
    """What a custom message (a button) from the browser does."""
    return lambda p: p._handle_custom_msg(content, [])


def steer_row(**changes: Any) -> Callable[[Any], Any]:
    return lambda p: p.set_state({"rows": [{**p.rows[0], **changes}]})


ROWS: list[Row] = [
    # ---------------------------------------------------------------- LogitLens
    Row("LogitLens", "whitespace prompt", browser(prompt="   \n"), "empty or whitespace"),
    Row("LogitLens", "prompt over the context", browser(prompt=LONG), "limit of 256"),
    Row("LogitLens", "k 0", browser(k=0), "k must be an int in 1-"),
    Row("LogitLens", "gigantic k", browser(k=10 ** 9), "k must be an int in 1-"),
    Row("LogitLens", "k a string", browser(k="five"), "'k' trait.*int"),
    Row("LogitLens", "prompt not a string", browser(prompt=42), "'prompt' trait.*str"),
    # ---------------------------------------------------------------- FeaturePanel
    Row("FeaturePanel", "whitespace prompt", browser(prompt="  "), "empty or whitespace"),
    Row("FeaturePanel", "prompt over the context", browser(prompt=LONG), "limit of 256"),
    Row("FeaturePanel", "feature out of range", browser(feature=32), "0-31"),
    Row("FeaturePanel", "gigantic feature", browser(feature=10 ** 12), "0-31"),
    Row("FeaturePanel", "token out of range", browser(selected_token=999), "tokens 0-"),
    Row("FeaturePanel", "negative token", browser(selected_token=-7), "tokens 0-"),
    Row("FeaturePanel", "unknown dictionary", browser(dictionary="nope"), "choose one of sae.L1"),
    Row("FeaturePanel", "pick of an unknown dictionary", message(action="pick", dictionary="nope", feature=1),
        "choose one of sae.L1"),
    Row("FeaturePanel", "pick of a feature out of range", message(action="pick", dictionary="sae.L1", feature=99),
        "0-31"),
    Row("FeaturePanel", "pick with a non-number", message(action="pick", dictionary="sae.L1", feature="x"),
        "not understood.*'feature': 'x'"),
    Row("FeaturePanel", "label not a string", lambda p: p.set_label(123), "label must be a str"),
    # ---------------------------------------------------------------- FeatureDashboard
    Row("FeatureDashboard", "feature out of range", browser(feature=32), "0-31"),
    Row("FeatureDashboard", "negative feature", browser(feature=-3), "0-31"),
    Row("FeatureDashboard", "gigantic feature", browser(feature=2 ** 60), "0-31"),
    Row("FeatureDashboard", "unknown dictionary", browser(dictionary_name="nope"), "choose one of sae.L1"),
    Row("FeatureDashboard", "feature a float", browser(feature=2.5), "'feature' trait.*int"),
    # ---------------------------------------------------------------- SteeringPanel
    Row("SteeringPanel", "NaN strength", steer_row(strength=math.nan), "not (a )?finite"),
    Row("SteeringPanel", "inf strength", steer_row(strength=math.inf), "not (a )?finite"),
    Row("SteeringPanel", "huge strength", steer_row(strength=1e30), "beyond"),
    Row("SteeringPanel", "strength a string", steer_row(strength="lots"), "'lots'.*is not a number"),
    Row("SteeringPanel", "unknown mode", steer_row(mode="push"), "add, scale"),
    Row("SteeringPanel", "positions word", steer_row(positions="middle"), "positions 'middle' not understood"),
    Row("SteeringPanel", "position past the prompt", steer_row(positions="999"), "999"),
    Row("SteeringPanel", "whitespace prompt", browser(prompt="   "), "prompt is empty"),
    Row("SteeringPanel", "prompt over the context", browser(prompt=LONG), "256"),
    Row("SteeringPanel", "max_new_tokens 0", browser(max_new_tokens=0), "max_new_tokens"),
    Row("SteeringPanel", "gigantic max_new_tokens", browser(max_new_tokens=10 ** 9), "at most 255"),
    Row("SteeringPanel", "negative temperature", browser(temperature=-1.0), "temperature"),
    Row("SteeringPanel", "NaN temperature", browser(temperature=math.nan), "temperature"),
    Row("SteeringPanel", "dose for a missing row", message(action="dose", row=7), "rows 0-0"),
    Row("SteeringPanel", "add from an unknown dictionary", message(action="add", dictionary="nope", feature=1),
        "no dictionary 'nope'"),
    Row("SteeringPanel", "add a feature out of range", message(action="add", dictionary="sae.L1", feature=99),
        "0-31"),
    Row("SteeringPanel", "remove with a non-number", message(action="remove", id="x"), "not understood.*'id': 'x'"),
    Row("SteeringPanel", "row of an unknown id", steer_row(id=999), "not one of this panel's rows"),
    # ---------------------------------------------------------------- CircuitView
    Row("CircuitView", "node_threshold above 1", browser(node_threshold=2.0), "node_threshold must be in 0-1"),
    Row("CircuitView", "edge_threshold negative", browser(edge_threshold=-0.5), "edge_threshold must be in 0-1"),
    Row("CircuitView", "NaN threshold", browser(node_threshold=math.nan), "node_threshold must be in 0-1"),
    Row("CircuitView", "select an unknown node", browser(selected=["nope"]), "'nope' is not in this graph"),
    Row("CircuitView", "pin an unknown node", browser(pinned=["nope"]), "'nope' is not in this graph"),
    Row("CircuitView", "group with one node", message(action="group", name="g", nodes=["x"]), "at least two nodes"),
    Row("CircuitView", "group unknown nodes", message(action="group", name="g", nodes=["nope", "nada"]),
        "not in this graph"),
    Row("CircuitView", "ungroup a missing group", message(action="ungroup", name="nope"), "no supernode named"),
    Row("CircuitView", "intervene on nothing", message(action="intervene", nodes=[]), "select one or more"),
    Row("CircuitView", "intervene with NaN", lambda p: p.intervene([p.node_ids[-1]], math.nan),
        "finite number"),
    Row("CircuitView", "intervene with a word", message(action="intervene", nodes=["x"], scale="big"), "scale"),
]

SNAPSHOT = {  # the result on screen (outputs, not the inputs the user typed), which a bad input keeps
    "LogitLens": lambda p: (list(p.tokens), list(p.top_tokens)),
    "FeaturePanel": lambda p: (list(p.tokens), bytes(p.token_values), dict(p.card), list(p.token_features)),
    "FeatureDashboard": lambda p: dict(p.card),
    "SteeringPanel": lambda p: (list(p.steered), p.result_id),
    "CircuitView": lambda p: (list(p.visible_count), dict(p.node_detail), dict(p.supernodes), dict(p.intervention)),
}


@pytest.fixture(scope="module")
def parts(tiny_llama, sae):
    corpus = iw.Corpus.from_strings(["The cat sat on the mat. The dog sat on the log."] * 30)
    index = iw.scan(tiny_llama, sae, corpus, max_tokens=256, seq_len=16, batch_size=2, top_k=2, window=4,
                    progress=False)
    graph = iw.attribute(tiny_llama, "The cat sat", "neurons", max_feature_nodes=6, progress=False)
    return {"index": index, "graph": graph}


def make(name: str, model, sae, parts) -> Any:
    sel = iw.Selection()
    if name == "LogitLens":
        return iw.LogitLens(model, "The cat sat on the")
    if name == "FeaturePanel":
        return iw.FeaturePanel(model, sae, prompt="The cat sat on the mat", index=parts["index"], selection=sel)
    if name == "FeatureDashboard":
        return iw.FeatureDashboard(sae, 5, index=parts["index"], selection=sel)
    if name == "SteeringPanel":
        p = iw.SteeringPanel(model, sae, prompt="The cat sat", steers=[sae[5]], max_new_tokens=3, selection=sel)
        p.wait()
        return p
    return iw.CircuitView(parts["graph"], selection=sel, model=model)


GOOD = {  # a good input after the bad one: the panel recovers and the error clears
    "LogitLens": lambda p: setattr(p, "prompt", "Hello world"),
    "FeaturePanel": lambda p: setattr(p, "prompt", "The dog sat"),
    "FeatureDashboard": lambda p: setattr(p, "feature", 6),
    "SteeringPanel": lambda p: (setattr(p, "rows", [{**p.rows[0], "strength": 4.0, "mode": "add",
                                                     "positions": "all"}]),
                                setattr(p, "prompt", "The dog sat")),
    "CircuitView": lambda p: setattr(p, "selected", [p.node_ids[0]]),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_panel_input_lands_in_the_panel(row: Row, tiny_llama, sae, parts) -> None:
    p = make(row.panel, tiny_llama, sae, parts)
    try:
        assert p.error == "", p.error
        before = SNAPSHOT[row.panel](p)
        inputs = {k: getattr(p, k) for k in p.keys}
        try:
            row.act(p)
        except InterpWidgetsError as e:  # a Python method may raise our error directly
            p.error = str(e)
        if hasattr(p, "wait"):
            p.wait()
        assert p.error, f"{row.id}: no error shown (silently accepted)"
        assert not FOREIGN.match(p.error), f"{row.id}: a foreign error reached the panel: {p.error}"
        assert re.search(row.match, p.error), f"{row.id}: error does not say {row.match!r}: {p.error}"
        assert SNAPSHOT[row.panel](p) == before, f"{row.id}: the previous result was not kept"
        assert not p.busy
        # the user fixes what they typed (the browser sends the old values back), then goes on
        touched = {k: v for k, v in inputs.items() if getattr(p, k) != v and k in ("prompt", "k", "feature",
                   "selected_token", "dictionary", "dictionary_name", "rows", "max_new_tokens", "temperature",
                   "node_threshold", "edge_threshold", "selected", "pinned")}
        if touched:
            p.set_state(touched)
        GOOD[row.panel](p)
        if hasattr(p, "wait"):
            p.wait()
        assert p.error == "", f"{row.id}: a good input did not clear the error: {p.error}"
    finally:
        p.close()


def test_every_panel_has_rows() -> None:
    from collections import Counter

    n = Counter(r.panel for r in ROWS)
    assert set(n) == set(SNAPSHOT) and min(n.values()) >= 5, n
