"""interp_widgets: Jupyter-native widgets for mechanistic interpretability on nnsight.

    >>> import interp_widgets as iw
    >>> model = iw.load_model()                       # embedded SmolLM2-135M-Instruct
    >>> model.generate("The Eiffel Tower is in the city of", max_new_tokens=3)

Nothing heavy runs at import: torch, transformers and nnsight load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import errors

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily on first attribute access)
# (helpers: add your public names here; the value is the defining module, or "<module>:module"
#  for a submodule exposed as an attribute, e.g. iw.directions)
_LAZY: dict[str, str] = {
    # models
    "load_model": "interp_widgets.models",
    "Model": "interp_widgets.models",
    "Site": "interp_widgets.models",
    "ActivationCache": "interp_widgets.models",
    # bottom-level helpers
    "Corpus": "interp_widgets.corpus",
    "check_exercises": "interp_widgets.exercises",
    # dictionaries
    "SAE": "interp_widgets.dictionaries",
    "Transcoder": "interp_widgets.dictionaries",
    "TranscoderSet": "interp_widgets.dictionaries",
    "Feature": "interp_widgets.dictionaries",
    "FeatureDictionary": "interp_widgets.dictionaries",
    "NeuronBasis": "interp_widgets.dictionaries.neurons",
    "neuron_basis": "interp_widgets.dictionaries.neurons",
    "Direction": "interp_widgets.dictionaries.directions",
    "directions": "interp_widgets.dictionaries.directions:module",
    "load_dictionary": "interp_widgets.dictionaries.formats",
    "load_transcoders": "interp_widgets.dictionaries.formats",
    "train_sae": "interp_widgets.dictionaries.train",
    "train_transcoders": "interp_widgets.dictionaries.train",
    # analysis
    "feature_activations": "interp_widgets.analysis.activations",
    "FeatureActivations": "interp_widgets.analysis.activations",
    "logit_effects": "interp_widgets.analysis.logit_effects",
    "scan": "interp_widgets.analysis.scan",
    "FeatureIndex": "interp_widgets.analysis.scan",
    "Steer": "interp_widgets.analysis.steering",
    "steer": "interp_widgets.analysis.steering",
    "SteeringResult": "interp_widgets.analysis.steering",
    "steering_sweep": "interp_widgets.analysis.steering",
    "attribute": "interp_widgets.analysis.attribution",
    "estimate_attribution": "interp_widgets.analysis.attribution",
    "AttributionGraph": "interp_widgets.analysis.graph",
    "logit_lens": "interp_widgets.analysis.logit_lens",
    # widgets
    "FeaturePanel": "interp_widgets.widgets",
    "FeatureDashboard": "interp_widgets.widgets",
    "SteeringPanel": "interp_widgets.widgets",
    "CircuitView": "interp_widgets.widgets",
    "LogitLens": "interp_widgets.widgets",
    "Selection": "interp_widgets.widgets",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'interp_widgets' has no attribute {name!r}")
    if mod.endswith(":module"):
        value = importlib.import_module(mod[: -len(":module")])
    else:
        value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["errors", "__version__", *_LAZY]
