"""Dictionaries: features as first-class objects (SAE, transcoder, neuron basis, directions).

Imports only ``models``, ``errors`` and ``files`` (never ``analysis`` or ``widgets``).
"""

from .base import SAE, Dictionary, Feature, FeatureDictionary, Transcoder, TranscoderSet, load_ours
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
    "SAE", "Dictionary", "Feature", "FeatureDictionary", "Transcoder", "TranscoderSet", "load_ours",
    "NeuronBasis", "neuron_basis", "load_dictionary", "load_transcoders", "detect_format",
    "load_saelens", "load_circuit_tracer", "save_saelens", "save_circuit_tracer",
]
