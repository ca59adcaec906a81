"""``LogitLens``: a per-layer top-token heatmap for one prompt (a quick orientation panel).

    >>> lens = iw.LogitLens(model, "The Eiffel Tower is in the city of")
    >>> lens                                 # heatmap: layers up, positions across
    >>> lens.prompt = "2 + 3 ="              # re-runs; lens.result holds the LogitLensResult
"""

from __future__ import annotations

from typing import Any

import traitlets

from ..analysis.logit_lens import LogitLensResult, logit_lens
from ..models import Model
from ._base import Panel, css, esm, guarded, model_lock, to_bytes


class LogitLens(Panel):
    """Logit lens panel. Traits: ``prompt``, ``k``, ``selected`` ([layer, position]) in;
    ``tokens``, ``layers``, ``top_tokens`` ([layer][pos][k]), ``top_probs`` / ``final_prob``
    (float32 bytes) out. ``result`` is the last :class:`LogitLensResult`."""

    _esm = esm("logit_lens.js")
    _css = css()
    uses_plotly = True

    prompt = traitlets.Unicode("").tag(sync=True)
    k = traitlets.Int(5).tag(sync=True)
    selected = traitlets.List(traitlets.Int(), default_value=[-1, -1]).tag(sync=True)
    model_name = traitlets.Unicode("").tag(sync=True)
    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    layers = traitlets.List(traitlets.Int()).tag(sync=True)
    top_tokens = traitlets.List().tag(sync=True)
    top_probs = traitlets.Bytes(b"").tag(sync=True)
    final_prob = traitlets.Bytes(b"").tag(sync=True)
    final_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, model: Model, prompt: str = "", *, k: int = 5, **kwargs: Any) -> None:
        self.model = model
        self.result: LogitLensResult | None = None
        super().__init__(model_name=model.name, k=k, **kwargs)
        self.prompt = prompt  # the observer runs the lens

    def _repr_keys(self) -> list[str]:
        return ["prompt", "k", "selected"]

    @traitlets.observe("prompt", "k")
    def _on_input(self, change: dict[str, Any]) -> None:
        self._run()

    @guarded
    def _run(self) -> None:
        if not self.prompt:
            return
        with self.working("running the logit lens"), model_lock(self.model):
            res = logit_lens(self.model, self.prompt, k=self.k)
        self.result = res
        n_layers, n_pos, _ = res.top_ids.shape
        with self.hold_sync():
            self.tokens = res.tokens
            self.layers = res.layers
            self.top_tokens = res.top_tokens
            self.top_probs = to_bytes(res.top_probs)
            self.final_prob = to_bytes(res.final_prob)
            self.final_tokens = [self.model.tokenizer.decode([int(i)]) for i in res.final_ids]
            self.selected = [res.layers[-1], n_pos - 1]

    def selected_top(self) -> list[tuple[str, float]]:
        """The top-k (token, probability) at the selected (layer, position)."""
        if self.result is None:
            return []
        layer, pos = self.selected
        li = self.result.layers.index(layer)
        return [(t, float(p)) for t, p in zip(self.result.top_tokens[li][pos], self.result.top_probs[li, pos], strict=True)]
