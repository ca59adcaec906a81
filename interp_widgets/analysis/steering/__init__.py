"""Steering: add, scale, clamp and ablate features / directions / sites, next to a baseline.

    >>> spec = iw.Steer(paris_direction, 48.0, site="resid_post.12")
    >>> r = iw.steer(model, spec).generate(["My favourite food is"], max_new_tokens=16)
    >>> print(r); r.next_token(0); r.to_pandas()

``Steer`` specs are model-independent; ``steer(model, specs)`` checks them against a model;
``Steerer.generate`` returns a :class:`SteeringResult`; ``steering_sweep`` gives a
dose-response curve (``dose_response_figure`` plots it).
"""

from .engine import NORM_PROMPTS, site_mean, typical_norm
from .result import Continuation, NextTokenShift, SteeringResult
from .run import Steerer, steer
from .spec import Steer, Steers, TokenMatch
from .sweep import SteeringSweep, dose_response_figure, steering_sweep

__all__ = [
    "Steer", "Steers", "TokenMatch", "steer", "Steerer", "SteeringResult", "Continuation",
    "NextTokenShift", "steering_sweep", "SteeringSweep", "dose_response_figure",
    "typical_norm", "site_mean", "NORM_PROMPTS",
]
