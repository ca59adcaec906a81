"""The MLP's own neurons as an exact dictionary: no training, available for every model.

A :class:`NeuronBasis` behaves as a transcoder for one layer: it reads ``mlp_in.L``, writes
``mlp_out.L``, its features are the MLP's hidden units and ``W_dec`` holds the down-projection
rows. ``reconstruct(x)`` *is* the MLP, so error nodes are zero.

    >>> tset = iw.neuron_basis(model)               # TranscoderSet, one NeuronBasis per layer
    >>> nb = tset[3]; f = nb.encode(mlp_in)         # [batch, pos, d_mlp] neuron activations
    >>> torch.allclose(nb.reconstruct(mlp_in), mlp_out)

How activations depend on the input (what attribution needs):

- gated MLPs (llama, qwen2/3, mistral, gemma, gemma2): ``encode(x) = act(gate(x)) * up(x)``.
  With the gate frozen at its value on the current input, ``f = gate_values(x0) * pre_acts(x)``
  is linear in ``x`` (``frozen_encode(x, gate)``); ``W_enc`` / ``b_enc`` are the up-projection.
- ungated MLPs (gpt2, gpt_neox): ``encode(x) = act(pre_acts(x))`` with
  ``pre_acts(x) = x @ W_enc + b_enc``, exactly like a transcoder's pre-activations.

``decode(f) = f @ W_dec + b_dec``. Gemma-2 normalises the MLP output
(``post_feedforward_layernorm``) before adding it to the residual and our ``mlp_out`` site is
*after* that norm, so for Gemma-2 ``decode`` applies the model's own norm to ``f @ W_dec``:
exact, but not linear in ``f``. ``W_dec`` rows are then in the pre-norm space;
``out_norm_scale(f)`` gives the per-token factor that the norm multiplies them by (freeze it
for linear attribution).

Weights are *views* of the model's parameters (no copies): editing the model edits the basis.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ..errors import DictionaryError, SiteError
from ..models.sites import Site
from .base import Dictionary, TranscoderSet

GATED_FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2")
UNGATED_FAMILIES = ("gpt2", "gpt_neox")


class NeuronBasis(Dictionary):
    """One layer's MLP neurons as an exact transcoder (``mlp_in.L -> mlp_out.L``).

    Same attributes as :class:`~interp_widgets.dictionaries.base.Transcoder`: ``site``,
    ``out_site``, ``layer``, ``d_in``, ``d_out``, ``n_features`` (MLP width), ``W_enc``
    ``[d_in, n]``, ``b_enc``, ``W_dec`` ``[n, d_out]``, ``b_dec``, ``W_skip`` (None),
    ``threshold`` (None), ``encode`` / ``decode`` / ``reconstruct`` / ``skip``; plus ``gated``,
    ``gate_values(x)`` and ``frozen_encode(x, gate)`` for gated MLPs.

        >>> nb = NeuronBasis(model, layer=3)
        >>> nb[17].direction              # what neuron 17 writes into mlp_out.3
        >>> nb.encode(x).shape            # [..., d_mlp]
    """

    kind = "neuron_basis"
    architecture = "neurons"
    k = None
    threshold = None
    W_skip = None
    apply_b_dec_to_input = False
    rescale_acts_by_decoder_norm = False
    scaling_factor = None

    def __init__(self, model: Any, layer: int, *, name: str | None = None):
        family = getattr(model, "family", None)
        if family not in GATED_FAMILIES + UNGATED_FAMILIES:
            raise DictionaryError(
                f"no neuron basis for model family {family!r}: supported families are "
                f"{', '.join(GATED_FAMILIES + UNGATED_FAMILIES)}"
            )
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise SiteError(f"layer must be an int, got {type(layer).__name__} {layer!r}")
        site = model.site(Site("mlp_in", layer))  # validates the layer, normalises negatives
        layer = int(site.layer)
        block = model._module(f"{model.spec.layers}.{layer}")
        mlp = getattr(block, model.spec.mlp)
        gated = family in GATED_FAMILIES
        if gated:
            up, down = mlp.up_proj, mlp.down_proj
            n, d_in, d_out = up.out_features, up.in_features, down.out_features
        elif family == "gpt2":
            up, down = mlp.c_fc, mlp.c_proj  # Conv1D: weight is [in, out], y = x @ W + b
            d_in, n = up.weight.shape
            d_out = down.weight.shape[1]
        else:  # gpt_neox
            up, down = mlp.dense_h_to_4h, mlp.dense_4h_to_h
            n, d_in, d_out = up.out_features, up.in_features, down.out_features
        super().__init__(site=site, out_site=Site("mlp_out", layer), d_in=d_in, d_out=d_out,
                         n_features=n, metadata={"model": model.name, "family": family,
                                                 "layer": layer},
                         name=name or f"neurons.{layer}")
        self.gated = gated
        # Plain attribute slots (not submodules): the basis must never own, move or save the
        # model's weights, and .to() on it must not touch the model.
        object.__setattr__(self, "_mlp", mlp)
        object.__setattr__(self, "_up", up)
        object.__setattr__(self, "_down", down)
        object.__setattr__(self, "_family", family)
        post = getattr(block, "post_feedforward_layernorm", None) if family == "gemma2" else None
        object.__setattr__(self, "_out_norm", post)

    # ------------------------------------------------------------------ weights (views)
    @property
    def layer(self) -> int:
        return int(self.site.layer or 0)

    @property
    def W_enc(self) -> Tensor:
        """``[d_in, n]``: the up-projection (gated) or the input projection (ungated)."""
        w = self._up.weight
        return w if self._family == "gpt2" else w.T

    @property
    def b_enc(self) -> Tensor:
        b = getattr(self._up, "bias", None)
        return b if b is not None else self._up.weight.new_zeros(self.n_features)

    @property
    def W_gate(self) -> Tensor | None:
        """``[d_in, n]`` gate projection of a gated MLP (None for gpt2 / neox)."""
        return self._mlp.gate_proj.weight.T if self.gated else None

    @property
    def W_dec(self) -> Tensor:
        """``[n, d_out]``: row ``i`` is what neuron ``i`` writes at activation 1.0."""
        w = self._down.weight
        return w if self._family == "gpt2" else w.T

    @property
    def b_dec(self) -> Tensor:
        b = getattr(self._down, "bias", None)
        return b if b is not None else self._down.weight.new_zeros(self.d_out)

    @property
    def out_norm(self) -> Any:
        """Gemma-2's post-feedforward norm module applied in ``decode`` (None elsewhere)."""
        return self._out_norm

    # ------------------------------------------------------------------ math
    def _act(self, h: Tensor) -> Tensor:
        return self._mlp.act_fn(h) if self.gated else self._mlp.act(h)

    def _cast(self, x: Tensor) -> Tensor:
        self._check_input(x)
        w = self._up.weight
        return x.to(device=w.device, dtype=w.dtype)

    def pre_acts(self, x: Tensor) -> Tensor:
        """The part linear in ``x``: ``up(x)`` (gated) or ``x @ W_in + b`` (ungated)."""
        return self._up(self._cast(x))

    def gate_values(self, x: Tensor) -> Tensor:
        """``act(gate_proj(x))`` of a gated MLP: the factor to freeze for attribution."""
        if not self.gated:
            raise DictionaryError(
                f"{self.name}: {self._family} MLPs have no gate; activations are "
                f"act(pre_acts(x)) (use pre_acts / activate)"
            )
        return self._mlp.act_fn(self._mlp.gate_proj(self._cast(x)))

    def frozen_encode(self, x: Tensor, gate: Tensor) -> Tensor:
        """``gate * up(x)``: the activations with the gate frozen (linear in ``x``)."""
        return gate * self.pre_acts(x)

    def activate(self, pre: Tensor) -> Tensor:
        """The nonlinearity of an ungated MLP (gated ones need the input: use ``encode``)."""
        if self.gated:
            raise DictionaryError(
                f"{self.name}: a gated MLP's activation depends on the gate, not only on "
                f"pre_acts; use encode(x), or frozen_encode(x, gate_values(x0))"
            )
        return self._act(pre)

    def encode(self, x: Tensor) -> Tensor:
        """Neuron activations ``[..., n]`` (the MLP's hidden layer)."""
        x = self._cast(x)
        if self.gated:
            return self._mlp.act_fn(self._mlp.gate_proj(x)) * self._up(x)
        return self._act(self._up(x))

    def decode(self, f: Tensor) -> Tensor:
        """``f @ W_dec + b_dec`` (Gemma-2: then the model's post-feedforward norm)."""
        if f.shape[-1] != self.n_features:
            raise DictionaryError(
                f"{self.name} decodes {self.n_features} neurons, got shape {tuple(f.shape)}"
            )
        w = self._down.weight
        out = self._down(f.to(device=w.device, dtype=w.dtype))
        if self._out_norm is not None:
            out = self._out_norm(out)
        return out

    def out_norm_scale(self, f: Tensor) -> Tensor:
        """Gemma-2 only: per-token factor ``[..., 1]`` the output norm applies (1 elsewhere).

        ``decode(f) == out_norm_weight * (f @ W_dec) * out_norm_scale(f)``; freeze it to make
        decode linear.
        """
        if self._out_norm is None:
            return torch.ones(*f.shape[:-1], 1, dtype=f.dtype, device=f.device)
        z = self._down(f.to(self._down.weight.dtype)).float()
        return torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + self._out_norm.eps)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Exactly the MLP's output (``mlp_out``) for input ``x`` (``mlp_in``)."""
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)

    def skip(self, x: Tensor) -> Tensor:
        """No skip connection: zeros ``[..., d_out]``."""
        return torch.zeros(*x.shape[:-1], self.d_out, dtype=x.dtype, device=x.device)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {**super().config(), "architecture": self.architecture, "gated": self.gated}

    def save(self, folder: Any, *, dtype: Any = None) -> Any:  # noqa: ARG002
        raise DictionaryError(
            f"{self.name} is a view of the model's own MLP weights, not stored weights: "
            f"rebuild it with iw.neuron_basis(model) (labels can be kept with "
            f".save_labels(path))"
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {'gated' if self.gated else 'ungated'} {self._family} MLP"


def neuron_basis(model: Any, layers: int | Iterable[int] | None = None) -> TranscoderSet:
    """The MLP neurons of ``layers`` (default: all) as a TranscoderSet of exact NeuronBases.

        >>> tset = iw.neuron_basis(model)            # every layer
        >>> tset = iw.neuron_basis(model, [2, 3])     # some layers; tset[3] is a NeuronBasis
        >>> tset[3].reconstruct(mlp_in_3)             # == mlp_out.3
    """
    if layers is None:
        wanted = list(range(model.n_layers))
    elif isinstance(layers, int) and not isinstance(layers, bool):
        wanted = [layers]
    else:
        wanted = list(layers)
        if not wanted:
            raise DictionaryError(
                f"layers is empty: pass None for all layers (0-{model.n_layers - 1}) or a list"
            )
    bases = {}
    for layer in wanted:
        nb = NeuronBasis(model, layer)
        bases[nb.layer] = nb
    return TranscoderSet(bases, name=f"neurons@{model.name}",
                         metadata={"model": model.name, "kind": "neuron_basis"})


__all__ = ["NeuronBasis", "neuron_basis", "GATED_FAMILIES", "UNGATED_FAMILIES"]
