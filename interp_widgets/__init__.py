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
_LAZY: dict[str, str] = {
    "load_model": "interp_widgets.models",
    "Model": "interp_widgets.models",
    "Site": "interp_widgets.models",
    "ActivationCache": "interp_widgets.models",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'interp_widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["errors", "__version__", *_LAZY]
