"""The error hierarchy: one root, the fitting builtin too, readable messages that name the fix."""

from __future__ import annotations

import inspect

import pytest

import interp_widgets as iw
from interp_widgets import errors

BUILTIN = {
    "ModelLoadError": ValueError,
    "CacheError": ValueError,
    "RemoteError": RuntimeError,
    "SiteError": KeyError,
    "PromptError": ValueError,
    "DictionaryError": ValueError,
    "UnsafeFileError": ValueError,
    "FeatureError": IndexError,
    "SteeringError": ValueError,
    "GraphError": ValueError,
    "MemoryBudgetError": MemoryError,
    "CorpusError": ValueError,
}


def _classes():
    return {
        n: c for n, c in vars(errors).items()
        if inspect.isclass(c) and issubclass(c, Exception) and c.__module__ == errors.__name__
    }


def test_every_error_is_rooted_and_exported():
    classes = _classes()
    assert set(classes) == set(errors.__all__)
    for name, cls in classes.items():
        assert issubclass(cls, errors.InterpWidgetsError), name
        assert cls.__doc__, f"{name} needs a docstring saying when it is raised"
    assert iw.errors is errors


@pytest.mark.parametrize("name, builtin", sorted(BUILTIN.items()))
def test_each_error_is_also_the_builtin_a_caller_would_catch(name, builtin):
    cls = getattr(errors, name)
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls("x")


def test_every_error_has_a_builtin_mapping():
    assert set(_classes()) - {"InterpWidgetsError"} == set(BUILTIN), "add new errors to BUILTIN"


def test_site_error_message_is_not_quoted_like_a_key_error():
    e = errors.SiteError("layer 31 does not exist: SmolLM2-135M has layers 0-29")
    assert str(e) == "layer 31 does not exist: SmolLM2-135M has layers 0-29"
    assert str(errors.SiteError()) == ""


def test_subclass_relations_callers_rely_on():
    assert issubclass(errors.CacheError, errors.ModelLoadError)
    assert issubclass(errors.UnsafeFileError, errors.DictionaryError)


def test_real_errors_name_value_range_and_fix(tiny_llama):
    """One real message per kind from the model layer: the bad value, the valid range, the fix."""
    with pytest.raises(errors.SiteError) as e:
        tiny_llama.site("resid_post.12")
    assert "layer 12" in str(e.value) and "0-3" in str(e.value)
    with pytest.raises(errors.PromptError) as e:
        tiny_llama.generate("Hello", max_new_tokens=-1)
    assert "-1" in str(e.value) and "positive" in str(e.value)
    with pytest.raises(errors.ModelLoadError) as e:
        iw.load_model("tiny-nope")
    assert "tiny-nope" in str(e.value) and "tiny-llama" in str(e.value)
