"""On-disk dictionary formats: ours, SAELens, circuit-tracer; and the starter pack by name.

Weights are read from safetensors only (pickle files are refused with a message), and every
mismatch (shape, site, model) names both sides.

    >>> sae = iw.load_dictionary("path/to/saelens_sae")        # cfg.json + sae_weights.safetensors
    >>> tset = iw.load_transcoders("path/to/circuit_tracer")   # config.yaml + layer_*.safetensors
    >>> tset = iw.load_transcoders("starter", model=model)     # the pack shipped for SmolLM2

Formats detected by :func:`detect_format`:

- ``"interp_widgets"``: ``config.json`` with ``"format": "interp_widgets"`` +
  ``weights.safetensors`` (+ ``labels.json``), or a transcoder set of such folders.
- ``"saelens"``: ``cfg.json`` + ``sae_weights.safetensors`` (SAELens >= 6 and the older flat
  configs). Architectures ``standard``, ``jumprelu``, ``topk``, ``batchtopk`` and the
  transcoders ``transcoder``, ``skip_transcoder``, ``jumprelu_transcoder``. TransformerLens
  hook names are mapped to our sites (:func:`site_from_hook`).
- ``"circuit_tracer"``: ``config.yaml`` (``model_kind: transcoder_set``) + one safetensors per
  layer (``layer_<i>.safetensors`` or the ``transcoders:`` list), keys ``W_enc [d_tc, d_model]``
  (transposed vs ours), ``W_dec [d_tc, d_model]``, ``b_enc``, ``b_dec``, optional
  ``activation_function.threshold`` (JumpReLU), ``W_skip [d_model, d_model]`` (``x @ W_skip.T``)
  and TopK (``activation: topk`` + ``k``; circuit-tracer's TopK keeps the sign of kept values).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DictionaryError, InterpWidgetsError, UnsafeFileError
from ..files import (
    PICKLE_SUFFIXES,
    atomic_save_safetensors,
    atomic_write_json,
    atomic_write_text,
    load_safetensors,
    read_json,
    refuse_pickle,
)
from ..models.sites import GLOBAL_SITES, LAYER_SITES, Site
from .base import (
    SAE,
    Dictionary,
    Transcoder,
    TranscoderSet,
    load_ours,
    load_state,
    read_labels,
    same_model_name,
)

FORMATS = ("interp_widgets", "saelens", "circuit_tracer")
STARTER = "starter"

# ----------------------------------------------------------------------------- hook names
# TransformerLens / SAELens / circuit-tracer hook suffix -> our site name (inside a block)
_HOOK_SUFFIX = {
    "hook_resid_pre": "resid_pre",
    "hook_attn_in": "resid_pre",
    "hook_attn_out": "attn_out",
    "attn.hook_result": "attn_out",
    "hook_resid_mid": "resid_mid",
    "hook_mlp_in": "resid_mid",  # TransformerLens: the residual entering ln2 (before the norm)
    "ln2.hook_normalized": "mlp_in",
    "mlp.hook_in": "mlp_in",  # circuit-tracer's name for the MLP's (normalised) input
    "mlp_in": "mlp_in",
    "hook_mlp_out": "mlp_out",
    "mlp.hook_out": "mlp_out",
    "hook_resid_post": "resid_post",
}
_GLOBAL_HOOKS = {"hook_embed": "embed", "embed": "embed"}
# our site name -> the canonical TransformerLens hook suffix (for writing foreign formats)
_SITE_HOOK = {
    "resid_pre": "hook_resid_pre",
    "attn_out": "hook_attn_out",
    "resid_mid": "hook_resid_mid",
    "mlp_in": "ln2.hook_normalized",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}


def site_from_hook(hook: str, layer: int | None = None) -> Site:
    """Map a hook name to our site.

    Accepts TransformerLens names (``"blocks.12.hook_resid_post"``, ``"blocks.3.ln2.hook_normalized"``,
    ``"hook_embed"``), circuit-tracer's (``"mlp.hook_in"`` with ``layer=``), layer-templated ones
    (``"blocks.{layer}.hook_mlp_out"``), HF-style block outputs (``"model.layers.12"`` /
    ``"layers.12"`` -> ``resid_post.12``) and our own (``"resid_post.12"``).

        >>> site_from_hook("blocks.12.hook_resid_post")
        Site(name='resid_post', layer=12)
    """
    if not isinstance(hook, str) or not hook.strip():
        raise DictionaryError(f"hook name must be a non-empty string, got {hook!r}")
    h = hook.strip()
    if layer is not None:
        h = h.replace("{layer}", str(layer))
    if h in _GLOBAL_HOOKS:
        return Site(_GLOBAL_HOOKS[h])
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", h)
    if m and m.group(2) in _HOOK_SUFFIX:
        return Site(_HOOK_SUFFIX[m.group(2)], int(m.group(1)))
    if h in _HOOK_SUFFIX and layer is not None:
        return Site(_HOOK_SUFFIX[h], int(layer))
    m = re.fullmatch(r"(?:model\.|transformer\.|gpt_neox\.)?(?:layers|h)\.(\d+)(\.mlp)?", h)
    if m:
        return Site("mlp_out" if m.group(2) else "resid_post", int(m.group(1)))
    m = re.fullmatch(r"([a-z_]+)\.(\d+)", h)
    if m and m.group(1) in LAYER_SITES:
        return Site(m.group(1), int(m.group(2)))
    if h in GLOBAL_SITES:
        return Site(h)
    known = ", ".join(f"blocks.<L>.{k}" for k in _HOOK_SUFFIX if "." not in k or k.startswith("ln2")
                      or k.startswith("mlp."))
    raise DictionaryError(
        f"hook {hook!r} has no interp_widgets site: supported hooks are {known}, hook_embed, "
        f"or our site names ({', '.join(LAYER_SITES)} with '.<layer>')"
    )


def hook_from_site(site: str | Site) -> str:
    """Our site -> its TransformerLens hook name (``resid_post.12`` -> ``blocks.12.hook_resid_post``)."""
    s = Site.parse(site)
    if s.name == "embed":
        return "hook_embed"
    if s.name not in _SITE_HOOK or s.layer is None:
        raise DictionaryError(f"site {s} has no TransformerLens hook name")
    return f"blocks.{s.layer}.{_SITE_HOOK[s.name]}"


# ----------------------------------------------------------------------------- detection
def starter_dir() -> Path:
    """Where the starter pack lives (``interp_widgets/data/starter``)."""
    return Path(__file__).resolve().parent.parent / "data" / STARTER


def detect_format(path: str | Path) -> str:
    """``"interp_widgets"``, ``"saelens"`` or ``"circuit_tracer"`` for a dictionary folder.

    Raises UnsafeFileError for pickle weights and DictionaryError when nothing matches.
    """
    p = Path(path)
    refuse_pickle(p)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise DictionaryError(f"{path} does not exist")
    cfg = p / "config.json"
    if cfg.is_file():
        data = read_json(cfg, "dictionary config")
        if isinstance(data, dict) and data.get("format") == "interp_widgets":
            return "interp_widgets"
    if (p / "cfg.json").is_file():
        return "saelens"
    if (p / "config.yaml").is_file():
        return "circuit_tracer"
    pickles = sorted(f.name for f in p.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeFileError(
            f"{p} only holds pickle-based weights ({', '.join(pickles[:5])}); loading them could "
            f"execute arbitrary code, so interp_widgets reads weights from .safetensors only. "
            f"Convert them once in a trusted session with safetensors.torch.save_file"
        )
    raise DictionaryError(
        f"{p} is not a dictionary folder: expected config.json with \"format\": "
        f"\"interp_widgets\" (ours), cfg.json + sae_weights.safetensors (SAELens), or "
        f"config.yaml + layer_<i>.safetensors (circuit-tracer)"
    )


def _resolve(path_or_name: str | Path) -> tuple[Path, str | None]:
    """A path on disk, or a starter-pack name -> ``(path, starter sub-name or None)``."""
    if isinstance(path_or_name, Path) or not isinstance(path_or_name, str):
        if not isinstance(path_or_name, (str, Path)):
            raise DictionaryError(
                f"pass a folder path or a name such as 'starter', got {type(path_or_name).__name__}"
            )
        return Path(path_or_name).expanduser(), None
    name = path_or_name.strip()
    p = Path(name).expanduser()
    if p.exists() or p.suffix.lower() in PICKLE_SUFFIXES:
        return p, None
    if name == STARTER or name.startswith(STARTER + "/"):
        root = starter_dir()
        if not root.is_dir() or not any(root.iterdir()):
            raise DictionaryError(
                f"the starter pack is not built: {root} is missing. Build it with "
                f"`python scripts/build_starter_pack.py`, or pass a folder of your own dictionaries"
            )
        sub = name[len(STARTER) + 1:] if name != STARTER else "transcoders"
        return root, sub
    raise DictionaryError(
        f"{path_or_name!r} is neither an existing path nor a known name: pass a dictionary "
        f"folder, 'starter' (transcoders) or 'starter/<site>' such as 'starter/resid_post.12'"
    )


def _starter_available(root: Path) -> list[str]:
    names = []
    if (root / "transcoders").is_dir():
        names.append("starter")
    saes = root / "saes"
    if saes.is_dir():
        names += [f"starter/{d.name}" for d in sorted(saes.iterdir()) if d.is_dir()]
    return names


def _starter_path(root: Path, sub: str) -> tuple[Path, int | None]:
    """Folder for a starter sub-name; ``(transcoders folder, layer)`` for ``mlp_in.L``."""
    if sub in ("transcoders", ""):
        target = root / "transcoders"
        layer = None
    elif (root / "saes" / sub).is_dir():
        return root / "saes" / sub, None
    else:
        try:
            site = Site.parse(sub)
        except Exception:  # noqa: BLE001 - reported below with the available names
            site = None
        if site is not None and site.name == "mlp_in" and site.layer is not None:
            target, layer = root / "transcoders", site.layer
        else:
            target, layer = root / "saes" / sub, None
    if not target.is_dir():
        raise DictionaryError(
            f"the starter pack has no {sub!r}: available: {', '.join(_starter_available(root)) or 'nothing'}"
        )
    return target, layer


# ----------------------------------------------------------------------------- public loaders
def load_dictionary(path_or_name: str | Path, *, model: Any = None, check_name: bool = True) -> Any:
    """Load a dictionary in any supported format (or a starter-pack name), detecting it.

    Returns an SAE / Transcoder, or a TranscoderSet when the folder holds one. With ``model=``
    the dictionary is checked against it (d_model, sites, model name; ``check_name=False`` skips
    the name check, e.g. for the same weights published under another name).

        >>> sae = iw.load_dictionary("starter/resid_post.12", model=model)
        >>> sae = iw.load_dictionary("~/saes/gpt2-res-8")           # SAELens folder
        >>> sae[123].label, sae.encode(x)
    """
    path, sub = _resolve(path_or_name)
    if sub is not None:
        folder, layer = _starter_path(path, sub)
        d = load_ours(folder)
        if layer is not None:
            d = d[layer]
    else:
        d = _load_path(path)
    if model is not None:
        check_against_model(d, model, check_name=check_name)
    return d


def load_transcoders(path_or_name: str | Path, *, model: Any = None,
                     check_name: bool = True) -> TranscoderSet:
    """Load a set of per-layer transcoders (ours, circuit-tracer, or a single SAELens transcoder).

        >>> tset = iw.load_transcoders("starter", model=model)
        >>> tset.layers, tset[12]
        >>> tset = iw.load_transcoders("path/to/circuit_tracer_folder")
    """
    path, sub = _resolve(path_or_name)
    if sub is not None:
        folder, layer = _starter_path(path, sub)
        d = load_ours(folder)
        if layer is not None:
            d = TranscoderSet({layer: d[layer]}, name=f"{d.name}[{layer}]", metadata=d.metadata)
    else:
        d = _load_path(path)
    if isinstance(d, Transcoder):
        d = TranscoderSet({d.layer: d}, name=d.name, metadata=dict(d.metadata), path=d.path)
    if not isinstance(d, TranscoderSet):
        raise DictionaryError(
            f"{path_or_name} holds a {getattr(d, 'kind', type(d).__name__)} at {d.site}, not "
            f"transcoders (mlp_in.L -> mlp_out.L): load it with iw.load_dictionary"
        )
    if model is not None:
        check_against_model(d, model, check_name=check_name)
    return d


def _load_path(path: Path) -> Any:
    fmt = detect_format(path)
    folder = path.parent if path.is_file() else path
    loader = {"interp_widgets": load_ours, "saelens": load_saelens}.get(fmt, load_circuit_tracer)
    try:
        return loader(folder)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        if isinstance(e, InterpWidgetsError):
            raise
        # a config value of a type or form no check above foresaw: still our error, naming the file
        raise DictionaryError(
            f"{folder}: the {fmt} config holds a value of the wrong type or form ({type(e).__name__}: {e}); "
            f"compare it with a freshly saved one"
        ) from e


def check_against_model(d: Any, model: Any, *, check_name: bool = True) -> None:
    """Raise DictionaryError (naming both sides) if ``d`` does not fit ``model``."""
    members = list(d.transcoders.values()) if isinstance(d, TranscoderSet) else [d]
    for m in members:
        m.check_model(model, check_name=check_name)
    if check_name and isinstance(d, TranscoderSet):
        want = d.metadata.get("model") or d.metadata.get("source_model")
        if want and not same_model_name(want, model.name):
            raise DictionaryError(
                f"{d.name} was trained on model {want!r} but is used with {model.name!r}: "
                f"load transcoders for {model.name} (or pass check_name=False)"
            )


# ----------------------------------------------------------------------------- SAELens
_SAELENS_ARCH = {
    "standard": ("sae", "relu"),
    "relu": ("sae", "relu"),
    "jumprelu": ("sae", "jumprelu"),
    "topk": ("sae", "topk"),
    "batchtopk": ("sae", "batchtopk"),
    "transcoder": ("transcoder", "relu"),
    "skip_transcoder": ("transcoder", "relu"),
    "jumprelu_transcoder": ("transcoder", "jumprelu"),
}


#: SAELens config fields -> the JSON types they may hold (None is allowed: the field is optional)
_SAELENS_TYPES: dict[str, tuple[type, ...]] = {
    "architecture": (str,), "activation_fn": (str,), "activation_fn_str": (str,), "hook_name": (str,),
    "hook_point": (str,), "hook_name_out": (str,), "hook_layer": (int,), "hook_layer_out": (int,),
    "k": (int,), "activation_fn_kwargs": (dict,), "apply_b_dec_to_input": (bool,),
    "rescale_acts_by_decoder_norm": (bool,), "normalize_activations": (str, bool), "reshape_activations": (str,),
    "neuronpedia_id": (str,), "model_name": (str,),
}


def _want(cfg: dict, key: str, where: str, kind: type | tuple = int) -> Any:
    if key not in cfg:
        raise DictionaryError(f"{where}: missing required field {key!r}")
    v = cfg[key]
    if not isinstance(v, kind) or isinstance(v, bool) or (isinstance(v, int) and v <= 0):
        raise DictionaryError(f"{where}: {key} must be a positive int, got {v!r}")
    return v


def load_saelens(folder: str | Path) -> SAE:
    """Load a SAELens SAE / transcoder folder (``cfg.json`` + ``sae_weights.safetensors``).

    Reproduces SAELens' inference math: ``encode = act((x - b_dec*apply_b_dec_to_input) @ W_enc
    + b_enc)`` (JumpReLU: ``relu(pre) * (pre > threshold)``; TopK: top-k then ReLU, optionally
    on decoder-norm-rescaled pre-activations), ``decode = f @ W_dec + b_dec``. A finetuning
    scaling factor is folded into ``W_dec``.

        >>> sae = load_saelens("gpt2-small-res-jb/blocks.8.hook_resid_pre")
        >>> sae.site
        Site(name='resid_pre', layer=8)
    """
    folder = Path(folder)
    where = f"{folder}/cfg.json"
    cfg = read_json(folder / "cfg.json", "SAELens config")
    if not isinstance(cfg, dict):
        raise DictionaryError(f"{where} must hold a JSON object")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    meta = {**{k: cfg[k] for k in ("model_name", "hook_name", "hook_point", "hook_name_out",
                                   "hook_layer", "neuronpedia_id", "dataset_path",
                                   "context_size", "prepend_bos") if k in cfg}, **meta}
    for key, types in _SAELENS_TYPES.items():
        v = meta.get(key) if key in meta else cfg.get(key)
        if v is not None and (not isinstance(v, types) or (isinstance(v, bool) and bool not in types)):
            raise DictionaryError(f"{where}: {key} must be {' or '.join(t.__name__ for t in types)}, got {v!r}")
    hook = meta.get("hook_name") or meta.get("hook_point")
    if not hook:
        raise DictionaryError(f"{where}: no hook_name (in 'metadata' or at the top level)")
    arch = cfg.get("architecture")
    act_fn = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
    act_kw = cfg.get("activation_fn_kwargs") or {}
    if arch is None:  # configs written before SAELens 6
        arch = "topk" if act_fn == "topk" else "standard"
    if arch not in _SAELENS_ARCH:
        raise DictionaryError(
            f"{where}: SAELens architecture {arch!r} is not supported; supported: "
            f"{', '.join(_SAELENS_ARCH)}"
        )
    if arch in ("standard", "transcoder", "skip_transcoder") and act_fn not in ("relu", "topk", None):
        raise DictionaryError(f"{where}: activation_fn {act_fn!r} is not supported (relu only)")
    norm = cfg.get("normalize_activations", "none")
    if norm is True:
        norm = "expected_average_only_in"
    if norm in (None, False):
        norm = "none"
    if norm not in ("none", "expected_average_only_in"):
        raise DictionaryError(
            f"{where}: normalize_activations={norm!r} rescales each input at run time and is not "
            f"supported; supported: 'none', 'expected_average_only_in' (which SAELens also leaves "
            f"unfolded when loading from disk)"
        )
    if cfg.get("reshape_activations") == "hook_z" or str(hook).endswith("hook_z"):
        raise DictionaryError(f"{where}: attention hook_z SAEs ({hook}) are not supported")
    d_in = _want(cfg, "d_in", where)
    n = _want(cfg, "d_sae", where)
    kind, our_arch = _SAELENS_ARCH[arch]
    site = site_from_hook(hook, meta.get("hook_layer"))
    wfile = folder / "sae_weights.safetensors"
    if not wfile.is_file():
        pickles = sorted(f for f in folder.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            refuse_pickle(pickles[0])
        raise DictionaryError(f"{folder}: cfg.json is there but sae_weights.safetensors is missing")
    weights = load_safetensors(wfile)
    weights = {k: v.float() for k, v in weights.items()}
    if "log_threshold" in weights and "threshold" not in weights:
        weights["threshold"] = weights.pop("log_threshold").exp()
    fsf = weights.pop("finetuning_scaling_factor", weights.pop("scaling_factor", None))
    k = cfg.get("k", act_kw.get("k"))
    if our_arch == "batchtopk" and "threshold" not in weights:
        our_arch = "topk"  # a training checkpoint: no learned threshold yet, per-token top-k
    enc = weights.get("W_enc")
    if enc is not None and tuple(enc.shape) != (d_in, n):
        # checked before building: a config claiming d_sae=10**12 must not allocate it first
        raise DictionaryError(f"{wfile}: tensor W_enc has shape {tuple(enc.shape)} but {where} implies "
                              f"{(d_in, n)}")
    common: dict[str, Any] = dict(
        d_in=d_in, n_features=n, architecture=our_arch,
        k=int(k) if our_arch in ("topk", "batchtopk") and k is not None else None,
        rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)),
        metadata={"source_format": "saelens", "source_model": meta.get("model_name"),
                  "hook_name": hook, "saelens_architecture": arch,
                  **({"neuronpedia_id": meta["neuronpedia_id"]} if meta.get("neuronpedia_id") else {})},
        name=str(meta.get("neuronpedia_id") or f"{folder.name}"),
    )
    if kind == "sae":
        d: SAE = SAE(site=site, apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
                     **common)
    else:
        out_hook = meta.get("hook_name_out") or cfg.get("hook_name_out")
        if not out_hook:
            raise DictionaryError(f"{where}: a transcoder needs hook_name_out")
        d_out = _want(cfg, "d_out", where)
        out_site = site_from_hook(out_hook, cfg.get("hook_layer_out"))
        # SAELens transcoders never subtract b_dec (d_out-sized) from the input
        d = Transcoder(site=site, out_site=out_site, d_out=d_out, skip="W_skip" in weights,
                       apply_b_dec_to_input=False, **common)
        if "W_skip" in weights:
            weights["W_skip"] = weights["W_skip"].T  # SAELens: [d_out, d_in], x @ W_skip.T
    if fsf is not None:
        if fsf.shape != (n,):
            raise DictionaryError(
                f"{folder}/sae_weights.safetensors: finetuning scaling factor has shape "
                f"{tuple(fsf.shape)}, expected ({n},)"
            )
        if "W_dec" in weights:  # decode(f) = (f * s) @ W_dec: fold s into the rows
            weights["W_dec"] = weights["W_dec"] * fsf[:, None]
    _load_checked(d, weights, where=f"{folder}/sae_weights.safetensors", config=where)
    d.path = folder
    d.labels.update(read_labels(folder / "labels.json"))  # our addition beside SAELens' files
    return d


def save_saelens(d: SAE, folder: str | Path, *, model_name: str | None = None) -> Path:
    """Write an SAE / transcoder in SAELens' on-disk format (for use with SAELens or Neuronpedia).

        >>> save_saelens(sae, "out/my_sae")          # cfg.json + sae_weights.safetensors
        >>> sae2 = iw.load_dictionary("out/my_sae")   # round trip
        >>> # in SAELens: SAE.load_from_disk("out/my_sae")
    """
    if not isinstance(d, SAE):
        raise DictionaryError(f"only SAEs and transcoders can be written as SAELens, got {type(d).__name__}")
    folder = Path(folder)
    w = {k: v.detach().float() for k, v in d.state_dict().items()}
    if d.scaling_factor is not None:
        # ours: encode sees x*s and decode divides by s; fold s into the weights instead
        s = float(d.scaling_factor)
        w["W_enc"], w["W_dec"], w["b_dec"] = w["W_enc"] * s, w["W_dec"] / s, w["b_dec"] / s
    is_tc = isinstance(d, Transcoder)
    if d.architecture == "batchtopk":
        arch = "jumprelu"  # SAELens saves BatchTopK for inference as JumpReLU
    elif is_tc:
        if d.architecture not in ("relu", "jumprelu"):
            raise DictionaryError(
                f"SAELens has no {d.architecture} transcoder; write it in our format or as "
                f"circuit-tracer instead"
            )
        if d.architecture == "jumprelu":
            arch = "jumprelu_transcoder"
            if d.W_skip is not None:
                raise DictionaryError("SAELens has no JumpReLU transcoder with a skip connection")
        else:
            arch = "skip_transcoder" if d.W_skip is not None else "transcoder"
    else:
        arch = {"relu": "standard", "jumprelu": "jumprelu", "topk": "topk"}[d.architecture]
    if d.architecture == "topk" and not d.topk_relu:
        raise DictionaryError("SAELens' TopK always applies ReLU; this SAE keeps negative values")
    if "W_skip" in w:
        w["W_skip"] = w["W_skip"].T.contiguous()
    meta = {"model_name": model_name or d.metadata.get("model") or d.metadata.get("source_model"),
            "hook_name": hook_from_site(d.site), "sae_lens_version": "6.0.0",
            "sae_lens_training_version": "6.0.0"}
    cfg: dict[str, Any] = {
        "architecture": arch, "d_in": d.d_in, "d_sae": d.n_features, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": bool(d.apply_b_dec_to_input),
        "normalize_activations": "none", "reshape_activations": "none", "metadata": meta,
    }
    if arch == "topk":
        cfg["k"] = d.k
        cfg["rescale_acts_by_decoder_norm"] = bool(d.rescale_acts_by_decoder_norm)
    if is_tc:
        cfg["d_out"] = d.d_out
        cfg["hook_name_out"] = meta["hook_name_out"] = hook_from_site(d.out_site)
        cfg["hook_layer_out"] = d.out_site.layer
    if d.architecture == "batchtopk" and d.threshold is not None:
        w["threshold"] = d.threshold.detach().float()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(folder / "sae_weights.safetensors", w)
    atomic_write_json(folder / "cfg.json", cfg)
    return folder


# ----------------------------------------------------------------------------- circuit-tracer
def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DictionaryError(f"{path} is not valid YAML ({e}); fix or delete it") from e
    if not isinstance(data, dict):
        raise DictionaryError(f"{path} must hold a YAML mapping")
    return data


def _ct_layer_files(folder: Path, cfg: dict) -> dict[int, Path]:
    if "transcoders" in cfg:
        paths = cfg["transcoders"]
        if not isinstance(paths, list) or not all(isinstance(x, str) for x in paths):
            raise DictionaryError(f"{folder}/config.yaml: 'transcoders' must be a list of paths")
        out = {}
        for i, raw in enumerate(paths):
            if raw.startswith("hf://"):
                raise DictionaryError(
                    f"{folder}/config.yaml lists {raw}: interp_widgets does not download at run "
                    f"time; download the files and list their local paths (or layer_<i>.safetensors)"
                )
            p = Path(raw).expanduser()
            out[i] = p if p.is_absolute() else folder / p
        return out
    out = {}
    for f in folder.glob("layer_*.safetensors"):
        m = re.fullmatch(r"layer_(\d+)\.safetensors", f.name)
        if m:
            out[int(m.group(1))] = f
    if not out:
        pickles = sorted(f.name for f in folder.glob("layer_*") if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            refuse_pickle(folder / pickles[0])
        raise DictionaryError(
            f"{folder}: config.yaml lists no 'transcoders' and there are no layer_<i>.safetensors files"
        )
    return dict(sorted(out.items()))


def load_circuit_tracer(folder: str | Path) -> TranscoderSet:
    """Load a circuit-tracer per-layer transcoder set (``config.yaml`` + one file per layer).

        >>> tset = load_circuit_tracer("mwhanna-qwen3-0.6b-transcoders")
        >>> tset[3].encode(mlp_in_3)       # == circuit-tracer's activation_function(F.linear(x, W_enc, b_enc))
    """
    folder = Path(folder)
    cfg = _read_yaml(folder / "config.yaml")
    kind = cfg.get("model_kind", "transcoder_set")
    if kind != "transcoder_set":
        raise DictionaryError(
            f"{folder}/config.yaml: model_kind {kind!r} is not supported; interp_widgets reads "
            f"per-layer transcoder sets (model_kind: transcoder_set)"
        )
    in_hook = cfg.get("feature_input_hook", "mlp.hook_in")
    out_hook = cfg.get("feature_output_hook", "mlp.hook_out")
    activation = cfg.get("activation")
    files = _ct_layer_files(folder, cfg)
    tcs = {}
    for layer, f in files.items():
        where = str(f)
        w = load_safetensors(f)
        for key in ("W_enc", "W_dec", "b_enc", "b_dec"):
            if key not in w:
                raise DictionaryError(f"{where}: missing tensor {key!r} (has {', '.join(sorted(w))})")
        n, d_model = w["b_enc"].shape[0], w["b_dec"].shape[0]
        for key, want in (("W_enc", (n, d_model)), ("W_dec", (n, d_model))):
            if tuple(w[key].shape) != want:
                raise DictionaryError(
                    f"{where}: {key} has shape {tuple(w[key].shape)} but b_enc/b_dec imply "
                    f"{want} ([d_transcoder, d_model] in circuit-tracer's layout)"
                )
        thr = w.get("activation_function.threshold", w.get("threshold"))
        k_t = w.get("k", w.get("activation_function.k"))
        if activation == "topk" or k_t is not None:
            k = int(k_t.item()) if k_t is not None else cfg.get("k")
            if k is None:
                raise DictionaryError(f"{folder}/config.yaml: activation topk needs k")
            arch = "topk"
        elif thr is not None or activation in ("jumprelu", "jump_relu"):
            if thr is None:
                raise DictionaryError(f"{where}: JumpReLU transcoder without a threshold tensor")
            arch, k = "jumprelu", None
        else:
            arch, k = "relu", None
        tc = Transcoder(d_in=d_model, n_features=n, site=site_from_hook(in_hook, layer),
                        out_site=site_from_hook(out_hook, layer), skip="W_skip" in w,
                        architecture=arch, k=k, topk_relu=False,
                        metadata={"source_format": "circuit_tracer",
                                  "source_model": cfg.get("model_name")},
                        name=f"{folder.name}.{layer}")
        ours = {"W_enc": w["W_enc"].T, "W_dec": w["W_dec"], "b_enc": w["b_enc"], "b_dec": w["b_dec"]}
        if thr is not None and arch == "jumprelu":
            ours["threshold"] = thr.reshape(n)
        if "W_skip" in w:
            if tuple(w["W_skip"].shape) != (d_model, d_model):
                raise DictionaryError(
                    f"{where}: W_skip has shape {tuple(w['W_skip'].shape)}, expected {(d_model, d_model)}"
                )
            ours["W_skip"] = w["W_skip"].T  # circuit-tracer: x @ W_skip.T
        _load_checked(tc, ours, where=where, config=f"{folder}/config.yaml")
        tc.path = f
        # one labels file per layer beside circuit-tracer's files (our addition)
        tc.labels_file = folder / f"labels_layer_{layer}.json"
        tc.labels.update(read_labels(tc.labels_file))
        tcs[layer] = tc
    return TranscoderSet(tcs, name=folder.name, path=folder,
                         metadata={"source_format": "circuit_tracer",
                                   "source_model": cfg.get("model_name")})


def save_circuit_tracer(tset: TranscoderSet, folder: str | Path, *, model_name: str | None = None) -> Path:
    """Write a TranscoderSet for circuit-tracer (``config.yaml`` + ``layer_<i>.safetensors``).

    circuit-tracer needs every layer from 0 to the last; its TopK keeps the sign of the kept
    values (ours applies ReLU unless ``topk_relu=False``).

        >>> save_circuit_tracer(tset, "out/ct")
        >>> # circuit-tracer: TranscoderSet loaded from out/ct, ReplacementModel.from_pretrained_and_transcoders(...)
    """
    if not isinstance(tset, TranscoderSet):
        raise DictionaryError(f"save_circuit_tracer needs a TranscoderSet, got {type(tset).__name__}")
    layers = tset.layers
    if layers != list(range(len(layers))):
        raise DictionaryError(
            f"circuit-tracer needs transcoders for every layer 0-{max(layers)}; {tset.name} has "
            f"layers {layers}"
        )
    archs = {tc.architecture for tc in tset.transcoders.values()}
    if len(archs) != 1 or not archs <= {"relu", "jumprelu", "topk"}:
        raise DictionaryError(f"circuit-tracer sets need one of relu/jumprelu/topk, got {sorted(archs)}")
    arch = archs.pop()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ks = set()
    for layer, tc in tset.transcoders.items():
        if not isinstance(tc, Transcoder) or tc.apply_b_dec_to_input or tc.scaling_factor is not None \
                or tc.rescale_acts_by_decoder_norm:
            raise DictionaryError(
                f"layer {layer}: only plain transcoders (no input b_dec, scaling or decoder-norm "
                f"rescaling) can be written for circuit-tracer"
            )
        if tc.site.name != "mlp_in" or tc.out_site is None or tc.out_site.name != "mlp_out":
            raise DictionaryError(f"layer {layer}: circuit-tracer transcoders read mlp_in and write mlp_out")
        out = {"W_enc": tc.W_enc.detach().float().T.contiguous(), "W_dec": tc.W_dec.detach().float(),
               "b_enc": tc.b_enc.detach().float(), "b_dec": tc.b_dec.detach().float()}
        if arch == "jumprelu":
            out["activation_function.threshold"] = tc.threshold.detach().float()
        if arch == "topk":
            ks.add(int(tc.k))
            out["k"] = torch.tensor(int(tc.k))
        if tc.W_skip is not None:
            out["W_skip"] = tc.W_skip.detach().float().T.contiguous()
        atomic_save_safetensors(folder / f"layer_{layer}.safetensors", out)
    cfg = {"model_name": model_name or tset.metadata.get("model") or tset.metadata.get("source_model")
           or "unknown", "model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in",
           "feature_output_hook": "mlp.hook_out"}
    if arch == "topk":
        cfg["activation"] = "topk"
        if len(ks) == 1:
            cfg["k"] = ks.pop()
    elif arch == "relu":
        cfg["activation"] = "relu"
    import yaml

    atomic_write_text(folder / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    return folder


# ----------------------------------------------------------------------------- helpers
def _load_checked(d: Dictionary, weights: dict[str, Tensor], *, where: str, config: str) -> None:
    load_state(d, weights, where=where, config=config)


__all__ = [
    "FORMATS", "detect_format", "load_dictionary", "load_transcoders", "load_saelens",
    "load_circuit_tracer", "save_saelens", "save_circuit_tracer", "site_from_hook",
    "hook_from_site", "starter_dir", "check_against_model",
]
