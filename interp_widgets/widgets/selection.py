"""``Selection``: what the panels of one notebook agree is selected.

Panels created without ``selection=`` share :meth:`Selection.shared`, so clicking a feature in a
FeaturePanel opens it in a FeatureDashboard, and "steer with this" adds it to a SteeringPanel.

    >>> sel = iw.Selection()
    >>> panel = iw.FeaturePanel(model, sae, prompt="...", selection=sel)
    >>> dash = iw.FeatureDashboard(sae, selection=sel)     # follows panel's clicks
    >>> sel.feature = sae[12]                              # or select from Python
"""

from __future__ import annotations

from typing import Any

import traitlets

from ..dictionaries import Feature

_SHARED: Selection | None = None


class Selection(traitlets.HasTraits):
    """Shared selection: ``feature`` (a Feature or None), ``node`` (graph node id), ``prompt``,
    ``steer`` (the last feature someone asked to steer with), ``token`` (position or -1)."""

    feature = traitlets.Instance(Feature, allow_none=True)
    steer = traitlets.Instance(Feature, allow_none=True)
    node = traitlets.Unicode("")
    prompt = traitlets.Unicode("")
    token = traitlets.Int(-1)

    @classmethod
    def shared(cls) -> Selection:
        """The notebook-wide default selection (one per kernel)."""
        global _SHARED
        if _SHARED is None:
            _SHARED = cls()
        return _SHARED

    def select(self, feature: Feature | None) -> None:
        """Select a feature (``None`` clears); observers in every linked panel update."""
        self.feature = feature

    def request_steer(self, feature: Feature) -> None:
        """Hand a feature to the steering panels that share this selection."""
        # re-setting the same feature must still notify (a second click means "add again")
        self.steer = None
        self.steer = feature

    def __repr__(self) -> str:
        parts: list[Any] = []
        for k in ("feature", "node", "token", "prompt"):
            v = getattr(self, k)
            if v not in (None, "", -1):
                parts.append(f"{k}={v!r}")
        return f"Selection({', '.join(parts)})"
