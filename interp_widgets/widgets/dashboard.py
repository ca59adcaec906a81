"""``FeatureDashboard``: everything known about one feature, Neuronpedia-style.

Label (editable, written back to the dictionary's labels.json), top activating examples from a
corpus index (max token outlined, context coloured), the activation histogram and firing density
(plotly), the tokens the feature promotes / suppresses, and "steer with this".

    >>> dash = iw.FeatureDashboard(sae, 123, index=iw.scan(model, sae, corpus), model=model)
    >>> dash.feature = 7                     # or click a feature in a FeaturePanel
    >>> dash.label = "French words"          # saved to the dictionary's labels.json
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import traitlets

from ..dictionaries import Feature, flatten_dictionaries
from ..errors import FeatureError
from ._base import Panel, css, esm, guarded, model_lock
from .selection import Selection


def _index_for(index: Any, name: str, *aliases: str) -> Any:
    """The FeatureIndex for dictionary ``name`` (or one of its ``aliases``, e.g. the key a panel
    knows it by): given directly, in a mapping, or the starter pack's."""
    if index is None:
        from ..analysis.scan import FeatureIndex

        try:
            return FeatureIndex.load_starter(name)
        except Exception:  # noqa: BLE001 - no starter index for this dictionary: no examples
            return None
    if isinstance(index, Mapping):
        return next((index[n] for n in (*aliases, name) if n in index), None)
    return index  # one index for one dictionary (feature_card checks the sizes agree)


def _effects(feature: Feature, model: Any, k: int) -> tuple[list[list[Any]], list[list[Any]], str]:
    """(promoted, suppressed, note) via analysis.logit_effects; a note says why they are missing."""
    if model is None:
        return [], [], "pass model= to see the tokens this feature promotes"
    try:
        from ..analysis.logit_effects import logit_effects
    except ImportError:
        return [], [], "logit effects are not available in this build"
    from .circuit_view import _effects_rows

    promoted, suppressed = _effects_rows(logit_effects(feature, model, k=k))
    return promoted, suppressed, ""


def feature_card(feature: Feature, *, index: Any = None, model: Any = None, k_examples: int = 8,
                 k_tokens: int = 10, name: str | None = None) -> dict[str, Any]:
    """The JSON a dashboard shows for one feature (shared by FeatureDashboard and FeaturePanel).

    ``index``: a FeatureIndex, a mapping of them (looked up by ``name``, the key the panel knows
    the dictionary by, then by the dictionary's own name), or None for the starter pack's.

        >>> card = feature_card(sae[5], index=idx, model=model)
        >>> card["examples"][0]["tokens"], card["density"]
    """
    d = feature.dictionary
    card: dict[str, Any] = {
        "dictionary": d.name, "index": int(feature.index), "label": feature.label,
        "site": str(feature.site), "n_features": int(d.n_features),
        "examples": [], "hist_edges": [], "hist_counts": [], "density": None,
        "mean_activation": None, "max_activation": None, "n_tokens": 0, "notes": [],
    }
    idx = _index_for(index, d.name, *([name] if name else []))
    if idx is not None and int(idx.n_features) != int(d.n_features):
        card["notes"].append(f"the index {idx.name!r} has {idx.n_features} features, not {d.n_features}: ignored")
        idx = None
    if idx is None:
        card["notes"].append("no corpus index: pass index=iw.scan(model, dictionary, corpus) for examples")
    else:
        ex = idx.top_examples(int(feature.index), k=k_examples)
        card["examples"] = [{"tokens": list(e.tokens), "acts": [float(a) for a in e.activations],
                             "max_position": int(e.max_position), "activation": float(e.activation),
                             "source": e.source} for e in ex]
        edges, counts = idx.histogram(int(feature.index))
        card.update(hist_edges=[float(x) for x in edges], hist_counts=[int(c) for c in counts],
                    density=idx.density(int(feature.index)), mean_activation=idx.mean_activation(int(feature.index)),
                    max_activation=idx.max_activation(int(feature.index)), n_tokens=int(idx.n_tokens))
        if not ex:
            card["notes"].append(f"feature {feature.index} never fired in the {idx.n_tokens:,} scanned tokens (dead)")
    promoted, suppressed, note = _effects(feature, model, k_tokens)
    card.update(promoted=promoted, suppressed=suppressed)
    if note:
        card["notes"].append(note)
    return card


class FeatureDashboard(Panel):
    """Dashboard of one feature. Traits: ``feature`` (index), ``dictionary_name``, ``label``
    (editable), ``card`` (everything shown); ``steer_clicks`` counts "steer with this".

    Follows ``selection.feature`` when it belongs to one of its dictionaries.
    """

    _esm = esm("_feature_card.js", "dashboard.js")
    _css = css()
    uses_plotly = True

    dictionary_name = traitlets.Unicode("").tag(sync=True)
    dictionary_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    feature = traitlets.Int(0).tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    card = traitlets.Dict().tag(sync=True)
    steer_clicks = traitlets.Int(0).tag(sync=True)

    def __init__(self, dictionary: Any, feature: int | Feature = 0, *, index: Any = None, model: Any = None,
                 selection: Selection | None = None, **kwargs: Any) -> None:
        self.dictionaries = flatten_dictionaries(dictionary)
        self.index = index
        self.model = model
        self.selection = selection if selection is not None else Selection.shared()
        names = list(self.dictionaries)
        if isinstance(feature, Feature):
            name = self._name_of(feature.dictionary)
            feature = feature.index
        else:
            name = names[0]
        self._ready = False
        super().__init__(dictionary_names=names, dictionary_name=name, feature=int(feature), **kwargs)
        self._ready = True
        self._refresh()
        self.selection.observe(self._on_selection, names=["feature"])
        self.on_msg(self._on_action)

    def _repr_keys(self) -> list[str]:
        return ["dictionary_name", "feature", "label"]

    def _name_of(self, dictionary: Any) -> str:
        for n, d in self.dictionaries.items():
            if d is dictionary:
                return n
        raise FeatureError(f"{getattr(dictionary, 'name', dictionary)!r} is not one of this dashboard's "
                           f"dictionaries ({', '.join(self.dictionaries)})")

    @property
    def current(self) -> Feature:
        """The feature on display."""
        return self.dictionaries[self.dictionary_name][self.feature]

    def show(self, feature: Feature | int) -> None:
        """Display another feature (a Feature of one of the dictionaries, or an index)."""
        if isinstance(feature, Feature):
            with self.hold_trait_notifications():
                self.dictionary_name = self._name_of(feature.dictionary)
                self.feature = feature.index
        else:
            self.feature = int(feature)

    @traitlets.observe("feature", "dictionary_name")
    def _on_feature(self, change: dict[str, Any]) -> None:
        if self._ready:
            self._refresh()

    @guarded
    def _refresh(self) -> None:
        if self.dictionary_name not in self.dictionaries:
            raise FeatureError(f"no dictionary {self.dictionary_name!r}: choose one of {', '.join(self.dictionaries)}")
        feat = self.current  # validates the index (FeatureError names the range)
        lock = model_lock(self.model) if self.model is not None else nullcontext()
        with self.working(f"loading feature {feat.index}"), lock:
            card = feature_card(feat, index=self.index, model=self.model, name=self.dictionary_name)
        with self.hold_sync():
            self.card = card
            self._syncing_label = True
            try:
                self.label = feat.label
            finally:
                self._syncing_label = False

    @traitlets.observe("label")
    @guarded
    def _on_label(self, change: dict[str, Any]) -> None:
        if getattr(self, "_syncing_label", False) or not self._ready:
            return
        feat = self.current
        if change["new"] != feat.label:
            feat.dictionary.set_label(feat.index, change["new"])  # saves labels.json when it has a folder
            self.card = {**self.card, "label": feat.label}
            self.error = ""

    def _on_selection(self, change: dict[str, Any]) -> None:
        f = change["new"]
        if isinstance(f, Feature) and any(d is f.dictionary for d in self.dictionaries.values()):
            self.show(f)

    @guarded
    def steer(self) -> None:
        """Hand the displayed feature to the steering panels sharing this selection."""
        self.steer_clicks += 1
        self.selection.request_steer(self.current)

    def _on_action(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("action") == "steer":
            self.steer()
