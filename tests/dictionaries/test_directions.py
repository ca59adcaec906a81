"""Directions: user vectors and difference-of-means concept directions (sinks left out)."""

from __future__ import annotations

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.activations import feature_activations
from interp_widgets.dictionaries.directions import Direction, DirectionSet, direction, from_contrast
from interp_widgets.errors import DictionaryError, PromptError, SiteError, UnsafeFileError

POS = ["The capital of France is Paris", "Paris is a city in France"]
NEG = ["The capital of Japan is Tokyo", "Tokyo is a city in Japan"]


def test_from_contrast_is_the_difference_of_non_sink_means(tiny_llama):
    d = from_contrast(tiny_llama, POS, NEG, "resid_post.2", normalize=False)
    _, cache = tiny_llama.run_with_cache(POS + NEG, ["resid_post.2"])
    x, m = cache["resid_post.2"], cache.attention_mask.bool().clone()
    m[:, 0] = False  # position 0 is a sink
    mp = x[:2][m[:2]].double().mean(0)
    mn = x[2:][m[2:]].double().mean(0)
    torch.testing.assert_close(d.vector, (mp - mn).float(), rtol=1e-5, atol=1e-5)
    assert d.metadata["n_positive_tokens"] == int(m[:2].sum())
    unit = from_contrast(tiny_llama, POS, NEG, "resid_post.2")
    assert unit.norm == pytest.approx(1.0) and unit.norm_before_normalizing == pytest.approx(d.norm, rel=1e-5)
    torch.testing.assert_close(unit.vector, d.unit)
    assert "France" in unit.label and unit.site == iw.Site("resid_post", 2)


def test_from_contrast_last_positions(tiny_llama):
    d = from_contrast(tiny_llama, POS, NEG, "resid_mid.1", positions="last", normalize=False)
    _, cache = tiny_llama.run_with_cache(POS + NEG, ["resid_mid.1"])
    last = [n - 1 for n in cache.attention_mask.sum(1).tolist()]
    x = torch.stack([cache["resid_mid.1"][i, p] for i, p in enumerate(last)]).double()
    torch.testing.assert_close(d.vector, (x[:2].mean(0) - x[2:].mean(0)).float(), rtol=1e-5, atol=1e-5)


def test_direction_is_usable_where_a_feature_is(tiny_llama):
    d = from_contrast(tiny_llama, POS, NEG, "resid_post.2", label="France vs Japan")
    # feature-like: dictionary + index; decode(e_0) - decode(0) is the vector (what steering adds)
    assert d.index == 0 and isinstance(d.dictionary, DirectionSet) and d.dictionary is d.dictionary
    e = torch.zeros(2, 1)
    e[0, 0] = 1.0
    torch.testing.assert_close(d.dictionary.decode(e)[0] - d.dictionary.decode(e)[1], d.direction)
    assert d.dictionary[0].label == "France vs Japan"
    # activations: the projection on the (unit) direction
    acts = feature_activations(tiny_llama, d, ["Paris is lovely", "Tokyo is lovely"])
    _, cache = tiny_llama.run_with_cache(["Paris is lovely"], ["resid_post.2"])
    want = (cache["resid_post.2"][0] @ d.vector).numpy()
    assert acts.feature_values(d, prompt=0) == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert iw.logit_effects(d, tiny_llama, k=2).attrs["site"] == "resid_post.2"


def test_direction_set_projects(tiny_llama):
    a = direction(torch.tensor([1.0, 0, 0, 0]), "resid_post.0", label="a")
    b = direction(torch.tensor([0, 2.0, 0, 0]), "resid_post.0", label="b")
    ds = DirectionSet([a, b])
    x = torch.tensor([[3.0, 4.0, 5.0, 6.0]])
    torch.testing.assert_close(ds.encode(x), torch.tensor([[3.0, 2.0]]))
    torch.testing.assert_close(ds.reconstruct(x), torch.tensor([[3.0, 4.0, 0.0, 0.0]]))
    assert ds.labels == {0: "a", 1: "b"} and ds[1].direction.tolist() == [0, 2.0, 0, 0]
    with pytest.raises(DictionaryError, match="share one site"):
        DirectionSet([a, direction(torch.ones(4), "resid_post.1")])
    with pytest.raises(DictionaryError, match="last dim 4"):
        ds.encode(torch.ones(2, 3))


def test_save_and_load(tmp_path, tiny_llama):
    d = from_contrast(tiny_llama, POS, NEG, "resid_post.2", label="fr-jp")
    path = d.save(tmp_path / "fr_jp")
    assert path.suffix == ".safetensors"
    back = Direction.load(path)
    torch.testing.assert_close(back.vector, d.vector)
    assert back.site == d.site and back.label == "fr-jp" and back.metadata["positions"] == "all"
    (tmp_path / "d.pt").write_bytes(b"x")
    with pytest.raises(UnsafeFileError):
        Direction.load(tmp_path / "d.pt")


def test_bad_inputs(tiny_llama):
    with pytest.raises(DictionaryError, match="zero vector"):
        Direction(torch.zeros(64), "resid_post.0")
    with pytest.raises(DictionaryError, match="NaN"):
        Direction(torch.full((64,), float("nan")), "resid_post.0")
    with pytest.raises(DictionaryError, match="1-D"):
        Direction(torch.ones(2, 64), "resid_post.0")
    with pytest.raises(DictionaryError, match="32 dimensions.*d_model=64"):
        direction(torch.ones(32), "resid_post.0").check_model(tiny_llama)
    with pytest.raises(PromptError, match="empty"):
        from_contrast(tiny_llama, [], NEG, "resid_post.1")
    with pytest.raises(SiteError, match="layers 0-3"):
        from_contrast(tiny_llama, POS, NEG, "resid_post.8")
    with pytest.raises(PromptError, match="identical"):
        from_contrast(tiny_llama, POS, POS, "resid_post.1")
    with pytest.raises(PromptError, match="sink"):
        from_contrast(tiny_llama, ["T"], ["A"], "resid_post.1")  # one token each: all sinks
    with pytest.raises(PromptError, match="positions"):
        from_contrast(tiny_llama, POS, NEG, "resid_post.1", positions="first")


@pytest.mark.smollm
def test_smollm_contrast_direction_steers_towards_paris(smollm):
    pos = ["The Eiffel Tower is in Paris, France.", "I flew to Paris last summer.",
           "French food from Paris is famous."]
    neg = ["Mount Fuji is near Tokyo, Japan.", "I flew to Tokyo last summer.",
           "Japanese food from Tokyo is famous."]
    d = from_contrast(smollm, pos, neg, "resid_post.12")
    assert d.metadata["n_positive_tokens"] == sum(len(smollm.tokenize(p).input_ids[0]) - 1 for p in pos)
    paris, tokyo = smollm.tokenizer(" Paris")["input_ids"][0], smollm.tokenizer(" Tokyo")["input_ids"][0]
    toks = smollm.tokenize(["My favourite city in the world is"])

    def margin(strength: float) -> float:
        with torch.no_grad():
            with smollm.trace(toks.as_dict()):
                h = smollm.read("resid_post.12")
                h[:, 1:] += strength * d.vector  # leave the sink alone
                smollm.write("resid_post.12", h)
                out = smollm.read("logits").save()
        logits = getattr(out, "value", out)[0, -1]
        return float(logits[paris] - logits[tokyo])

    assert margin(32.0) > margin(-32.0) + 2.0  # two forwards: keep the test quick
