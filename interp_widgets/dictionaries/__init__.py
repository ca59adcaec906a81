"""Dictionaries: features as first-class objects (SAE, transcoder, neuron basis, directions).

Imports only ``models``, ``errors`` and ``files`` (never ``analysis`` or ``widgets``).
"""

from .base import (
    DEFAULT_SINK_RATIO,
    SAE,
    Dictionary,
    Feature,
    FeatureDictionary,
    Transcoder,
    TranscoderSet,
    flatten_dictionaries,
    load_ours,
    mark_sinks,
)
from .directions import Direction, DirectionSet, from_contrast
from .formats import (
    detect_format,
    load_circuit_tracer,
    load_dictionary,
    load_saelens,
    load_transcoders,
    save_circuit_tracer,
    save_saelens,
)
from .neurons import NeuronBasis, neuron_basis

__all__ = [
    "SAE", "Dictionary", "Feature", "FeatureDictionary", "Transcoder", "TranscoderSet",
    "flatten_dictionaries", "load_ours",
    "NeuronBasis", "neuron_basis", "load_dictionary", "load_transcoders", "detect_format",
    "load_saelens", "load_circuit_tracer", "save_saelens", "save_circuit_tracer",
    "Direction", "DirectionSet", "from_contrast", "mark_sinks", "DEFAULT_SINK_RATIO",
]
