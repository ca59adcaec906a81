"""One exception hierarchy for interp_widgets.

Every error is an :class:`InterpWidgetsError` and also the builtin a caller would naturally
catch (``ValueError``, ``KeyError``, ``FileNotFoundError`` ...). Messages name the bad value,
the valid range, and the fix.

    >>> try:
    ...     model.site("resid_post.99")
    ... except iw.errors.SiteError as e:
    ...     print(e)
"""

from __future__ import annotations


class InterpWidgetsError(Exception):
    """Root of every error raised on purpose by interp_widgets."""


class ModelLoadError(InterpWidgetsError, ValueError):
    """A model could not be found or loaded (bad path, unsupported architecture, bad cache)."""


class CacheError(ModelLoadError):
    """The converted-model cache is missing, partial or corrupt (it is rebuilt automatically)."""


class RemoteError(InterpWidgetsError, RuntimeError):
    """NDIF remote execution failed: missing API key, service unreachable, timeout."""


class SiteError(InterpWidgetsError, KeyError):
    """A hook site name or layer does not exist for this model."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class PromptError(InterpWidgetsError, ValueError):
    """A prompt is empty, not a string, or longer than the model's context."""


class DictionaryError(InterpWidgetsError, ValueError):
    """A dictionary file or config is malformed, or does not match the model / site."""


class UnsafeFileError(DictionaryError):
    """A file format that can execute code (pickle, ``.pt``, ``.bin``) was offered as weights."""


class FeatureError(InterpWidgetsError, IndexError):
    """A feature id is out of range, or a feature belongs to another dictionary / model."""


class SteeringError(InterpWidgetsError, ValueError):
    """A steering spec is invalid: bad strength, direction size, positions or mode."""


class GraphError(InterpWidgetsError, ValueError):
    """An attribution graph is malformed (bad JSON, duplicate ids, dangling edges)."""


class MemoryBudgetError(InterpWidgetsError, MemoryError):
    """The work would need more memory than the budget allows; the message says how to shrink it."""


class CorpusError(InterpWidgetsError, ValueError):
    """A corpus source is missing or empty."""


__all__ = [
    "InterpWidgetsError",
    "ModelLoadError",
    "CacheError",
    "RemoteError",
    "SiteError",
    "PromptError",
    "DictionaryError",
    "UnsafeFileError",
    "FeatureError",
    "SteeringError",
    "GraphError",
    "MemoryBudgetError",
    "CorpusError",
]
