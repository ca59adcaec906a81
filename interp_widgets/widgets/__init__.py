"""Notebook panels (anywidget): FeaturePanel, FeatureDashboard, SteeringPanel, CircuitView, LogitLens.

Every panel keeps its state in traitlets (so "save widget state" and :meth:`Panel.to_html` give a
kernel-free view), shows errors inside itself, and can be driven from Python by setting traits.

    >>> lens = iw.LogitLens(model, "The Eiffel Tower is in the city of")
    >>> panel = iw.FeaturePanel(model, sae, prompt="...")
    >>> view = iw.CircuitView(graph)

Imports ``analysis`` (never torch directly); submodules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Panel": "._base",
    "Selection": ".selection",
    "LogitLens": ".logit_lens",
    "CircuitView": ".circuit_view",
    "FeaturePanel": ".feature_panel",
    "FeatureDashboard": ".dashboard",
    "SteeringPanel": ".steering_panel",
    "render_report": ".report",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'interp_widgets.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = list(_WHERE)
