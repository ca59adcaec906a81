"""Each layer's MLP in the local replacement model: frozen feature activations, their decoder
rows, an optional linear skip, and the error node that makes the replacement exact.

A :class:`LayerReplacement` adapts one dictionary (a :class:`~interp_widgets.dictionaries.Transcoder`
of any architecture, or a :class:`~interp_widgets.dictionaries.NeuronBasis`) to what attribution
needs: activations, write vectors, and for a *target* feature the linear function of ``mlp_in``
whose value we attribute (the encoder pre-activation; for a gated neuron, the activation with the
gate frozen).

    >>> reps = replacements(model, iw.neuron_basis(model))   # list, one entry per layer
    >>> reps[3].activations(mlp_in_3)                         # [pos, n_features]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ...errors import DictionaryError, GraphError
from ...models.sites import Site


class LayerReplacement:
    """One layer's dictionary seen as part of the local replacement model (all math in float32)."""

    def __init__(self, dictionary: Any, layer: int):
        self.dictionary = dictionary
        self.layer = layer
        self.n_features = int(dictionary.n_features)
        self.is_neurons = getattr(dictionary, "kind", "") == "neuron_basis"
        self.gated = bool(getattr(dictionary, "gated", False)) and self.is_neurons
        self.name = str(getattr(dictionary, "name", f"layer{layer}"))
        with torch.no_grad():
            W_dec = dictionary.W_dec.detach().float()
            if getattr(dictionary, "rescale_acts_by_decoder_norm", False):
                W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
            sf = getattr(dictionary, "scaling_factor", None)
            if sf is not None:
                W_dec = W_dec / sf
            # what one unit of activation writes into mlp_out (the decoder row, as decode applies it)
            self.decoder = W_dec.contiguous()
            self.output_bias = dictionary.decode(
                torch.zeros(1, self.n_features, dtype=dictionary.W_dec.dtype)
            ).detach().float()[0]
            W_skip = getattr(dictionary, "W_skip", None)
            self.skip = W_skip.detach().float() if W_skip is not None else None
            # target value = x @ enc + const (x = mlp_in); for gated neurons times the frozen gate
            enc = dictionary.W_enc.detach().float()
            self.enc = enc * sf if sf is not None else enc
            zero_in = torch.zeros(1, dictionary.d_in, dtype=dictionary.W_enc.dtype)
            self.enc_const = dictionary.pre_acts(zero_in).detach().float()[0]

    def activations(self, mlp_in: Tensor) -> Tensor:
        """Frozen feature activations ``[pos, n_features]`` at the real MLP input."""
        with torch.no_grad():
            return self.dictionary.encode(mlp_in).detach().float()

    def reconstruction(self, acts: Tensor, mlp_in: Tensor) -> Tensor:
        """What the replacement writes into ``mlp_out`` (decoder + bias + skip), ``[pos, d]``."""
        p, f = torch.nonzero(acts, as_tuple=True)
        if len(f) * 4 < acts.numel():  # sparse codes (TopK, ReLU): add only the active rows
            out = self.output_bias.expand(acts.shape[0], -1).clone()
            out.index_add_(0, p, acts[p, f, None] * self.decoder[f])
        else:
            out = acts @ self.decoder + self.output_bias
        if self.skip is not None:
            out = out + mlp_in @ self.skip
        return out

    def _gate(self, mlp_in: Tensor, pos: Tensor, feat: Tensor) -> Tensor:
        # the gate is frozen at the real input: compute it once per prompt
        cached = getattr(self, "_gate_cache", None)
        if cached is None or cached[0] is not mlp_in:
            with torch.no_grad():
                cached = (mlp_in, self.dictionary.gate_values(mlp_in).detach().float())
            self._gate_cache = cached
        return cached[1][pos, feat]

    def target_vectors(self, mlp_in: Tensor, pos: Tensor, feat: Tensor) -> tuple[Tensor, Tensor]:
        """For target features at ``(pos, feat)``: ``(enc [k, d], const [k])`` with
        ``value = mlp_in[pos] @ enc + const`` (affine in the MLP input in the frozen model)."""
        enc = self.enc[:, feat].T.contiguous()
        const = self.enc_const[feat].clone()
        if self.gated:
            gate = self._gate(mlp_in, pos, feat)
            enc = enc * gate[:, None]
            const = const * gate
        return enc, const

    def slopes(self, mlp_in: Tensor, pos: Tensor, feat: Tensor) -> Tensor:
        """``d activation / d target value`` at the frozen point (what an edge change does to a
        feature's activation, to first order)."""
        if self.gated:
            return torch.ones(len(feat))
        if self.is_neurons:
            pre = self.dictionary.pre_acts(mlp_in[pos]).detach().float()[torch.arange(len(feat)), feat]
            pre = pre.clone().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self.dictionary.activate(pre).sum(), pre)
            return g.detach()
        if getattr(self.dictionary, "rescale_acts_by_decoder_norm", False):
            return self.dictionary.W_dec.detach().float().norm(dim=-1)[feat]
        return torch.ones(len(feat))

    def label(self, feature: int) -> str:
        return self.dictionary.labels.get(int(feature), "")


def _check_dictionary(model: Any, d: Any, layer: int) -> None:
    site = getattr(d, "site", None)
    out = getattr(d, "out_site", None)
    if site != Site("mlp_in", layer) or out != Site("mlp_out", layer):
        raise GraphError(
            f"attribution needs transcoders that read mlp_in.{layer} and write mlp_out.{layer}; "
            f"{getattr(d, 'name', d)!r} reads {site} and writes {out}. Pass a TranscoderSet "
            f"(iw.load_transcoders / iw.neuron_basis), not an SAE"
        )
    if int(d.d_in) != model.d_model or int(getattr(d, "d_out", d.d_in)) != model.d_model:
        raise DictionaryError(
            f"{d.name} maps {d.d_in} -> {getattr(d, 'd_out', d.d_in)} dims but {model.name} has "
            f"d_model={model.d_model}: these transcoders belong to another model"
        )
    want = getattr(d, "metadata", {}).get("model")
    if want and want != model.name:
        raise DictionaryError(
            f"{d.name} was trained on {want!r} but the graph is for {model.name!r}: load "
            f"transcoders for {model.name}"
        )


def default_transcoders(model: Any) -> Any:
    """The starter pack on the default SmolLM2, else the model's own neurons (exact)."""
    from ...dictionaries.neurons import neuron_basis
    from ...models.loading import DEFAULT_MODEL_NAME

    if model.name == DEFAULT_MODEL_NAME:
        try:
            from ...dictionaries.formats import load_transcoders

            return load_transcoders("starter", model=model)
        except (ImportError, DictionaryError, FileNotFoundError):
            # the starter pack is optional data; the neuron basis always exists
            pass
    return neuron_basis(model)


def replacements(model: Any, transcoders: Any) -> list[LayerReplacement | None]:
    """One :class:`LayerReplacement` per layer (``None`` where a layer has no transcoder).

    ``transcoders``: a TranscoderSet, a ``{layer: transcoder}`` mapping, a list of transcoders,
    one transcoder, or ``"neurons"`` for the model's own MLP neurons.
    """
    from ...dictionaries.neurons import neuron_basis

    if isinstance(transcoders, str):
        if transcoders != "neurons":
            raise GraphError(
                f"transcoders={transcoders!r}: pass 'neurons', None (default), or transcoder "
                f"objects (iw.load_transcoders(...))"
            )
        transcoders = neuron_basis(model)
    if isinstance(transcoders, Mapping):
        items = [(int(k), v) for k, v in transcoders.items()]
    elif isinstance(transcoders, (list, tuple)):
        items = [(int(getattr(t, "site", Site("mlp_in", -1)).layer or 0), t) for t in transcoders]
    elif hasattr(transcoders, "W_dec"):
        items = [(int(transcoders.site.layer or 0), transcoders)]
    else:
        raise GraphError(
            f"transcoders must be a TranscoderSet, a dict layer -> transcoder, a list, one "
            f"transcoder or 'neurons'; got {type(transcoders).__name__}"
        )
    if not items:
        raise GraphError("no transcoders given: pass at least one layer's transcoder, or None")
    out: list[LayerReplacement | None] = [None] * model.n_layers
    for layer, d in items:
        if not 0 <= layer < model.n_layers:
            raise GraphError(
                f"transcoder for layer {layer}, but {model.name} has layers 0-{model.n_layers - 1}"
            )
        if out[layer] is not None:
            raise GraphError(f"two transcoders for layer {layer}: pass one per layer")
        _check_dictionary(model, d, layer)
        out[layer] = LayerReplacement(d, layer)
    return out
