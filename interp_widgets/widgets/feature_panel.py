"""``FeaturePanel``: a prompt's tokens coloured by a feature, and the features of a clicked token.

Type a prompt (it re-runs), click a token to list its strongest features (label, activation,
bar), click a feature to colour the prompt by it and open its dashboard (inside the panel and in
every FeatureDashboard sharing the selection). Search features by id or label; choose the
dictionary (layer).

    >>> panel = iw.FeaturePanel(model, transcoders, prompt="The Eiffel Tower is in Paris")
    >>> panel.selected_token = 3             # the token's top features land in panel.token_features
    >>> panel.feature = 120                  # colours the prompt; panel.selection.feature follows
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

from ..analysis.activations import FeatureActivations, feature_activations
from ..dictionaries import flatten_dictionaries
from ..errors import FeatureError
from ._base import Panel, css, esm, guarded, model_lock, to_bytes
from .dashboard import feature_card
from .selection import Selection


class FeaturePanel(Panel):
    """Activation panel. In: ``prompt``, ``dictionary`` (name), ``selected_token``, ``feature``,
    ``query``. Out: ``tokens``, ``is_sink``, ``token_values`` (float32 bytes, the feature's
    activation per token), ``token_features``, ``search_results``, ``card`` (the dashboard)."""

    _esm = esm("_feature_card.js", "feature_panel.js")
    _css = css()
    uses_plotly = True

    prompt = traitlets.Unicode("").tag(sync=True)
    dictionary = traitlets.Unicode("").tag(sync=True)
    dictionaries_info = traitlets.List().tag(sync=True)  # [{name, site, n_features}]
    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    is_sink = traitlets.List(traitlets.Bool()).tag(sync=True)
    selected_token = traitlets.Int(-1).tag(sync=True)
    feature = traitlets.Int(-1).tag(sync=True)
    token_values = traitlets.Bytes(b"").tag(sync=True)
    value_scale = traitlets.Float(1.0).tag(sync=True)
    token_features = traitlets.List().tag(sync=True)
    k = traitlets.Int(12).tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    search_results = traitlets.List().tag(sync=True)
    card = traitlets.Dict().tag(sync=True)
    show_dashboard = traitlets.Bool(True).tag(sync=True)

    def __init__(self, model: Any, dictionaries: Any, prompt: str = "", *, index: Any = None,
                 selection: Selection | None = None, dictionary: str | None = None, **kwargs: Any) -> None:
        self.model = model
        self.dicts = flatten_dictionaries(dictionaries)
        for d in self.dicts.values():
            if hasattr(d, "check_model"):
                d.check_model(model, check_name=False)
        self.index = index
        self.selection = selection if selection is not None else Selection.shared()
        self.acts: FeatureActivations | None = None
        self._ready = False
        info = [{"name": n, "site": str(d.site), "n_features": int(d.n_features)} for n, d in self.dicts.items()]
        name = dictionary if dictionary is not None else next(iter(self.dicts))
        super().__init__(dictionaries_info=info, dictionary=name, **kwargs)
        self._ready = True
        self.prompt = prompt
        self.selection.observe(self._on_selection, names=["feature"])
        self.on_msg(self._on_action)

    def _repr_keys(self) -> list[str]:
        return ["prompt", "dictionary", "selected_token", "feature"]

    @property
    def current(self) -> Any:
        """The selected Feature (or None)."""
        if self.feature < 0:
            return None
        return self.dicts[self.dictionary][self.feature]

    # ------------------------------------------------------------------ running
    @traitlets.observe("prompt")
    def _on_prompt(self, change: dict[str, Any]) -> None:
        if self._ready:
            self._run()

    @guarded
    def _run(self) -> None:
        if not self.prompt:
            return
        with self.working("encoding the prompt"), model_lock(self.model):
            acts = feature_activations(self.model, self.dicts, [self.prompt], progress=False)
        self.acts = acts
        n = len(acts.str_tokens[0])
        with self.hold_sync():
            self.tokens = list(acts.str_tokens[0])
            self.is_sink = [bool(x) for x in acts.is_sink[0]]
            pos = self.selected_token if 0 <= self.selected_token < n else n - 1
            if pos == self.selected_token:
                self._update_token()
            else:
                self.selected_token = pos
            if self.feature < 0:
                top = self._top_at(pos, 1)
                if top:
                    self.feature = top[0]["feature"]
            self._update_values()
            self._update_search()

    def _top_at(self, pos: int, k: int) -> list[dict[str, Any]]:
        if self.acts is None or not 0 <= pos < len(self.tokens):
            return []
        df = self.acts.top_features(pos, k=k, dictionary=self.dictionary)
        return [{"feature": int(r.feature), "activation": float(r.activation), "label": str(r.label)}
                for r in df.itertuples()]

    def _update_token(self) -> None:
        self.token_features = self._top_at(self.selected_token, self.k)

    def _update_values(self) -> None:
        if self.acts is None or self.feature < 0:
            self.token_values = b""
            return
        vals = self.acts.feature_values((self.dictionary, self.feature))
        self.token_values = to_bytes(vals)
        # colour scale: the feature's max over the corpus index if known, else over this prompt
        card_max = self.card.get("max_activation") if self.card.get("index") == self.feature else None
        non_sink = vals[~np.asarray(self.is_sink, dtype=bool)] if len(self.is_sink) == len(vals) else vals
        prompt_max = float(np.abs(non_sink).max()) if non_sink.size else 0.0
        self.value_scale = float(card_max or prompt_max or 1.0)

    # ------------------------------------------------------------------ selection
    @traitlets.observe("selected_token")
    @guarded
    def _on_token(self, change: dict[str, Any]) -> None:
        if not self._ready or self.acts is None:
            return
        if not 0 <= self.selected_token < len(self.tokens):
            raise FeatureError(f"token {self.selected_token} does not exist: the prompt has tokens 0-{len(self.tokens) - 1}")
        self._update_token()
        self.selection.token = self.selected_token

    @traitlets.observe("dictionary")
    @guarded
    def _on_dictionary(self, change: dict[str, Any]) -> None:
        if not self._ready:
            return
        if self.dictionary not in self.dicts:
            raise FeatureError(f"no dictionary {self.dictionary!r}: choose one of {', '.join(self.dicts)}")
        self._update_token()
        top = self.token_features[:1]
        self.feature = top[0]["feature"] if top else -1
        self._update_search()

    @traitlets.observe("feature")
    @guarded
    def _on_feature(self, change: dict[str, Any]) -> None:
        if not self._ready:
            return
        feat = self.current  # raises FeatureError naming the range
        if feat is not None:
            with self.working(f"loading feature {feat.index}"), model_lock(self.model):
                self.card = (feature_card(feat, index=self.index, model=self.model, name=self.dictionary)
                             if self.show_dashboard else {})
            if self.selection.feature != feat:
                self.selection.feature = feat
        else:
            self.card = {}
        self._update_values()

    def _on_selection(self, change: dict[str, Any]) -> None:
        f = change["new"]
        if f is None:
            return
        for name, d in self.dicts.items():
            if d is f.dictionary and (name != self.dictionary or f.index != self.feature):
                if name != self.dictionary:
                    self._switch_dictionary(name)
                self.feature = f.index
                return

    def _switch_dictionary(self, name: str) -> None:
        """Change dictionary without the observer's "select its top feature" step."""
        self._ready = False
        try:
            self.dictionary = name
        finally:
            self._ready = True
        self._update_token()
        self._update_search()

    # ------------------------------------------------------------------ search
    @traitlets.observe("query")
    @guarded
    def _on_query(self, change: dict[str, Any]) -> None:
        self._update_search()

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Features matching ``query``: an id (``"123"``), ``"name#123"``, or text in a label."""
        q = query.strip()
        out: list[dict[str, Any]] = []
        if not q:
            return out
        names = list(self.dicts)
        target: list[tuple[str, int]] = []
        if "#" in q and q.rpartition("#")[2].isdigit():
            head, _, tail = q.rpartition("#")
            target = [(n, int(tail)) for n in names if n == head or not head]
        elif q.isdigit():
            target = [(self.dictionary, int(q))]
        for n, i in target:
            if 0 <= i < self.dicts[n].n_features:
                out.append(self._hit(n, i))
        if not target:
            ql = q.lower()
            order = [self.dictionary] + [n for n in names if n != self.dictionary]
            for n in order:
                for i, lab in sorted(self.dicts[n].labels.items()):
                    if ql in lab.lower():
                        out.append(self._hit(n, i))
                        if len(out) >= limit:
                            return out
        return out[:limit]

    def _hit(self, name: str, i: int) -> dict[str, Any]:
        act = 0.0
        if self.acts is not None:
            act = float(np.max(self.acts.feature_values((name, i)), initial=0.0))
        return {"dictionary": name, "feature": int(i), "label": self.dicts[name].labels.get(i, ""), "activation": act}

    def _update_search(self) -> None:
        self.search_results = self.search(self.query)

    # ------------------------------------------------------------------ actions
    def _on_action(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("action") == "pick":
            self.pick(str(content.get("dictionary", self.dictionary)), int(content.get("feature", -1)))
        elif content.get("action") == "steer":
            self.steer()
        elif content.get("action") == "label":
            self.set_label(str(content.get("label", "")))

    @guarded
    def pick(self, dictionary: str, feature: int) -> None:
        """Select ``dictionary``'s ``feature`` (what clicking a feature or a search hit does)."""
        if dictionary not in self.dicts:
            raise FeatureError(f"no dictionary {dictionary!r}: choose one of {', '.join(self.dicts)}")
        if dictionary != self.dictionary:
            self._switch_dictionary(dictionary)
        self.feature = feature

    @guarded
    def steer(self) -> None:
        """Hand the selected feature to the steering panels sharing this selection."""
        if self.current is None:
            raise FeatureError("select a feature first (click one in the token's list)")
        self.selection.request_steer(self.current)

    @guarded
    def set_label(self, label: str) -> None:
        """Label the selected feature (saved to the dictionary's labels.json when it has a folder)."""
        feat = self.current
        if feat is None:
            raise FeatureError("select a feature to label")
        feat.dictionary.set_label(feat.index, label)
        self.card = {**self.card, "label": feat.label}
        self.token_features = [{**r, "label": feat.label} if r["feature"] == feat.index else r for r in self.token_features]
