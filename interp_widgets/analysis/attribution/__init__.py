"""Attribution graphs: the direct linear effects between features in a prompt's local
replacement model (transcoders + error nodes, attention patterns and norm scales frozen).

    >>> graph = iw.attribute(model, 'The opposite of "small" is "')
    >>> graph.prune().scores()
    >>> iw.estimate_attribution(model, "a much longer prompt ...")   # memory / time first

Modules: :mod:`.linear_model` (the frozen model and its transpose), :mod:`.replacement`
(transcoders / neurons per layer), :mod:`.engine` (batched backward passes, feature ranking),
:mod:`.build` (``attribute``), :mod:`.interventions` (the real model with nodes scaled).
"""

from __future__ import annotations

from .build import AttributionEstimate, attribute, estimate_attribution

__all__ = ["attribute", "estimate_attribution", "AttributionEstimate"]
