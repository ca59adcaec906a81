"""Models: loading, the site map, tokenization. The lowest layer (imports only ``errors``)."""

from .model import ActivationCache, Model, Tokens, load_model
from .sites import GLOBAL_SITES, LAYER_SITES, SUPPORTED_FAMILIES, Site

__all__ = [
    "ActivationCache", "Model", "Tokens", "load_model", "Site",
    "GLOBAL_SITES", "LAYER_SITES", "SUPPORTED_FAMILIES",
]
