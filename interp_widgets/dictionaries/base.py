"""Feature dictionaries: SAEs, transcoders and transcoder sets, with our on-disk format.

Conventions (as SAELens): ``W_enc`` is ``[d_in, n_features]``, ``W_dec`` is
``[n_features, d_out]``; ``encode(x) -> [..., n_features]``, ``decode(f) -> [..., d_out]``.

    >>> sae = SAE.random(d_in=64, n_features=256, site="resid_post.1", architecture="topk", k=8)
    >>> acts = sae.encode(x)            # [batch, pos, 256], 8 non-zeros per token
    >>> sae[3]                          # Feature(sae, 3): a direction usable for steering
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..errors import DictionaryError, FeatureError, InterpWidgetsError
from ..files import (
    atomic_save_safetensors,
    atomic_write_json,
    load_safetensors,
    read_json,
    refuse_pickle,
)
from ..models.sites import Site

ARCHITECTURES = ("relu", "jumprelu", "topk", "batchtopk")
FORMAT_VERSION = 1


@runtime_checkable
class FeatureDictionary(Protocol):
    """What every dictionary offers (SAE, transcoder, neuron basis, user directions)."""

    site: Site
    out_site: Site | None
    d_in: int
    n_features: int
    labels: dict[int, str]
    metadata: dict[str, Any]

    @property
    def W_dec(self) -> Tensor: ...
    def encode(self, x: Tensor) -> Tensor: ...
    def decode(self, f: Tensor) -> Tensor: ...
    def reconstruct(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True, eq=False)
class Feature:
    """One dictionary feature: ``(dictionary, index)`` with its decoder direction and label."""

    dictionary: Any
    index: int

    @property
    def direction(self) -> Tensor:
        """The feature's decoder row (``[d_out]``): what it writes when active at 1.0."""
        return self.dictionary.W_dec[self.index].detach()

    @property
    def label(self) -> str:
        return self.dictionary.labels.get(self.index, "")

    @property
    def site(self) -> Site:
        """Where the feature's direction lives (the output site for transcoders)."""
        return self.dictionary.out_site or self.dictionary.site

    @property
    def name(self) -> str:
        return f"{self.dictionary.name}#{self.index}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Feature) and other.dictionary is self.dictionary and other.index == self.index

    def __hash__(self) -> int:
        return hash((id(self.dictionary), self.index))

    def __repr__(self) -> str:
        lab = f", label={self.label!r}" if self.label else ""
        return f"Feature({self.dictionary.name}, {self.index}{lab})"


class Dictionary(nn.Module):
    """Shared behaviour: labels, metadata, feature indexing, model checks, save/load."""

    kind: str = "dictionary"

    def __init__(self, *, site: str | Site, out_site: str | Site | None, d_in: int, d_out: int,
                 n_features: int, metadata: dict[str, Any] | None = None,
                 labels: Mapping[int, str] | None = None, name: str | None = None):
        super().__init__()
        self.site = Site.parse(site)
        self.out_site = Site.parse(out_site) if out_site is not None else None
        self.d_in = int(d_in)
        self.d_out = int(d_out)
        self.n_features = int(n_features)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.labels: dict[int, str] = {int(k): str(v) for k, v in (labels or {}).items()}
        self.name = name or f"{self.kind}@{self.site}"
        self.path: Path | None = None
        # where edited labels go; default <path>/labels.json (foreign formats set their own)
        self.labels_file: Path | None = None

    # -- features
    def check_feature(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int,)) and not (
            isinstance(index, Tensor) and index.numel() == 1
        ):
            raise FeatureError(f"feature id must be an int, got {type(index).__name__} {index!r}")
        i = int(index)
        if not 0 <= i < self.n_features:
            raise FeatureError(
                f"feature {i} is out of range for {self.name}: ids are 0-{self.n_features - 1}"
            )
        return i

    def __getitem__(self, index: int) -> Feature:
        return Feature(self, self.check_feature(index))

    def __len__(self) -> int:
        return self.n_features

    def __iter__(self) -> Iterator[Feature]:
        return (Feature(self, i) for i in range(self.n_features))

    def set_label(self, index: int, label: str, *, save: bool = True) -> None:
        """Edit a feature's label; written back to ``labels.json`` if the dictionary has a path."""
        i = self.check_feature(index)
        if not isinstance(label, str):
            raise DictionaryError(f"a label must be a str, got {type(label).__name__}")
        if label:
            self.labels[i] = label
        else:
            self.labels.pop(i, None)
        if save and (self.labels_file is not None or self.path is not None):
            self.save_labels()

    def save_labels(self, path: str | Path | None = None) -> Path:
        if path is not None:
            target: Path | None = Path(path)
        elif self.labels_file is not None:
            target = self.labels_file
        else:
            target = self.path / "labels.json" if self.path else None
        if target is None:
            raise DictionaryError(f"{self.name} has no folder yet: call .save(folder) first")
        return atomic_write_json(target, {str(k): v for k, v in sorted(self.labels.items())})

    def check_model(self, model: Any, *, check_name: bool = True) -> None:
        """Raise DictionaryError naming both sides if this dictionary does not fit ``model``.

        Checks the model name (loosely: ``org/Name`` == ``name``; skip with ``check_name=False``),
        ``d_in`` / ``d_out`` against ``d_model``, and that the sites exist.
        """
        want = self.metadata.get("model") or self.metadata.get("source_model")
        if check_name and want and getattr(model, "name", None) and not same_model_name(want, model.name):
            raise DictionaryError(
                f"{self.name} was trained on model {want!r} but is used with {model.name!r}: "
                f"load a dictionary for {model.name} (or pass check_name=False if it is the "
                f"same model under another name)"
            )
        if self.d_in != model.d_model:
            raise DictionaryError(
                f"{self.name} expects d_in={self.d_in} but {model.name} has d_model={model.d_model}: "
                f"this dictionary belongs to another model"
            )
        model.site(self.site)
        if self.out_site is not None:
            model.site(self.out_site)
            if self.d_out != model.d_model:
                raise DictionaryError(
                    f"{self.name} writes d_out={self.d_out} at {self.out_site} but {model.name} "
                    f"has d_model={model.d_model}: this dictionary belongs to another model"
                )

    def _check_input(self, x: Tensor) -> None:
        if x.shape[-1] != self.d_in:
            raise DictionaryError(
                f"{self.name} expects inputs with last dim {self.d_in}, got shape {tuple(x.shape)}"
            )

    # -- serialization (our format): folder/config.json + weights.safetensors + labels.json
    def config(self) -> dict[str, Any]:
        return {
            "format": "interp_widgets",
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "site": str(self.site),
            "out_site": str(self.out_site) if self.out_site else None,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "n_features": self.n_features,
            "metadata": self.metadata,
        }

    def save(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """Save as ``config.json`` + ``weights.safetensors`` (+ ``labels.json``), atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
                   for k, v in self.state_dict().items()}
        atomic_save_safetensors(folder / "weights.safetensors", tensors)
        atomic_write_json(folder / "config.json", self.config())
        self.path = folder
        self.save_labels()
        return folder

    def extra_repr(self) -> str:
        out = f" -> {self.out_site}" if self.out_site else ""
        return f"{self.site}{out}, d_in={self.d_in}, n_features={self.n_features}"


class SAE(Dictionary):
    """Sparse autoencoder: ReLU, JumpReLU, TopK or BatchTopK (SAELens' math).

    encode: ``pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc``, then the activation.
    decode: ``f @ W_dec + b_dec``.
    """

    kind = "sae"

    def __init__(self, *, d_in: int, n_features: int, site: str | Site, architecture: str = "relu",
                 k: int | None = None, apply_b_dec_to_input: bool = False,
                 rescale_acts_by_decoder_norm: bool = False, scaling_factor: float | None = None,
                 out_site: str | Site | None = None, d_out: int | None = None,
                 topk_relu: bool = True, **kw: Any):
        if architecture not in ARCHITECTURES:
            raise DictionaryError(
                f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}"
            )
        if architecture in ("topk", "batchtopk") and (k is None or not 0 < int(k) <= n_features):
            raise DictionaryError(f"{architecture} needs k in 1-{n_features}, got {k!r}")
        d_out = d_out or d_in
        super().__init__(site=site, out_site=out_site, d_in=d_in, d_out=d_out,
                         n_features=n_features, **kw)
        self.architecture = architecture
        self.k = int(k) if k is not None else None
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.scaling_factor = scaling_factor  # SAELens "expected_average_only_in" normalisation
        # SAELens' TopK applies ReLU to the k kept values; circuit-tracer's TopK keeps their sign
        self.topk_relu = bool(topk_relu)
        self.W_enc = nn.Parameter(torch.zeros(d_in, n_features))
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self._W_dec = nn.Parameter(torch.zeros(n_features, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        if architecture in ("jumprelu", "batchtopk"):
            self.threshold = nn.Parameter(torch.zeros(n_features), requires_grad=False)
        else:
            self.threshold = None

    # W_dec as a property so NeuronBasis and others can compute it
    @property
    def W_dec(self) -> Tensor:
        return self._W_dec

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # accept "W_dec"
        if prefix + "W_dec" in state_dict:
            state_dict[prefix + "_W_dec"] = state_dict.pop(prefix + "W_dec")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:  # type: ignore[override]
        sd = super().state_dict(*args, **kwargs)
        return {("W_dec" if k.endswith("_W_dec") else k): v for k, v in sd.items()}

    @classmethod
    def random(cls, *, d_in: int, n_features: int, site: str | Site | None = None, seed: int = 0,
               **kw: Any) -> SAE:
        """A randomly initialised dictionary (decoder rows unit norm, encoder = decoder.T)."""
        if site is not None:
            kw["site"] = site
        sae = cls(d_in=d_in, n_features=n_features, **kw)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            W = torch.randn(n_features, sae.d_out, generator=g)
            W /= W.norm(dim=-1, keepdim=True)
            sae._W_dec.copy_(W)
            if sae.d_out == d_in:
                sae.W_enc.copy_(W.T)
            else:
                sae.W_enc.copy_(torch.randn(d_in, n_features, generator=g) / math.sqrt(d_in))
        return sae

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations ``[..., n_features]`` (before the nonlinearity)."""
        self._check_input(x)
        x = x.to(self.W_enc.dtype)
        if self.scaling_factor is not None:
            x = x * self.scaling_factor
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Tensor) -> Tensor:
        """The nonlinearity applied to pre-activations."""
        arch = self.architecture
        if self.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        if arch == "relu":
            return torch.relu(pre)
        if arch == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold)
        if arch == "topk":
            vals, idx = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals) if self.topk_relu else vals)
        # batchtopk: at inference a learned global threshold acts as JumpReLU, as in SAELens
        if self.threshold is not None and bool((self.threshold > 0).any()):
            return torch.relu(pre) * (pre > self.threshold)
        flat = pre.reshape(-1, pre.shape[-1])
        kk = min(self.k * flat.shape[0], flat.numel())
        vals, idx = flat.flatten().topk(kk)
        out = torch.zeros_like(flat).flatten().scatter(0, idx, torch.relu(vals))
        return out.reshape(pre.shape)

    def encode(self, x: Tensor) -> Tensor:
        return self.activate(self.pre_acts(x))

    def decode(self, f: Tensor) -> Tensor:
        if f.shape[-1] != self.n_features:
            raise DictionaryError(
                f"{self.name} decodes {self.n_features} features, got shape {tuple(f.shape)}"
            )
        if self.rescale_acts_by_decoder_norm:
            f = f / self.W_dec.norm(dim=-1)
        out = f @ self.W_dec + self.b_dec
        if self.scaling_factor is not None:
            out = out / self.scaling_factor
        return out

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "architecture": self.architecture,
            "k": self.k,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "rescale_acts_by_decoder_norm": self.rescale_acts_by_decoder_norm,
            "scaling_factor": self.scaling_factor,
            "topk_relu": self.topk_relu,
        }


class Transcoder(SAE):
    """Reads ``mlp_in.L``, writes ``mlp_out.L``: ``decode(encode(x)) + x @ W_skip`` (optional)."""

    kind = "transcoder"

    def __init__(self, *, d_in: int, n_features: int, layer: int | None = None,
                 site: str | Site | None = None, out_site: str | Site | None = None,
                 d_out: int | None = None, skip: bool = False, architecture: str = "relu",
                 **kw: Any):
        if site is None:
            if layer is None:
                raise DictionaryError("a Transcoder needs a layer (or explicit site/out_site)")
            site = f"mlp_in.{layer}"
        site = Site.parse(site)
        out_site = Site.parse(out_site) if out_site is not None else Site("mlp_out", site.layer)
        kw.setdefault("apply_b_dec_to_input", False)
        super().__init__(d_in=d_in, n_features=n_features, site=site, out_site=out_site,
                         d_out=d_out or d_in, architecture=architecture, **kw)
        self.W_skip = nn.Parameter(torch.zeros(d_in, self.d_out)) if skip else None

    @property
    def layer(self) -> int:
        return int(self.site.layer or 0)

    def reconstruct(self, x: Tensor) -> Tensor:
        out = self.decode(self.encode(x))
        if self.W_skip is not None:
            out = out + x.to(self.W_skip.dtype) @ self.W_skip
        return out

    def skip(self, x: Tensor) -> Tensor:
        """The linear skip term (zeros if there is none)."""
        if self.W_skip is None:
            return torch.zeros(*x.shape[:-1], self.d_out, dtype=x.dtype)
        return x.to(self.W_skip.dtype) @ self.W_skip

    def config(self) -> dict[str, Any]:
        return {**super().config(), "skip": self.W_skip is not None}


@dataclass
class TranscoderSet(Mapping[int, Any]):
    """One transcoder (or NeuronBasis) per layer; missing layers are allowed.

    ``tset[12]`` is the layer-12 transcoder; ``tset.layers`` lists the covered layers.
    """

    transcoders: dict[int, Any]
    name: str = "transcoders"
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        self.transcoders = dict(sorted((int(k), v) for k, v in self.transcoders.items()))
        for layer, tc in self.transcoders.items():
            if tc.site.layer != layer:
                raise DictionaryError(
                    f"transcoder stored at layer {layer} reads {tc.site}: fix the layer mapping"
                )

    def __getitem__(self, layer: int) -> Any:
        if layer not in self.transcoders:
            raise DictionaryError(
                f"no transcoder for layer {layer} in {self.name}; available layers: "
                f"{_ranges(list(self.transcoders))}"
            )
        return self.transcoders[layer]

    def __iter__(self) -> Iterator[int]:
        return iter(self.transcoders)

    def __len__(self) -> int:
        return len(self.transcoders)

    @property
    def layers(self) -> list[int]:
        return list(self.transcoders)

    @property
    def d_in(self) -> int:
        return next(iter(self.transcoders.values())).d_in

    def check_model(self, model: Any, *, check_name: bool = True) -> None:
        for tc in self.transcoders.values():
            tc.check_model(model, check_name=check_name)

    def save(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        folder = Path(folder)
        for layer, tc in self.transcoders.items():
            tc.save(folder / f"layer_{layer:02d}", dtype=dtype)
        atomic_write_json(folder / "config.json", {
            "format": "interp_widgets", "format_version": FORMAT_VERSION,
            "kind": "transcoder_set", "name": self.name, "layers": self.layers,
            "metadata": self.metadata,
        })
        self.path = folder
        return folder

    def __repr__(self) -> str:
        return f"TranscoderSet({self.name!r}, layers={_ranges(self.layers)}, n={len(self)})"


def flatten_dictionaries(dictionaries: Any) -> dict[str, Any]:
    """``{name: dictionary}`` from one dictionary, a TranscoderSet, a list / tuple or a mapping.

    The one rule every panel and analysis uses to name what it was given: a mapping's keys; a
    list's or a single dictionary's own ``name``; a TranscoderSet's transcoders by their own names
    (``transcoder.12``), or ``<key>.<layer>`` under a mapping key other than the set's name.
    Anything with ``as_dictionary()`` (a DirectionSet) is converted.

        >>> flatten_dictionaries([sae6, sae12])          # {'starter/resid_post.6': ..., ...}
        >>> flatten_dictionaries({"mine": sae, "tc": tset})  # {'mine': sae, 'tc.0': ..., ...}

    Raises :class:`DictionaryError` for something that is not a dictionary, two different
    dictionaries under one name, or nothing at all.
    """
    out: dict[str, Any] = {}

    def add(name: str, d: Any) -> None:
        if isinstance(d, TranscoderSet):
            for layer, tc in d.transcoders.items():
                add(f"{name}.{layer}" if name != d.name else tc.name, tc)
            return
        if hasattr(d, "as_dictionary") and not hasattr(d, "encode"):
            d = d.as_dictionary()
        if not (hasattr(d, "encode") and hasattr(d, "site") and hasattr(d, "n_features")):
            raise DictionaryError(
                f"{d!r} is not a dictionary: pass SAEs, transcoders, TranscoderSets, NeuronBases "
                f"or Directions"
            )
        if name in out and out[name] is not d:
            raise DictionaryError(
                f"two dictionaries are both named {name!r}: pass a dict {{name: dictionary}} to "
                f"name them apart"
            )
        out[name] = d

    if isinstance(dictionaries, TranscoderSet):
        add(dictionaries.name, dictionaries)
    elif isinstance(dictionaries, Mapping) and not hasattr(dictionaries, "encode"):
        for key, d in dictionaries.items():
            add(str(key), d)
    elif isinstance(dictionaries, (list, tuple)):
        for d in dictionaries:
            add(str(getattr(d, "name", "dictionary")), d)
    elif dictionaries is not None:
        add(str(getattr(dictionaries, "name", "dictionary")), dictionaries)
    if not out:
        raise DictionaryError("no dictionaries given: pass an SAE, a TranscoderSet, or a list of them")
    return out


#: A token is an attention sink if it is at position 0 or its residual norm exceeds this many times
#: the median norm of its prompt's other tokens (SmolLM2: ~24,000 at position 0 vs ~150).
DEFAULT_SINK_RATIO = 10.0


def mark_sinks(norms: Tensor, ratio: float = DEFAULT_SINK_RATIO) -> list[bool]:
    """Sink marks for one prompt's tokens from their residual norms ``[n_tokens]``.

    Position 0 is always a sink (it attends only to itself; circuit-tracer drops it too); any
    other token is one when its norm is more than ``ratio`` x the median of positions 1..n.

        >>> mark_sinks(torch.tensor([24000.0, 150.0, 160.0, 3000.0]))
        [True, False, False, True]
    """
    n = int(norms.shape[0])
    sink = [True] + [False] * max(n - 1, 0)
    if n > 2:
        med = float(norms[1:].float().median())
        for i in range(1, n):
            sink[i] = bool(float(norms[i]) > ratio * med)
    return sink[:n]


def same_model_name(a: str, b: str) -> bool:
    """Loose model-name match: ``"HuggingFaceTB/SmolLM2-135M-Instruct"`` == ``"smollm2-135m-instruct"``."""
    def norm(x: str) -> str:
        return str(x).strip().rstrip("/").split("/")[-1].lower()
    return norm(a) == norm(b)


def _ranges(xs: list[int]) -> str:
    if not xs:
        return "none"
    xs = sorted(xs)
    out, start, prev = [], xs[0], xs[0]
    for x in xs[1:] + [None]:  # type: ignore[list-item]
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
        if x is not None:
            start = prev = x
    return ", ".join(out)


_CONFIG_KEYS = {"kind", "site", "d_in", "n_features"}


def read_labels(path: Path) -> dict[int, str]:
    """``{feature id: label}`` from a labels JSON file (empty if the file does not exist)."""
    if not path.is_file():
        return {}
    labels = read_json(path, "labels file")
    if not isinstance(labels, dict):
        raise DictionaryError(f"{path} must hold an object of id -> label")
    try:
        return {int(k): str(v) for k, v in labels.items()}
    except ValueError as e:
        raise DictionaryError(f"{path}: label keys must be feature ids ({e})") from e


def load_ours(folder: str | Path) -> Any:
    """Load a dictionary or transcoder set saved by ``.save()`` (our format)."""
    folder = Path(folder)
    cfg = read_json(folder / "config.json", "dictionary config")
    if not isinstance(cfg, dict):
        raise DictionaryError(f"{folder}/config.json must hold a JSON object")
    kind = cfg.get("kind")
    if kind == "transcoder_set":
        layers = cfg.get("layers")
        if not isinstance(layers, list) or not all(isinstance(x, int) for x in layers):
            raise DictionaryError(f"{folder}/config.json: 'layers' must be a list of ints")
        tcs = {layer: load_ours(folder / f"layer_{layer:02d}") for layer in layers}
        ts = TranscoderSet(tcs, name=str(cfg.get("name", folder.name)),
                           metadata=dict(cfg.get("metadata") or {}), path=folder)
        return ts
    missing = _CONFIG_KEYS - set(cfg)
    if missing:
        raise DictionaryError(f"{folder}/config.json is missing keys: {', '.join(sorted(missing))}")
    for key in ("d_in", "n_features"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] <= 0:
            raise DictionaryError(f"{folder}/config.json: {key} must be a positive int, got {cfg[key]!r}")
    _check_config_types(cfg, folder)
    wfile = folder / "weights.safetensors"
    if not wfile.is_file():
        for f in sorted(folder.iterdir()) if folder.is_dir() else []:
            refuse_pickle(f)  # a pickle beside the config: say why it is not read
    weights = load_safetensors(wfile)
    _check_shapes_before_building(cfg, weights, folder)
    labels = read_labels(folder / "labels.json")
    common = dict(d_in=cfg["d_in"], n_features=cfg["n_features"], metadata=cfg.get("metadata") or {},
                  labels=labels, name=cfg.get("name"))
    try:
        d = _build_from_config(kind, cfg, weights, common, folder)
    except InterpWidgetsError as e:
        if isinstance(e, DictionaryError) and str(folder) in str(e):
            raise
        raise DictionaryError(f"{folder}/config.json: {e}") from e
    load_state(d, weights, where=str(folder))
    d.path = folder
    return d


_NUM = (int, float)
#: optional config fields -> the JSON types they may hold (None is always allowed)
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "site": (str,), "out_site": (str,), "d_out": (int,), "architecture": (str,), "k": (int,),
    "apply_b_dec_to_input": (bool,), "rescale_acts_by_decoder_norm": (bool,), "scaling_factor": _NUM,
    "topk_relu": (bool,), "skip": (bool,), "metadata": (dict,), "name": (str,), "layer": (int,),
}


def _check_config_types(cfg: Mapping[str, Any], folder: Path) -> None:
    """Every known field has its JSON type (a list where a number belongs is named, not a TypeError)."""
    for key, types in _CONFIG_TYPES.items():
        v = cfg.get(key)
        if v is None:
            continue
        ok = isinstance(v, types) and (bool in types or not isinstance(v, bool))
        if ok and isinstance(v, float):
            ok = math.isfinite(v)
        if not ok:
            names = " or ".join("number" if t is float else {"str": "string", "dict": "object"}.get(t.__name__, t.__name__)
                                for t in types if not (t is int and float in types))
            raise DictionaryError(f"{folder}/config.json: {key} must be a {names} (or null), got {v!r}")


def _check_shapes_before_building(cfg: Mapping[str, Any], weights: Mapping[str, Tensor], folder: Path) -> None:
    """Compare the config's sizes with the weight shapes *before* allocating anything, so a
    corrupted or hostile config (``n_features: 10**12``) is an error, not a giant allocation."""
    d_in, n = cfg["d_in"], cfg["n_features"]
    for key in ("W_enc", "W_dec"):
        if key not in weights:
            raise DictionaryError(
                f"{folder}: weights.safetensors has no {key} (it holds {', '.join(sorted(weights)) or 'nothing'}): "
                f"the file is corrupted or not an interp_widgets dictionary; re-save it"
            )
    enc = weights.get("W_enc")
    if enc is None or enc.dim() != 2 or tuple(enc.shape) != (d_in, n):
        got = tuple(enc.shape) if enc is not None else "no W_enc"
        raise DictionaryError(
            f"{folder}: config.json says d_in={d_in}, n_features={n} but weights.safetensors has "
            f"W_enc {got}: the config and the weights do not belong together (re-save the dictionary)"
        )
    d_out = cfg.get("d_out")
    dec = weights.get("W_dec")
    if dec is None or dec.dim() != 2 or dec.shape[0] != n or (
            d_out is not None and (not isinstance(d_out, int) or dec.shape[1] != d_out)):
        got = tuple(dec.shape) if dec is not None else "no W_dec"
        raise DictionaryError(
            f"{folder}: config.json says n_features={n}, d_out={d_out} but weights.safetensors has "
            f"W_dec {got}: the config and the weights do not belong together (re-save the dictionary)"
        )


def _build_from_config(kind: Any, cfg: Mapping[str, Any], weights: Mapping[str, Tensor],
                       common: dict[str, Any], folder: Path) -> Any:
    if kind == "sae":
        d = SAE(site=cfg["site"], out_site=cfg.get("out_site"), d_out=cfg.get("d_out"),
                architecture=cfg.get("architecture", "relu"), k=cfg.get("k"),
                apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", False),
                rescale_acts_by_decoder_norm=cfg.get("rescale_acts_by_decoder_norm", False),
                scaling_factor=cfg.get("scaling_factor"),
                topk_relu=cfg.get("topk_relu", True), **common)
    elif kind == "transcoder":
        d = Transcoder(site=cfg["site"], out_site=cfg.get("out_site"), d_out=cfg.get("d_out"),
                       architecture=cfg.get("architecture", "relu"), k=cfg.get("k"),
                       skip=bool(cfg.get("skip", "W_skip" in weights)),
                       apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", False),
                       rescale_acts_by_decoder_norm=cfg.get("rescale_acts_by_decoder_norm", False),
                       scaling_factor=cfg.get("scaling_factor"),
                       topk_relu=cfg.get("topk_relu", True), **common)
    else:
        raise DictionaryError(f"{folder}/config.json: unknown kind {kind!r} (sae, transcoder, transcoder_set)")
    return d


def load_state(d: nn.Module, weights: dict[str, Tensor], *, where: str,
               config: str = "the config") -> None:
    """Load tensors into a dictionary, checking names and shapes (errors name both sides).

    ``config`` names what the weights were checked against (a file in another format, say).
    """
    own = d.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        raise DictionaryError(
            f"{where}: tensors do not match {config} (missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(unexpected) or 'none'})"
        )
    for k, v in weights.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise DictionaryError(
                f"{where}: tensor {k} has shape {tuple(v.shape)} but {config} implies "
                f"{tuple(own[k].shape)}"
            )
    d.load_state_dict({k: (v.float() if v.is_floating_point() else v).contiguous()
                       for k, v in weights.items()})
