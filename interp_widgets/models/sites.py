"""Named hook sites (``"resid_post.12"``) and how each model family exposes them.

A site is a ``(name, layer)`` pair. :class:`SiteMap` turns a site into an *accessor*: the
nnsight Envoy to touch and how to read / write the tensor there. Analysis code only ever says
``model.read(site)`` / ``model.write(site, value)`` inside a trace and never spells module paths.

    >>> Site.parse("resid_post.12")
    Site(name='resid_post', layer=12)
    >>> str(Site("mlp_in", 3))
    'mlp_in.3'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import SiteError

#: Per-layer sites in the order the forward pass reaches them (nnsight wants that order).
LAYER_SITES: tuple[str, ...] = (
    "resid_pre",
    "attn_out",
    "resid_mid",
    "mlp_in",
    "mlp_out",
    "resid_post",
)
#: Sites without a layer.
GLOBAL_SITES: tuple[str, ...] = ("embed", "logits")

_SITE_RE = re.compile(r"^\s*([a-z_]+)\s*(?:\.\s*(-?\d+))?\s*$")


@dataclass(frozen=True, order=True)
class Site:
    """A hook point: ``Site("resid_post", 12)`` is the residual stream after layer 12."""

    name: str
    layer: int | None = None

    @classmethod
    def parse(cls, spec: str | Site | tuple[str, int]) -> Site:
        """Parse ``"resid_post.12"``, ``("resid_post", 12)`` or a ``Site`` (returned as is)."""
        if isinstance(spec, Site):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            name, layer = spec
            if not isinstance(name, str) or not isinstance(layer, int) or isinstance(layer, bool):
                raise SiteError(f"site tuple {spec!r} must be (name: str, layer: int)")
            return cls(name, layer)
        if not isinstance(spec, str):
            raise SiteError(
                f"a site must be a string like 'resid_post.12' or Site('resid_post', 12); "
                f"got {type(spec).__name__} {spec!r}"
            )
        m = _SITE_RE.match(spec)
        if not m:
            raise SiteError(
                f"cannot parse site {spec!r}: write '<name>.<layer>' such as 'resid_post.12', "
                f"or 'embed' / 'logits'"
            )
        layer_text = m.group(2)
        return cls(m.group(1), int(layer_text) if layer_text is not None else None)

    def __str__(self) -> str:
        return self.name if self.layer is None else f"{self.name}.{self.layer}"

    @property
    def order_key(self) -> tuple[int, int]:
        """Position of this site in the forward pass (for nnsight's in-order access)."""
        if self.name == "embed":
            return (-1, 0)
        if self.name == "logits":
            return (1 << 30, 0)
        return (int(self.layer or 0), LAYER_SITES.index(self.name))


@dataclass(frozen=True)
class Accessor:
    """Where a site lives: module path (``{L}`` = layer) and how to get the tensor.

    kind: ``"output"`` (module output, first element if it is a tuple) or ``"input"``
    (first positional input).
    """

    path: str
    kind: str


@dataclass(frozen=True)
class FamilySpec:
    """Module layout of one architecture family."""

    family: str
    layers: str  # path to the ModuleList of blocks
    embed: str
    final_norm: str
    unembed: str
    accessors: dict[str, Accessor]
    mlp: str  # path of the MLP module inside a block, relative to the block
    parallel_residual: bool = False


def _llama_like(family: str) -> FamilySpec:
    b = "model.layers.{L}"
    return FamilySpec(
        family=family,
        layers="model.layers",
        embed="model.embed_tokens",
        final_norm="model.norm",
        unembed="lm_head",
        mlp="mlp",
        accessors={
            "resid_pre": Accessor(b, "input"),
            "attn_out": Accessor(b + ".self_attn", "output"),
            "resid_mid": Accessor(b + ".post_attention_layernorm", "input"),
            "mlp_in": Accessor(b + ".mlp", "input"),
            "mlp_out": Accessor(b + ".mlp", "output"),
            "resid_post": Accessor(b, "output"),
        },
    )


def _gemma2() -> FamilySpec:
    b = "model.layers.{L}"
    spec = _llama_like("gemma2")
    acc = dict(spec.accessors)
    # Gemma-2 normalises the attention and MLP outputs before adding them to the residual.
    acc["attn_out"] = Accessor(b + ".post_attention_layernorm", "output")
    acc["resid_mid"] = Accessor(b + ".pre_feedforward_layernorm", "input")
    acc["mlp_out"] = Accessor(b + ".post_feedforward_layernorm", "output")
    return FamilySpec(**{**spec.__dict__, "accessors": acc})


def _gpt2() -> FamilySpec:
    b = "transformer.h.{L}"
    return FamilySpec(
        family="gpt2",
        layers="transformer.h",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        mlp="mlp",
        accessors={
            "resid_pre": Accessor(b, "input"),
            "attn_out": Accessor(b + ".attn", "output"),
            "resid_mid": Accessor(b + ".ln_2", "input"),
            "mlp_in": Accessor(b + ".mlp", "input"),
            "mlp_out": Accessor(b + ".mlp", "output"),
            "resid_post": Accessor(b, "output"),
        },
    )


def _neox(parallel: bool) -> FamilySpec:
    b = "gpt_neox.layers.{L}"
    acc = {
        "resid_pre": Accessor(b, "input"),
        "attn_out": Accessor(b + ".attention", "output"),
        "mlp_in": Accessor(b + ".mlp", "input"),
        "mlp_out": Accessor(b + ".mlp", "output"),
        "resid_post": Accessor(b, "output"),
    }
    if not parallel:
        acc["resid_mid"] = Accessor(b + ".post_attention_layernorm", "input")
    return FamilySpec(
        family="gpt_neox",
        layers="gpt_neox.layers",
        embed="gpt_neox.embed_in",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head",  # "embed_out" before transformers 5
        mlp="mlp",
        accessors=acc,
        parallel_residual=parallel,
    )


_FAMILIES = {
    "llama": lambda cfg: _llama_like("llama"),
    "qwen2": lambda cfg: _llama_like("qwen2"),
    "qwen3": lambda cfg: _llama_like("qwen3"),
    "mistral": lambda cfg: _llama_like("mistral"),
    "gemma": lambda cfg: _llama_like("gemma"),
    "gemma2": lambda cfg: _gemma2(),
    "gpt2": lambda cfg: _gpt2(),
    "gpt_neox": lambda cfg: _neox(bool(getattr(cfg, "use_parallel_residual", True))),
}

SUPPORTED_FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def family_spec(config: Any) -> FamilySpec:
    """The module layout for a transformers config (by its ``model_type``)."""
    model_type = getattr(config, "model_type", None)
    if model_type not in _FAMILIES:
        from ..errors import ModelLoadError

        raise ModelLoadError(
            f"model_type {model_type!r} has no site map yet; supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)}. Open an issue or add a FamilySpec in "
            f"interp_widgets/models/sites.py"
        )
    return _FAMILIES[model_type](config)


def valid_site_names(spec: FamilySpec) -> list[str]:
    return [s for s in LAYER_SITES if s in spec.accessors] + list(GLOBAL_SITES)


def check_site(site: str | Site | tuple[str, int], spec: FamilySpec, n_layers: int, model_name: str) -> Site:
    """Parse and validate a site for a model, raising :class:`SiteError` that lists valid ones."""
    s = Site.parse(site)
    names = valid_site_names(spec)
    if s.name in GLOBAL_SITES:
        if s.layer is not None:
            raise SiteError(f"site {str(s)!r}: '{s.name}' takes no layer; write '{s.name}'")
        return s
    if s.name not in spec.accessors:
        hint = ""
        if s.name == "resid_mid" and spec.parallel_residual:
            hint = " (this model computes attention and MLP in parallel, so it has no resid_mid)"
        raise SiteError(
            f"unknown site name {s.name!r}{hint} for {model_name}; valid sites: "
            f"{', '.join(n + ('.<layer>' if n not in GLOBAL_SITES else '') for n in names)}"
        )
    if s.layer is None:
        raise SiteError(
            f"site {s.name!r} needs a layer: write '{s.name}.<layer>' with layer in 0-{n_layers - 1}"
        )
    layer = s.layer
    if layer < 0:
        layer += n_layers
    if not 0 <= layer < n_layers:
        raise SiteError(
            f"layer {s.layer} does not exist: {model_name} has layers 0-{n_layers - 1} "
            f"(site {str(s)!r})"
        )
    return Site(s.name, layer)
