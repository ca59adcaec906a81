"""Steer specs on their own: validation, positions, repr, composition, JSON round trips."""

from __future__ import annotations

import json
import math

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.steering import Steers, TokenMatch
from interp_widgets.errors import SiteError, SteeringError


def vec(d: int = 64) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, float("nan"), torch.tensor(math.inf)])
def test_non_finite_strength_is_rejected(bad):
    with pytest.raises(SteeringError, match="not finite"):
        iw.Steer(vec(), bad, site="resid_post.1")


@pytest.mark.parametrize("bad", [True, "8", [1.0], torch.ones(2)])
def test_non_number_strength_is_rejected(bad):
    with pytest.raises(SteeringError, match="strength"):
        iw.Steer(vec(), bad, site="resid_post.1")


def test_strength_required_except_for_ablation():
    with pytest.raises(SteeringError, match="needs a strength"):
        iw.Steer(vec(), site="resid_post.1")
    with pytest.raises(SteeringError, match="ablate takes no strength"):
        iw.Steer(vec(), 2.0, site="resid_post.1", mode="ablate")
    assert iw.Steer(vec(), site="resid_post.1", mode="ablate").strength is None


def test_direction_checks():
    with pytest.raises(SteeringError, match="site="):
        iw.Steer(vec(), 4.0)  # a raw tensor does not say where it lives
    with pytest.raises(SteeringError, match="1-D"):
        iw.Steer(torch.ones(2, 64), 4.0, site="resid_post.1")
    with pytest.raises(SteeringError, match="zeros"):
        iw.Steer(torch.zeros(64), 4.0, site="resid_post.1")
    bad = vec()
    bad[3] = math.nan
    with pytest.raises(SteeringError, match="NaN"):
        iw.Steer(bad, 4.0, site="resid_post.1")
    with pytest.raises(SiteError):
        iw.Steer(vec(), 4.0, site="resid post 1")
    with pytest.raises(SteeringError, match="cannot steer with"):
        iw.Steer(3.0, 4.0, site="resid_post.1")


def test_spec_copies_the_tensor():
    v = vec()
    s = iw.Steer(v, 4.0, site="resid_post.1")
    v.mul_(0)
    assert float(s.direction.norm()) > 0  # later edits of the caller's tensor do not leak in


def test_mode_argument_checks():
    with pytest.raises(SteeringError, match="unknown mode"):
        iw.Steer(vec(), 1.0, site="resid_post.1", mode="multiply")
    with pytest.raises(SteeringError, match="relative"):
        iw.Steer(vec(), 0.5, site="resid_post.1", mode="scale", units="relative")
    with pytest.raises(SteeringError, match="only apply to mode='ablate'"):
        iw.Steer(vec(), 1.0, site="resid_post.1", ablation="mean")
    with pytest.raises(SteeringError, match="need ablation='mean'"):
        iw.Steer("resid_post.1", mode="ablate", mean=torch.zeros(64))
    with pytest.raises(SteeringError, match="can only be ablated"):
        iw.Steer("resid_post.1", 3.0)
    with pytest.raises(SteeringError, match="1-D tensor"):
        iw.Steer("resid_post.1", mode="ablate", ablation="mean", mean=2.0)


def test_feature_site_rules():
    sae = iw.SAE.random(d_in=64, n_features=32, site="resid_post.1")
    s = iw.Steer(sae[3], 5.0)
    assert s.site == iw.Site("resid_post", 1) and s.kind == "feature"
    # its decoder row may be added elsewhere, but scale / clamp need the site it is computed at
    assert iw.Steer(sae[3], 5.0, site="resid_post.2").site == iw.Site("resid_post", 2)
    with pytest.raises(SteeringError, match="needs its own site"):
        iw.Steer(sae[3], 0.0, mode="scale", site="resid_post.2")
    tc = iw.Transcoder.random(d_in=64, n_features=32, layer=2)
    assert iw.Steer(tc[1], 2.0, mode="clamp").site == iw.Site("mlp_out", 2)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("all", "all"), ("generated", "generated"), (3, (3,)), ([4, 1, 4], (1, 4)),
        (torch.tensor([2, 0]), (0, 2)), ({"token": "Paris"}, TokenMatch("Paris")),
        ({"slice": [1, None]}, slice(1, None, None)), (slice(-3, None), slice(-3, None)),
    ],
)
def test_positions_are_normalised(given, expected):
    assert iw.Steer(vec(), 1.0, site="resid_post.1", positions=given).positions == expected


@pytest.mark.parametrize("bad", ["Paris", [], [1.5], slice(0, 4, 0), True, {"tok": "x"}, 2.5])
def test_bad_positions_name_the_fix(bad):
    with pytest.raises(SteeringError, match="position|slice|token|index"):
        iw.Steer(vec(), 1.0, site="resid_post.1", positions=bad)


def test_repr_is_readable():
    sae = iw.SAE.random(d_in=64, n_features=32, site="resid_post.1")
    sae.set_label(3, "Paris", save=False)
    s = iw.Steer(sae[3], 0.0, mode="scale", positions="generated")
    r = repr(s)
    assert "scale" in r and "x0" in r and "#3" in r and "'Paris'" in r and "generated" in r
    r2 = repr(iw.Steer(vec(), 0.25, site="resid_post.1", units="relative", positions=slice(2, 5)))
    assert "+0.25 x typical norm" in r2 and "[2:5]" in r2


def test_specs_compose():
    a = iw.Steer(vec(), 1.0, site="resid_post.1")
    b = iw.Steer("mlp_out.0", mode="ablate")
    c = iw.Steer(vec(), -2.0, site="resid_post.2", mode="clamp")
    both = a + b
    assert isinstance(both, Steers) and len(both) == 2 and both[1] is b
    three = both + c
    assert [s.mode for s in three] == ["add", "ablate", "clamp"]
    assert len(a + (b + c)) == 3
    assert "Steers(" in repr(three)
    with pytest.raises(SteeringError, match="no steering specs"):
        Steers.of([])


def test_replace_changes_one_field():
    a = iw.Steer(vec(), 1.0, site="resid_post.1", positions=[1, 2])
    b = a.replace(strength=16.0)
    assert b.strength == 16.0 and b.positions == (1, 2) and a.strength == 1.0
    with pytest.raises(SteeringError):
        a.replace(strength=math.nan)


def test_json_round_trip_direction_and_site(tmp_path):
    a = iw.Steer(vec(), 0.5, site="resid_post.1", units="relative", positions={"token": "cat"}, name="cats")
    b = iw.Steer("resid_post.2", mode="ablate", ablation="mean", mean=torch.arange(64.0))
    c = iw.Steer(vec(), 3.0, site="resid_post.0", positions=slice(1, -1))
    specs = a + b + c
    text = json.dumps(specs.to_json())  # plain JSON
    back = Steers.from_json(json.loads(text))
    assert back.to_json() == specs.to_json()
    assert torch.allclose(back[0].direction, a.direction)
    assert back[0].positions == TokenMatch("cat") and back[0].name == "cats"
    assert torch.equal(back[1].mean, torch.arange(64.0))
    assert back[2].positions == slice(1, -1)


def test_json_round_trip_feature(tmp_path):
    sae = iw.SAE.random(d_in=64, n_features=32, site="resid_post.1", name="my_sae")
    spec = iw.Steer(sae[7], 2.5, mode="clamp", positions="prompt")
    data = json.loads(json.dumps(spec.to_json()))
    assert data["target"] == {"kind": "feature", "dictionary": "my_sae", "path": None,
                              "index": 7, "label": ""}
    back = iw.Steer.from_json(data, dictionaries={"my_sae": sae})
    assert back.target == sae[7] and back.mode == "clamp" and back.strength == 2.5
    with pytest.raises(SteeringError, match="not loaded"):
        iw.Steer.from_json(data)
    # saved dictionaries are found again through their folder
    sae.save(tmp_path / "sae")
    loaded = iw.Steer.from_json(json.loads(json.dumps(iw.Steer(sae[7], 2.5).to_json())))
    assert loaded.target.index == 7
    assert torch.equal(loaded.target.direction, sae[7].direction)
