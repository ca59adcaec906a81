"""Steering specs: what to change, where, by how much. Frozen, composable, printable, JSON.

A :class:`Steer` names a target (a dictionary feature, a direction, or a whole site), a mode
(``add``, ``scale``, ``clamp``, ``ablate``), a strength and the token positions it applies to.
Specs know nothing about a model until :func:`~interp_widgets.analysis.steering.steer` binds
them (that is where sizes, sites and dictionaries are checked against the model).

    >>> paris = iw.Steer(direction, 48.0, site="resid_post.12")          # add 48 * unit vector
    >>> off = iw.Steer(sae[123], 0.0, mode="scale", positions="generated")
    >>> both = paris + off                                                 # Steers of two specs
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import SteeringError
from ...models.sites import Site

MODES = ("add", "scale", "clamp", "ablate")
UNITS = ("absolute", "relative")
ABLATIONS = ("zero", "mean")
POSITION_KEYWORDS = ("all", "prompt", "generated")
#: Largest |strength| accepted: far past any useful edit, and below where float32 norms overflow
#: (a 1e30 push turns RMSNorm's mean square into inf and the layer's output into zeros, silently).
MAX_STRENGTH = 1e12


@dataclass(frozen=True)
class TokenMatch:
    """Positions whose token, stripped of surrounding spaces, equals ``text`` (prompt and
    generated tokens alike): ``Steer(..., positions=TokenMatch("Paris"))``."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise SteeringError(
                f"a token match needs a non-empty string, got {self.text!r}: "
                f"write positions={{'token': 'Paris'}}"
            )

    def __repr__(self) -> str:
        return f"token={self.text!r}"


Positions = str | tuple[int, ...] | slice | TokenMatch


def normalize_positions(p: Any) -> Positions:
    """Accept ``"all" | "prompt" | "generated"``, an int, a list of ints, a slice,
    ``{"token": text}`` / :class:`TokenMatch` or ``{"slice": [start, stop, step]}``."""
    if isinstance(p, TokenMatch):
        return p
    if isinstance(p, str):
        if p in POSITION_KEYWORDS:
            return p
        raise SteeringError(
            f"positions={p!r} is not understood: use one of {', '.join(map(repr, POSITION_KEYWORDS))}, "
            f"an index list like [3, 4], a slice, or {{'token': {p!r}}} to match a token"
        )
    if isinstance(p, bool):
        raise SteeringError(f"positions={p!r}: pass 'all', 'prompt', 'generated', indices or a slice")
    if isinstance(p, int):
        return (int(p),)
    if isinstance(p, slice):
        for name in ("start", "stop", "step"):
            v = getattr(p, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise SteeringError(f"positions slice {name} must be an int or None, got {v!r}")
        if p.step == 0:
            raise SteeringError("positions slice step cannot be 0")
        return p
    if isinstance(p, Mapping):
        if set(p) == {"token"}:
            return TokenMatch(p["token"])
        if set(p) == {"slice"}:
            parts = list(p["slice"]) + [None] * 3
            return normalize_positions(slice(*parts[:3]))
        raise SteeringError(f"positions dict {dict(p)!r}: use {{'token': text}} or {{'slice': [start, stop]}}")
    if isinstance(p, Tensor):
        p = p.tolist()
    if isinstance(p, Sequence):
        out = []
        for v in p:
            if isinstance(v, bool) or not isinstance(v, int):
                raise SteeringError(f"position indices must be ints, got {v!r} in {list(p)!r}")
            out.append(int(v))
        if not out:
            raise SteeringError("positions=[] selects nothing: pass at least one index or 'all'")
        return tuple(sorted(set(out)))
    raise SteeringError(
        f"positions of type {type(p).__name__} not understood: use 'all', 'prompt', 'generated', "
        f"a list of ints, a slice or {{'token': text}}"
    )


def positions_to_json(p: Positions) -> Any:
    if isinstance(p, str):
        return p
    if isinstance(p, TokenMatch):
        return {"token": p.text}
    if isinstance(p, slice):
        return {"slice": [p.start, p.stop, p.step]}
    return list(p)


def positions_repr(p: Positions) -> str:
    if isinstance(p, slice):
        parts = ["" if v is None else str(v) for v in (p.start, p.stop)]
        return f"[{parts[0]}:{parts[1]}" + (f":{p.step}" if p.step is not None else "") + "]"
    if isinstance(p, tuple):
        return str(list(p))
    return repr(p)


def _as_strength(x: Any, mode: str) -> float | None:
    if mode == "ablate":
        if x is not None:
            raise SteeringError(
                f"ablate takes no strength (got {x!r}): choose ablation='zero' or 'mean' instead"
            )
        return None
    if x is None:
        what = {"add": "how much to add", "scale": "the factor (0 ablates, 2 doubles, -1 flips)",
                "clamp": "the activation value to hold"}[mode]
        raise SteeringError(f"mode {mode!r} needs a strength: {what}")
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise SteeringError(f"strength must be a number, got a tensor of shape {tuple(x.shape)}")
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, (int, float)) and not hasattr(x, "__float__"):
        raise SteeringError(f"strength must be a real number, got {type(x).__name__} {x!r}")
    try:
        v = float(x)
    except OverflowError:  # a Python int beyond the float range
        raise SteeringError(f"strength {x!r} is beyond ±{MAX_STRENGTH:g}: pass a number such as 8.0") from None
    if not math.isfinite(v):
        raise SteeringError(f"strength {v!r} is not finite: pass a finite number such as 8.0 or -4.0")
    if abs(v) > MAX_STRENGTH:
        raise SteeringError(
            f"strength {v:g} is beyond ±{MAX_STRENGTH:g}: the model computes in float32, whose norms "
            f"overflow near 1e19, so the result would be numerically meaningless. Residual norms are "
            f"typically 10-1000 (see iw.analysis.steering.typical_norm); try strengths of that size"
        )
    return v


def target_kind(target: Any) -> str:
    """``"feature"`` (dictionary + index), ``"direction"`` (vector) or ``"site"``."""
    if isinstance(target, (str, Site)):
        return "site"
    if isinstance(target, Tensor):
        return "direction"
    if hasattr(target, "dictionary") and hasattr(target, "index"):
        # a Direction (or one vector of a DirectionSet) is a feature-like object, but it is
        # steered as a direction: unit vector, activation = projection
        if getattr(target.dictionary, "kind", None) == "directions":
            return "direction"
        return "feature"
    if hasattr(target, "direction"):
        return "direction"
    raise SteeringError(
        f"cannot steer with a {type(target).__name__}: pass a dictionary feature (sae[12]), a "
        f"Direction, a 1-D tensor with site=..., or a site name such as 'resid_post.12' to ablate"
    )


@dataclass(frozen=True, eq=False)
class Steer:
    """One intervention.

    ``target``: a dictionary ``Feature`` (``sae[12]``, a transcoder or neuron feature), a
    direction (a ``Direction`` or any object with ``.direction`` and ``.site``, or a 1-D tensor
    with ``site=``), or a site name (``"resid_post.3"``) for whole-site ablation.

    Modes (``a`` is the feature's activation; for a direction it is the projection ``x . u``
    onto the unit vector ``u``; ``d`` is the decoder row, or ``u``):

    - ``add``: ``x + strength * u`` (a direction, unit norm) or ``x + strength * d`` (a feature).
      ``units="relative"`` multiplies by the site's typical residual norm (see ``typical_norm``).
    - ``scale``: ``x + (strength - 1) * a * d`` (0 ablates, 2 doubles, -1 flips).
    - ``clamp``: ``x + (strength - a) * d``: the feature reads ``strength`` everywhere it is
      applied; the dictionary's error term is kept.
    - ``ablate``: ``ablation="zero"`` removes ``a * d`` (a site is set to 0); ``"mean"`` puts the
      mean activation (or the site's mean vector) instead, from ``mean=`` or ``mean_prompts=``
      (position 0 excluded; default: a few built-in prompts).

    ``positions``: ``"all"``, ``"prompt"``, ``"generated"`` (every token after the prompt; the
    first new token is predicted from the prompt, so it is unchanged), indices or a slice of
    prompt positions (negative counts from the prompt end), or ``{"token": "Paris"}``.

        >>> s = iw.Steer(sae[7], 20.0)                       # add 20 * decoder row 7
        >>> s = iw.Steer(d, 0.3, site="resid_post.12", units="relative")
        >>> s = iw.Steer("mlp_out.4", mode="ablate", ablation="mean")
    """

    target: Any
    strength: float | None = None
    _: KW_ONLY
    site: Site | None = None
    mode: str = "add"
    positions: Positions = "all"
    units: str = "absolute"
    ablation: str = "zero"
    mean: Any = None
    mean_prompts: tuple[str, ...] | None = None
    name: str = field(default="")

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise fields once, here
        if self.mode not in MODES:
            raise SteeringError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        set_(self, "strength", _as_strength(self.strength, self.mode))
        kind = target_kind(self.target)
        target = self.target
        if kind == "site":
            site = Site.parse(target)
            if self.site is not None and Site.parse(self.site) != site:
                raise SteeringError(f"site target {site} conflicts with site={self.site!r}")
            set_(self, "site", site)
            if self.mode != "ablate":
                raise SteeringError(
                    f"a whole site ({site}) can only be ablated (mode='ablate'); to add a vector "
                    f"there pass a 1-D tensor with site='{site}'"
                )
        else:
            if self.site is not None:
                set_(self, "site", Site.parse(self.site))
            if kind == "direction":
                vec = target if isinstance(target, Tensor) else target.direction
                if not isinstance(vec, Tensor):
                    raise SteeringError(f"direction must be a torch tensor, got {type(vec).__name__}")
                if vec.dim() != 1:
                    raise SteeringError(
                        f"a direction must be 1-D [d_model], got shape {tuple(vec.shape)}"
                    )
                if not bool(torch.isfinite(vec).all()):
                    raise SteeringError("the direction contains NaN or inf: recompute it")
                if float(vec.float().norm()) == 0.0:
                    raise SteeringError("the direction is all zeros: it cannot point anywhere")
                if isinstance(target, Tensor):
                    set_(self, "target", target.detach().to("cpu", torch.float32).clone())
                    if self.site is None:
                        raise SteeringError(
                            "a raw tensor has no site: pass site='resid_post.12' (where to steer)"
                        )
                elif self.site is None:
                    set_(self, "site", Site.parse(target.site))
            else:
                own = Site.parse(target.site)
                if self.site is None:
                    set_(self, "site", own)
                elif self.site != own and self.mode != "add":
                    raise SteeringError(
                        f"{self.mode} of feature {target!r} needs its own site {own}: the feature "
                        f"is only computed there (site={self.site} works for mode='add' only)"
                    )
        if self.units not in UNITS:
            raise SteeringError(f"unknown units {self.units!r}: choose 'absolute' or 'relative'")
        if self.units == "relative" and not (
            self.mode == "add" or (self.mode == "clamp" and kind == "direction")
        ):
            raise SteeringError(
                f"units='relative' applies to mode='add' (and clamp of a direction), not to "
                f"{self.mode} of a {kind}: its strength is already "
                + ("a factor" if self.mode == "scale" else "in activation units")
            )
        if self.ablation not in ABLATIONS:
            raise SteeringError(f"unknown ablation {self.ablation!r}: choose 'zero' or 'mean'")
        if self.mode != "ablate" and (self.ablation != "zero" or self.mean is not None
                                      or self.mean_prompts is not None):
            raise SteeringError("ablation=, mean= and mean_prompts= only apply to mode='ablate'")
        if self.mode == "ablate" and self.ablation == "zero" and (
            self.mean is not None or self.mean_prompts is not None
        ):
            raise SteeringError("mean= / mean_prompts= need ablation='mean'")
        if self.mean is not None:
            set_(self, "mean", _check_mean(self.mean, kind))
        if self.mean_prompts is not None:
            if isinstance(self.mean_prompts, str):
                set_(self, "mean_prompts", (self.mean_prompts,))
            mp = tuple(self.mean_prompts)
            if not mp or not all(isinstance(p, str) and p.strip() for p in mp):
                raise SteeringError("mean_prompts must be a non-empty list of non-empty strings")
            set_(self, "mean_prompts", mp)
        set_(self, "positions", normalize_positions(self.positions))
        if not isinstance(self.name, str):
            raise SteeringError(f"name must be a str, got {type(self.name).__name__}")

    # ------------------------------------------------------------------ views
    @property
    def kind(self) -> str:
        """``"feature"``, ``"direction"`` or ``"site"``."""
        return target_kind(self.target)

    @property
    def direction(self) -> Tensor | None:
        """The raw vector of a direction target (``None`` for features and sites)."""
        if self.kind != "direction":
            return None
        return self.target if isinstance(self.target, Tensor) else self.target.direction

    def target_label(self) -> str:
        """Short human name of the target: ``sae@resid_post.12#5 "Paris"``, ``direction``..."""
        if self.name:
            return self.name
        t = self.target
        if self.kind == "feature":
            dname = getattr(t.dictionary, "name", type(t.dictionary).__name__)
            label = getattr(t, "label", "")
            return f"{dname}#{t.index}" + (f" {label!r}" if label else "")
        if self.kind == "direction":
            if isinstance(t, Tensor):
                return f"direction[{t.shape[0]}]"
            nm, label = getattr(t, "name", None), getattr(t, "label", None)
            return (str(nm) if nm else "direction") + (f" {label!r}" if label else "")
        return str(self.site)

    def __repr__(self) -> str:
        parts = [f"{self.mode}"]
        if self.mode == "add":
            parts.append(f"{self.strength:+g}" + (" x typical norm" if self.units == "relative" else ""))
        elif self.mode == "scale":
            parts.append(f"x{self.strength:g}")
        elif self.mode == "clamp":
            parts.append(f"={self.strength:g}" + (" x typical norm" if self.units == "relative" else ""))
        else:
            parts.append(self.ablation)
        where = f"at {self.site}" if self.site is not None else ""
        return (f"Steer({' '.join(parts)} {self.target_label()} {where}, "
                f"positions={positions_repr(self.positions)})")

    def __add__(self, other: Steer | Steers) -> Steers:
        return Steers((self,)) + other

    def replace(self, **changes: Any) -> Steer:
        """A copy with some fields changed (``spec.replace(strength=16.0)``)."""
        kw = {k: getattr(self, k) for k in ("site", "mode", "positions", "units", "ablation",
                                            "mean", "mean_prompts", "name")}
        kw.update(changes)
        target = kw.pop("target", self.target)
        strength = kw.pop("strength", self.strength)
        if kw.get("mode", self.mode) == "ablate" and "strength" not in changes:
            strength = None
        if self.kind == "site" and "site" not in changes:
            kw["site"] = None  # re-derived from the target
        return Steer(target, strength, **kw)

    # ---------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; features are stored by dictionary name, path and index."""
        t = self.target
        kind = self.kind
        if kind == "feature":
            path = getattr(t.dictionary, "path", None)
            tj: dict[str, Any] = {
                "kind": "feature",
                "dictionary": getattr(t.dictionary, "name", None),
                "path": str(path) if path is not None else None,
                "index": int(t.index),
                "label": getattr(t, "label", "") or "",
            }
        elif kind == "direction":
            tj = {"kind": "direction", "values": [float(v) for v in self.direction.float().tolist()]}
            nm = getattr(t, "name", None) if not isinstance(t, Tensor) else None
            if nm:
                tj["name"] = str(nm)
        else:
            tj = {"kind": "site"}
        mean = self.mean
        if isinstance(mean, Tensor):
            mean = [float(v) for v in mean.tolist()]
        return {
            "target": tj,
            "strength": self.strength,
            "site": str(self.site) if self.site is not None else None,
            "mode": self.mode,
            "positions": positions_to_json(self.positions),
            "units": self.units,
            "ablation": self.ablation,
            "mean": mean,
            "mean_prompts": list(self.mean_prompts) if self.mean_prompts is not None else None,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, dictionaries: Mapping[str, Any] | None = None) -> Steer:
        """Rebuild a spec. Feature targets are found in ``dictionaries`` (name -> dictionary)
        or loaded from the stored folder path."""
        if not isinstance(data, Mapping) or "target" not in data:
            raise SteeringError("a steering spec JSON must be an object with a 'target' key")
        tj = data["target"]
        kind = tj.get("kind") if isinstance(tj, Mapping) else None
        if kind == "feature":
            d = _find_dictionary(tj, dictionaries)
            target: Any = d[int(tj["index"])]
        elif kind == "direction":
            target = torch.tensor(tj["values"], dtype=torch.float32)
        elif kind == "site":
            target = data.get("site")
        else:
            raise SteeringError(f"unknown target kind {kind!r} in spec JSON (feature, direction, site)")
        mean = data.get("mean")
        if isinstance(mean, list):
            mean = torch.tensor(mean, dtype=torch.float32)
        site = data.get("site") if kind != "site" else None
        return cls(target, data.get("strength"), site=site, mode=data.get("mode", "add"),
                   positions=data.get("positions", "all"), units=data.get("units", "absolute"),
                   ablation=data.get("ablation", "zero"), mean=mean,
                   mean_prompts=data.get("mean_prompts"),
                   name=data.get("name") or (tj.get("name", "") if kind == "direction" else ""))


def _check_mean(mean: Any, kind: str) -> Any:
    if kind == "site":
        if not isinstance(mean, Tensor) or mean.dim() != 1:
            raise SteeringError("mean= for a site ablation must be a 1-D tensor [d_model]")
        if not bool(torch.isfinite(mean).all()):
            raise SteeringError("mean= contains NaN or inf")
        return mean.detach().to("cpu", torch.float32).clone()
    if isinstance(mean, Tensor):
        if mean.numel() != 1:
            raise SteeringError(
                f"mean= for a {kind} is one number (its mean activation), got shape {tuple(mean.shape)}"
            )
        mean = mean.item()
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(float(mean)):
        raise SteeringError(f"mean= must be a finite number for a {kind}, got {mean!r}")
    return float(mean)


def _find_dictionary(tj: Mapping[str, Any], dictionaries: Mapping[str, Any] | None) -> Any:
    name = tj.get("dictionary")
    if dictionaries and name in dictionaries:
        return dictionaries[name]
    path = tj.get("path")
    if path and Path(path).is_dir():
        from ...dictionaries.base import load_ours

        return load_ours(path)
    raise SteeringError(
        f"the spec steers feature {tj.get('index')} of dictionary {name!r}, which is not loaded: "
        f"pass dictionaries={{{name!r}: your_dictionary}}"
        + (f" (its saved folder {path} does not exist)" if path else "")
    )


@dataclass(frozen=True)
class Steers:
    """Several specs applied together in one run (``spec_a + spec_b``)."""

    specs: tuple[Steer, ...]

    def __post_init__(self) -> None:
        specs = tuple(self.specs)
        for s in specs:
            if not isinstance(s, Steer):
                raise SteeringError(f"expected Steer specs, got {type(s).__name__} {s!r}")
        object.__setattr__(self, "specs", specs)

    @classmethod
    def of(cls, specs: Steer | Steers | Sequence[Steer]) -> Steers:
        """Normalise one spec, a ``Steers`` or a list of specs."""
        if isinstance(specs, Steers):
            return specs
        if isinstance(specs, Steer):
            return cls((specs,))
        if isinstance(specs, (list, tuple)):
            if not specs:
                raise SteeringError("no steering specs given: pass at least one iw.Steer(...)")
            return cls(tuple(specs))
        raise SteeringError(
            f"specs must be an iw.Steer, a list of them, or spec_a + spec_b; got {type(specs).__name__}"
        )

    def __add__(self, other: Steer | Steers) -> Steers:
        if isinstance(other, Steer):
            return Steers(self.specs + (other,))
        if isinstance(other, Steers):
            return Steers(self.specs + other.specs)
        return NotImplemented

    def __iter__(self) -> Iterator[Steer]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i: int) -> Steer:
        return self.specs[i]

    def __repr__(self) -> str:
        if len(self.specs) == 1:
            return repr(self.specs[0])
        inner = ",\n  ".join(repr(s) for s in self.specs)
        return f"Steers(\n  {inner}\n)"

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.specs]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]], *,
                  dictionaries: Mapping[str, Any] | None = None) -> Steers:
        return cls(tuple(Steer.from_json(d, dictionaries=dictionaries) for d in data))
