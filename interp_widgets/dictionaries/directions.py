"""Directions: user vectors at a site, and quick concept directions by difference of means.

A :class:`Direction` is usable wherever a :class:`~interp_widgets.dictionaries.base.Feature`
is (steering, logit effects, activations): it has ``direction``, ``site``, ``label``, ``name``
and, like a feature, a ``dictionary`` (a one-vector :class:`DirectionSet`) and ``index`` 0.

    >>> d = iw.directions.from_contrast(model, ["Paris is lovely", "I flew to France"],
    ...                                 ["Tokyo is lovely", "I flew to Japan"], "resid_post.12")
    >>> d.norm_before_normalizing, d.site          # unit vector; the raw difference's norm kept
    >>> iw.logit_effects(d, model)                  # what it promotes through the unembedding

The mean leaves attention sinks out (position 0, and outlier-norm tokens: see
:func:`~interp_widgets.dictionaries.base.mark_sinks`): on SmolLM2 position 0's residual norm is
~24,000 against ~150 elsewhere, so including it would give a useless direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DictionaryError, PromptError
from ..files import atomic_save_safetensors, load_safetensors
from ..models.sites import Site
from .base import DEFAULT_SINK_RATIO, Dictionary, mark_sinks


@dataclass(frozen=True, eq=False)
class Direction:
    """A vector in the model's space at a site, with a label: a feature you wrote yourself.

        >>> d = Direction(torch.randn(576), "resid_post.12", label="my concept")
        >>> d.unit.norm()        # 1.0
        >>> acts = iw.feature_activations(model, d, prompts)   # projections on it
    """

    vector: Tensor
    site: Site
    label: str = ""
    name: str = "direction"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = self.vector
        if not isinstance(v, Tensor):
            try:
                v = torch.as_tensor(v, dtype=torch.float32)
            except (TypeError, ValueError) as e:
                raise DictionaryError(f"a direction must be a 1-D vector, got {type(self.vector).__name__}") from e
        if v.dim() != 1 or v.numel() == 0:
            raise DictionaryError(f"a direction must be a 1-D vector, got shape {tuple(v.shape)}")
        if not bool(torch.isfinite(v).all()):
            raise DictionaryError("the direction has NaN or inf entries")
        if float(v.norm()) == 0.0:
            raise DictionaryError("the direction is the zero vector")
        object.__setattr__(self, "vector", v.detach().float().cpu().clone())
        object.__setattr__(self, "site", Site.parse(self.site))
        object.__setattr__(self, "metadata", dict(self.metadata))
        object.__setattr__(self, "_set", None)

    # feature-like interface
    @property
    def direction(self) -> Tensor:
        """The vector itself (unit norm when made by ``from_contrast(normalize=True)``)."""
        return self.vector

    @property
    def unit(self) -> Tensor:
        return self.vector / self.vector.norm()

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    @property
    def norm_before_normalizing(self) -> float:
        """For ``from_contrast``: the raw difference of means' norm (its natural scale)."""
        return float(self.metadata.get("raw_norm", self.norm))

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[0])

    @property
    def index(self) -> int:
        return 0

    @property
    def dictionary(self) -> DirectionSet:
        """A one-vector :class:`DirectionSet` (the same object every time)."""
        if self._set is None:  # type: ignore[attr-defined]
            object.__setattr__(self, "_set", DirectionSet([self], name=self.name))
        return self._set  # type: ignore[attr-defined]

    def as_dictionary(self) -> DirectionSet:
        return self.dictionary

    def check_model(self, model: Any) -> None:
        """Raise if the vector's size or the site does not fit ``model``."""
        model.site(self.site)
        if self.d_model != model.d_model:
            raise DictionaryError(
                f"direction {self.name!r} has {self.d_model} dimensions but {model.name} has "
                f"d_model={model.d_model}"
            )

    def normalized(self) -> Direction:
        return Direction(self.unit, self.site, self.label, self.name,
                         {**self.metadata, "raw_norm": self.norm_before_normalizing})

    # persistence (safetensors + metadata)
    def save(self, path: str | Path) -> Path:
        """Save as one ``.safetensors`` file (vector + site, label, name, metadata)."""
        import json

        p = Path(path)
        if p.suffix != ".safetensors":
            p = p.with_suffix(".safetensors")
        meta = {"site": str(self.site), "label": self.label, "name": self.name,
                "metadata": json.dumps(self.metadata, default=str)}
        return atomic_save_safetensors(p, {"vector": self.vector}, metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> Direction:
        import json

        from safetensors import safe_open

        p = Path(path)
        tensors = load_safetensors(p)  # refuses pickle, reports truncation
        if "vector" not in tensors:
            raise DictionaryError(f"{p} holds no 'vector' tensor: not a saved Direction")
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        if "site" not in meta:
            raise DictionaryError(f"{p} has no site in its metadata: not a saved Direction")
        return cls(tensors["vector"], meta["site"], meta.get("label", ""),
                   meta.get("name", p.stem), json.loads(meta.get("metadata") or "{}"))

    def __repr__(self) -> str:
        lab = f", label={self.label!r}" if self.label else ""
        return f"Direction({self.name!r} at {self.site}, d={self.d_model}, norm={self.norm:.3g}{lab})"


class DirectionSet(Dictionary):
    """Several directions at one site as a (dense, non-sparse) dictionary.

    ``encode(x) = x @ W_dec.T / |W_dec|^2``: how many units of each direction ``x`` holds
    (its signed projection, for unit vectors); ``decode(f) = f @ W_dec``. ``W_dec`` rows are the
    vectors as given. No training, no sparsity: the point is to read directions out.

        >>> ds = DirectionSet([d_france, d_paris])
        >>> ds.encode(resid)          # [..., 2]
        >>> ds[1]                     # Feature(ds, 1), direction == d_paris.vector
    """

    kind = "directions"

    def __init__(self, directions: Sequence[Direction], *, name: str | None = None):
        dirs = list(directions)
        if not dirs:
            raise DictionaryError("a DirectionSet needs at least one Direction")
        for d in dirs:
            if not isinstance(d, Direction):
                raise DictionaryError(f"DirectionSet takes Directions, got {type(d).__name__}")
        sites = {d.site for d in dirs}
        dims = {d.d_model for d in dirs}
        if len(sites) != 1 or len(dims) != 1:
            raise DictionaryError(
                f"all directions of a set must share one site and size; got sites "
                f"{sorted(map(str, sites))} and sizes {sorted(dims)}"
            )
        site, dim = sites.pop(), dims.pop()
        super().__init__(site=site, out_site=None, d_in=dim, d_out=dim, n_features=len(dirs),
                         labels={i: d.label for i, d in enumerate(dirs) if d.label},
                         metadata={"kind": "directions", **dict(dirs[0].metadata)},
                         name=name or (dirs[0].name if len(dirs) == 1 else f"directions@{site}"))
        self._W_dec = nn.Parameter(torch.stack([d.vector for d in dirs]), requires_grad=False)
        self.directions = tuple(dirs)

    @property
    def W_dec(self) -> Tensor:
        return self._W_dec

    @property
    def b_dec(self) -> Tensor:
        return torch.zeros(self.d_out, dtype=self._W_dec.dtype, device=self._W_dec.device)

    def encode(self, x: Tensor) -> Tensor:
        self._check_input(x)
        W = self._W_dec
        return (x.to(W.dtype) @ W.T) / W.pow(2).sum(-1)

    def decode(self, f: Tensor) -> Tensor:
        if f.shape[-1] != self.n_features:
            raise DictionaryError(f"{self.name} decodes {self.n_features} directions, got {tuple(f.shape)}")
        return f.to(self._W_dec.dtype) @ self._W_dec

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)

    def check_model(self, model: Any, *, check_name: bool = True) -> None:
        # directions carry no model name of their own unless from_contrast recorded one
        super().check_model(model, check_name=check_name)


def _read_site(model: Any, prompts: list[str], site: Site, batch_size: int) -> list[Tensor]:
    """``[n_tokens, d_model]`` activations of each prompt at ``site`` (one trace per batch)."""
    toks = model.tokenize(prompts)
    out: list[Tensor] = []
    for i in range(0, len(prompts), batch_size):
        sl = slice(i, i + batch_size)
        width = max(toks.lengths[sl])
        ids, mask = toks.input_ids[sl, :width], toks.attention_mask[sl, :width]
        with torch.no_grad():
            with model.trace({"input_ids": ids, "attention_mask": mask}) as tracer:
                saved = model.read(site).save()
                tracer.stop()
        x = getattr(saved, "value", saved).detach().float().cpu()
        out += [x[j, :n] for j, n in enumerate(toks.lengths[sl])]
    return out


def _pooled(model: Any, prompts: list[str], site: Site, positions: str, batch_size: int,
            sink_ratio: float) -> tuple[Tensor, int]:
    per_prompt = _read_site(model, prompts, site, batch_size)
    picked = []
    for x in per_prompt:
        if positions == "last":
            picked.append(x[-1:])
        else:
            keep = ~torch.tensor(mark_sinks(x.norm(dim=-1), sink_ratio))
            picked.append(x[keep])
    allx = torch.cat(picked)
    if allx.shape[0] == 0:
        raise PromptError(
            "every token of these prompts is an attention sink (position 0): use prompts of at "
            "least two tokens, or positions='last'"
        )
    return allx.double().mean(0), int(allx.shape[0])


def from_contrast(model: Any, positive_prompts: str | Sequence[str], negative_prompts: str | Sequence[str],
                  site: str | Site, *, positions: str = "all", normalize: bool = True,
                  label: str | None = None, name: str | None = None, batch_size: int = 8,
                  sink_ratio: float = DEFAULT_SINK_RATIO) -> Direction:
    """A concept direction: mean activation on ``positive_prompts`` minus on ``negative_prompts``.

    ``positions="all"`` averages every non-sink token (pooled over prompts); ``"last"`` uses
    each prompt's last token. With ``normalize`` (default) the result has unit norm and the raw
    difference's norm is kept as ``norm_before_normalizing``.

        >>> paris = from_contrast(model, ["I love Paris", "France is"], ["I love Tokyo", "Japan is"],
        ...                       "resid_post.12", label="France vs Japan")
        >>> iw.steer(model, iw.Steer(paris, 48)).generate("My favourite city is")
    """
    pos = model.check_prompts(positive_prompts)
    neg = model.check_prompts(negative_prompts)
    s = model.site(site)
    if positions not in ("all", "last"):
        raise PromptError(f"positions must be 'all' or 'last', got {positions!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PromptError(f"batch_size must be a positive int, got {batch_size!r}")
    mp, n_pos = _pooled(model, pos, s, positions, batch_size, sink_ratio)
    mn, n_neg = _pooled(model, neg, s, positions, batch_size, sink_ratio)
    diff = (mp - mn).float()
    raw = float(diff.norm())
    if raw == 0.0:
        raise PromptError("the two prompt sets give identical means: the direction would be zero")
    vec = diff / raw if normalize else diff
    meta = {"method": "difference of means", "model": model.name, "positions": positions,
            "n_positive_tokens": n_pos, "n_negative_tokens": n_neg, "raw_norm": raw,
            "mean_positive_norm": float(mp.norm()), "mean_negative_norm": float(mn.norm()),
            "sinks_excluded": positions == "all"}
    default_label = f"{_short(pos[0])} vs {_short(neg[0])}"
    return Direction(vec, s, label if label is not None else default_label,
                     name or f"contrast@{s}", meta)


def _short(text: str, n: int = 24) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"


def direction(vector: Any, site: str | Site, *, label: str = "", name: str = "direction",
              normalize: bool = False) -> Direction:
    """A Direction from any vector (tensor, numpy array, list), optionally unit-normalised.

        >>> d = iw.directions.direction(sae.W_dec[5] + sae.W_dec[9], "resid_post.12", label="5+9")
    """
    d = Direction(vector, site, label, name)
    return d.normalized() if normalize else d


__all__ = ["Direction", "DirectionSet", "from_contrast", "direction"]
