"""Dictionaries: features as first-class objects (SAE, transcoder, neuron basis, directions).

Imports only ``models``, ``errors`` and ``files`` (never ``analysis`` or ``widgets``).
"""

from .base import SAE, Dictionary, Feature, FeatureDictionary, Transcoder, TranscoderSet, load_ours

__all__ = ["SAE", "Dictionary", "Feature", "FeatureDictionary", "Transcoder", "TranscoderSet", "load_ours"]
