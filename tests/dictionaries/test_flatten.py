"""flatten_dictionaries: the one naming rule shared by feature_activations, scan and the panels."""

from __future__ import annotations

import pytest

import interp_widgets as iw
from interp_widgets.analysis.scan import scan_many
from interp_widgets.dictionaries import TranscoderSet, flatten_dictionaries
from interp_widgets.dictionaries.directions import direction
from interp_widgets.errors import DictionaryError


def _sae(layer: int, name: str, n: int = 16) -> iw.SAE:
    sae = iw.SAE.random(d_in=8, n_features=n, site=f"resid_post.{layer}", architecture="topk", k=2, seed=layer)
    sae.name = name
    return sae


def _tset(name: str = "tcs") -> TranscoderSet:
    tcs = {L: iw.Transcoder.random(d_in=8, n_features=12, layer=L, seed=L) for L in (0, 2)}
    for L, tc in tcs.items():
        tc.name = f"transcoder.{L}"
    return TranscoderSet(tcs, name=name)


def test_names_follow_one_rule():
    a, b = _sae(1, "a"), _sae(2, "b")
    assert list(flatten_dictionaries(a)) == ["a"]
    assert flatten_dictionaries([a, b]) == {"a": a, "b": b}
    # a mapping's keys name its entries, whatever the dictionaries call themselves
    assert flatten_dictionaries({"first": a, "second": b}) == {"first": a, "second": b}
    t = _tset()
    assert flatten_dictionaries(t) == {"transcoder.0": t[0], "transcoder.2": t[2]}
    assert list(flatten_dictionaries({"mine": t, "x": a})) == ["mine.0", "mine.2", "x"]
    assert list(flatten_dictionaries({"tcs": t})) == ["transcoder.0", "transcoder.2"]
    # a DirectionSet is converted to the dictionary it stands for
    ds = direction([1.0] + [0.0] * 7, "resid_post.1", label="x").dictionary
    (d,) = flatten_dictionaries({"dir": ds}).values()
    assert hasattr(d, "encode") and d.n_features == 1


def test_bad_input_names_the_fix():
    a, a2 = _sae(1, "same"), _sae(2, "same")
    with pytest.raises(DictionaryError, match="both named 'same'.*dict"):
        flatten_dictionaries([a, a2])
    assert flatten_dictionaries([a, a]) == {"same": a}  # the same object twice is fine
    with pytest.raises(DictionaryError, match="not a dictionary: pass SAEs"):
        flatten_dictionaries(["sae"])
    with pytest.raises(DictionaryError, match="no dictionaries given"):
        flatten_dictionaries([])
    with pytest.raises(DictionaryError, match="no dictionaries given"):
        flatten_dictionaries(None)


def test_activations_scan_and_dashboard_agree_on_names(tiny_llama):
    """A TranscoderSet (itself a Mapping layer -> transcoder) is named by its transcoders everywhere,
    and an index keyed by a panel's name for a dictionary reaches that dictionary's dashboard."""
    tcs = {L: iw.Transcoder.random(d_in=tiny_llama.d_model, n_features=24, layer=L, seed=L,
                                   architecture="topk", k=3) for L in (0, 1)}
    for L, tc in tcs.items():
        tc.name = f"transcoder.{L}"
    tset = TranscoderSet(tcs, name="tiny transcoders")
    acts = iw.feature_activations(tiny_llama, tset, ["The cat sat on the mat"], progress=False)
    assert sorted(acts.dictionaries) == ["transcoder.0", "transcoder.1"]
    corpus = iw.Corpus.from_strings(["The cat sat on the mat. The dog sat on the log."] * 8)
    indexes = scan_many(tiny_llama, tset, corpus, max_tokens=200, seq_len=16, window=4, top_k=3,
                        batch_size=4, progress=False)
    assert sorted(indexes) == ["transcoder.0", "transcoder.1"]

    sae = iw.SAE.random(d_in=tiny_llama.d_model, n_features=24, site="resid_post.1", architecture="topk", k=3)
    ix = scan_many(tiny_llama, {"mine": sae}, corpus, max_tokens=200, seq_len=16, window=4, top_k=3,
                   batch_size=4, progress=False)
    assert list(ix) == ["mine"] and sae.name != "mine"
    live = int(ix["mine"].live[0])
    dash = iw.FeatureDashboard({"mine": sae}, live, index=ix, selection=iw.Selection())
    assert dash.dictionary_names == ["mine"] and dash.card["examples"], dash.card["notes"]
