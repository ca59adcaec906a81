"""Feature activations of one or more dictionaries over prompts (the activation panel's data).

One nnsight trace per batch reads every site the dictionaries need (the forward stops after the
last one), then each dictionary encodes the real tokens. Results are stored sparsely per token
and do not depend on batch composition or padding (prompts are right-padded, so real tokens see
exactly what they would see alone).

    >>> acts = iw.feature_activations(model, [sae, tset], ["The Eiffel Tower is in Paris"])
    >>> acts.top_features(-1, k=5)            # strongest features at the last token
    >>> acts.top_tokens(sae[123], k=10)       # where feature 123 fires most

Attention sinks: position 0 of every prompt is marked a sink (in SmolLM2 its residual norm is
~24,000 against ~150 elsewhere, and circuit-tracer also drops it), and so is any token whose
residual norm is more than ``sink_ratio`` (default 10) times the median norm of the prompt's
other tokens. Sinks keep their activations (marked ``is_sink``) but are left out of
``top_tokens``, ``max_per_feature`` and the reconstruction statistics unless asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..dictionaries.base import DEFAULT_SINK_RATIO, flatten_dictionaries, mark_sinks
from ..errors import DictionaryError, FeatureError, PromptError
from ..files import atomic_save_safetensors, atomic_write_json, load_safetensors, read_json
from ..models.sites import Site

SINK_RULE = ("position 0, or residual norm > {ratio:g} x the median norm of the prompt's "
             "other tokens (at {site})")


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Reconstruction:
    """How well one dictionary reconstructs its target on the non-sink tokens of one call.

    ``fvu``: fraction of variance unexplained, ``sum|y - y_hat|^2 / sum|y - mean(y)|^2``;
    ``mse``: mean squared error per element; ``error_norm``: mean per-token ``|y - y_hat|``;
    ``relative_error``: ``sqrt(sum|y - y_hat|^2 / sum|y|^2)``; ``l0``: mean active features per
    token. The target ``y`` is the input site for SAEs and ``mlp_out`` for transcoders.
    """

    dictionary: str
    site: str
    n_tokens: int
    fvu: float
    mse: float
    error_norm: float
    relative_error: float
    l0: float

    def __repr__(self) -> str:
        return (f"Reconstruction({self.dictionary} -> {self.site}: FVU {self.fvu:.4g}, "
                f"error norm {self.error_norm:.4g}, L0 {self.l0:.1f}, {self.n_tokens} tokens)")


@dataclass(frozen=True, eq=False)
class SparseActivations:
    """Activations of one dictionary in CSR form over all tokens of a call.

    Token ``t``'s active features are ``features[indptr[t]:indptr[t + 1]]`` with ``values`` at
    the same slice (``int64`` / ``int32`` / ``float32`` numpy arrays).
    """

    indptr: np.ndarray
    features: np.ndarray
    values: np.ndarray
    n_features: int

    @property
    def n_tokens(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.features.shape[0])

    def row(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[t]), int(self.indptr[t + 1])
        return self.features[a:b], self.values[a:b]

    def dense(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Dense ``[stop - start, n_features]`` float32 block of tokens ``start:stop``."""
        stop = self.n_tokens if stop is None else stop
        out = np.zeros((stop - start, self.n_features), dtype=np.float32)
        a, b = int(self.indptr[start]), int(self.indptr[stop])
        rows = np.repeat(np.arange(stop - start), np.diff(self.indptr[start:stop + 1]))
        out[rows, self.features[a:b]] = self.values[a:b]
        return out

    def to_torch(self) -> Tensor:
        """A ``torch.sparse_csr_tensor`` ``[n_tokens, n_features]``."""
        return torch.sparse_csr_tensor(torch.from_numpy(self.indptr), torch.from_numpy(
            self.features.astype(np.int64)), torch.from_numpy(self.values),
            size=(self.n_tokens, self.n_features))

    def column(self, feature: int) -> np.ndarray:
        """Dense ``[n_tokens]`` activations of one feature."""
        out = np.zeros(self.n_tokens, dtype=np.float32)
        hit = np.nonzero(self.features == feature)[0]
        if hit.size:
            rows = np.searchsorted(self.indptr, hit, side="right") - 1
            out[rows] = self.values[hit]
        return out


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True, repr=False, eq=False)
class FeatureActivations:
    """Per-token sparse feature activations of several dictionaries over several prompts.

    Tokens of all prompts are numbered in one flat index (prompt 0 first); ``prompt_index`` /
    ``position`` map a flat index back. ``dictionaries`` maps each name to its dictionary.

        >>> acts.str_tokens[0], acts.is_sink[0]         # tokens of prompt 0 and sink marks
        >>> acts.feature_values(sae[5], prompt=0)        # dense activation per token (panel colours)
        >>> acts.to_pandas()                             # prompt, position, token, dictionary, feature, ...
    """

    model_name: str
    prompts: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    str_tokens: tuple[tuple[str, ...], ...]
    is_sink: tuple[tuple[bool, ...], ...]
    dictionary_names: tuple[str, ...]
    sparse: Mapping[str, SparseActivations]
    reconstruction: Mapping[str, Reconstruction]
    sites: Mapping[str, str]
    sink_rule: str
    dictionaries: Mapping[str, Any] = field(default_factory=dict)

    # -------------------------------------------------------------- shape of the data
    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def tokens(self) -> tuple[tuple[str, ...], ...]:
        """Same as ``str_tokens``: each prompt's tokens as the model sees them."""
        return self.str_tokens

    @property
    def positions(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(range(len(t))) for t in self.token_ids)

    @property
    def offsets(self) -> np.ndarray:
        """``[n_prompts + 1]``: prompt ``p``'s tokens are flat indices ``offsets[p]:offsets[p+1]``."""
        return np.concatenate([[0], np.cumsum([len(t) for t in self.token_ids])]).astype(np.int64)

    @property
    def prompt_index(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_prompts), [len(t) for t in self.token_ids])

    @property
    def position(self) -> np.ndarray:
        return np.concatenate([np.arange(len(t)) for t in self.token_ids]).astype(np.int64)

    @property
    def sink_mask(self) -> np.ndarray:
        """Flat ``[n_tokens]`` bool array of sink marks."""
        return np.array([s for row in self.is_sink for s in row], dtype=bool)

    @property
    def fvu(self) -> dict[str, float]:
        return {k: r.fvu for k, r in self.reconstruction.items()}

    def token_index(self, position: int, prompt: int = 0) -> int:
        """Flat index of ``(prompt, position)``; negative positions count from the end."""
        p = self._check_prompt(prompt)
        n = len(self.token_ids[p])
        pos = position + n if position < 0 else position
        if not 0 <= pos < n:
            raise PromptError(f"position {position} is outside prompt {p}, which has tokens 0-{n - 1}")
        return int(self.offsets[p] + pos)

    # -------------------------------------------------------------- lookups
    def _check_prompt(self, prompt: int) -> int:
        if isinstance(prompt, bool) or not isinstance(prompt, (int, np.integer)):
            raise PromptError(f"prompt must be an index (int), got {type(prompt).__name__}")
        p = int(prompt) + (self.n_prompts if prompt < 0 else 0)
        if not 0 <= p < self.n_prompts:
            raise PromptError(f"prompt {prompt} does not exist: there are prompts 0-{self.n_prompts - 1}")
        return p

    def _dict_name(self, dictionary: Any = None) -> str:
        if dictionary is None:
            if len(self.dictionary_names) == 1:
                return self.dictionary_names[0]
            raise DictionaryError(
                f"this result holds several dictionaries; pass dictionary= one of "
                f"{', '.join(self.dictionary_names)}"
            )
        if isinstance(dictionary, str):
            if dictionary in self.sparse:
                return dictionary
        else:
            for name, d in self.dictionaries.items():
                if d is dictionary:
                    return name
        raise DictionaryError(
            f"dictionary {getattr(dictionary, 'name', dictionary)!r} is not in this result: "
            f"available: {', '.join(self.dictionary_names)}"
        )

    def feature_ref(self, feature: Any) -> tuple[str, int]:
        """``(dictionary name, index)`` for a Feature, ``(name, index)``, ``"name#index"`` or an int."""
        if isinstance(feature, tuple) and len(feature) == 2:
            name, idx = self._dict_name(feature[0]), feature[1]
        elif isinstance(feature, str) and "#" in feature:
            head, _, tail = feature.rpartition("#")
            try:
                idx = int(tail)
            except ValueError as e:
                raise FeatureError(f"cannot read a feature id from {feature!r}: write 'name#123'") from e
            name = self._dict_name(head)
        elif isinstance(feature, (int, np.integer)) and not isinstance(feature, bool):
            name, idx = self._dict_name(None), int(feature)
        elif hasattr(feature, "dictionary") and hasattr(feature, "index"):
            name, idx = self._dict_name(feature.dictionary), feature.index
        else:
            raise FeatureError(
                f"cannot use {feature!r} as a feature: pass dictionary[i], (name, i), 'name#i' or an int"
            )
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise FeatureError(f"feature id must be an int, got {type(idx).__name__} {idx!r}")
        n = self.sparse[name].n_features
        if not 0 <= int(idx) < n:
            raise FeatureError(f"feature {idx} is out of range for {name}: ids are 0-{n - 1}")
        return name, int(idx)

    def _label(self, name: str, idx: int) -> str:
        d = self.dictionaries.get(name)
        return getattr(d, "labels", {}).get(idx, "") if d is not None else ""

    # -------------------------------------------------------------- queries
    def feature_values(self, feature: Any, prompt: int = 0) -> np.ndarray:
        """Dense ``[n_tokens_of_prompt]`` float32 activations of one feature (colours the tokens)."""
        name, idx = self.feature_ref(feature)
        p = self._check_prompt(prompt)
        sp = self.sparse[name]
        a, b = int(self.offsets[p]), int(self.offsets[p + 1])
        lo, hi = int(sp.indptr[a]), int(sp.indptr[b])
        out = np.zeros(b - a, dtype=np.float32)
        hit = np.nonzero(sp.features[lo:hi] == idx)[0] + lo
        if hit.size:
            rows = np.searchsorted(sp.indptr, hit, side="right") - 1 - a
            out[rows] = sp.values[hit]
        return out

    def dense(self, dictionary: Any = None, prompt: int = 0) -> Tensor:
        """Dense ``[n_tokens_of_prompt, n_features]`` activations of one dictionary."""
        name = self._dict_name(dictionary)
        p = self._check_prompt(prompt)
        return torch.from_numpy(self.sparse[name].dense(int(self.offsets[p]), int(self.offsets[p + 1])))

    def top_features(self, position: int, k: int = 10, *, prompt: int = 0,
                     dictionary: Any = None) -> Any:
        """The ``k`` strongest features at one token (all dictionaries unless one is named).

        Returns a DataFrame: dictionary, feature, activation, label (sorted, strongest first).
        """
        import pandas as pd

        t = self.token_index(position, prompt)
        names = self.dictionary_names if dictionary is None else (self._dict_name(dictionary),)
        rows = []
        for name in names:
            feats, vals = self.sparse[name].row(t)
            for f, v in zip(feats.tolist(), vals.tolist(), strict=True):
                rows.append((name, f, v))
        rows.sort(key=lambda r: -r[2])
        rows = rows[: max(int(k), 0)]
        return pd.DataFrame({
            "dictionary": [r[0] for r in rows], "feature": [r[1] for r in rows],
            "activation": np.array([r[2] for r in rows], dtype=np.float32),
            "label": [self._label(r[0], r[1]) for r in rows],
        })

    def top_tokens(self, feature: Any, k: int = 10, *, include_sinks: bool = False) -> Any:
        """The ``k`` tokens where a feature is most active: DataFrame prompt, position, token,
        activation, is_sink (sinks left out unless ``include_sinks``)."""
        import pandas as pd

        name, idx = self.feature_ref(feature)
        col = self.sparse[name].column(idx)
        ok = np.ones_like(col, dtype=bool) if include_sinks else ~self.sink_mask
        cand = np.nonzero(ok & (col != 0))[0]
        order = cand[np.argsort(-col[cand], kind="stable")][: max(int(k), 0)]
        pi, pos = self.prompt_index[order], self.position[order]
        return pd.DataFrame({
            "prompt": pi, "position": pos,
            "token": [self.str_tokens[p][q] for p, q in zip(pi, pos, strict=True)],
            "activation": col[order], "is_sink": self.sink_mask[order],
        })

    def max_per_feature(self, dictionary: Any = None, *, include_sinks: bool = False) -> np.ndarray:
        """``[n_features]`` float32: each feature's largest activation over the (non-sink) tokens."""
        name = self._dict_name(dictionary)
        sp = self.sparse[name]
        out = np.zeros(sp.n_features, dtype=np.float32)
        vals, feats = sp.values, sp.features
        if not include_sinks:
            keep = np.repeat(~self.sink_mask, np.diff(sp.indptr))
            vals, feats = vals[keep], feats[keep]
        if vals.size:
            out[:] = -np.inf
            np.maximum.at(out, feats, vals)
            out[~np.isfinite(out)] = 0.0
        return out

    def quality(self) -> Any:
        """Reconstruction quality per dictionary as a DataFrame."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.reconstruction.values()])

    def token_table(self) -> Any:
        """One row per token: prompt, position, token, token_id, is_sink."""
        import pandas as pd

        return pd.DataFrame({
            "prompt": self.prompt_index, "position": self.position,
            "token": [s for row in self.str_tokens for s in row],
            "token_id": [i for row in self.token_ids for i in row], "is_sink": self.sink_mask,
        })

    def to_pandas(self, *, include_sinks: bool = True, dictionary: Any = None) -> Any:
        """Long format, one row per non-zero activation: prompt, position, token, dictionary,
        feature, activation, label, is_sink."""
        import pandas as pd

        names = self.dictionary_names if dictionary is None else (self._dict_name(dictionary),)
        toks = np.array([s for row in self.str_tokens for s in row], dtype=object)
        frames = []
        for name in names:
            sp = self.sparse[name]
            tok = np.repeat(np.arange(self.n_tokens), np.diff(sp.indptr))
            if not include_sinks:
                keep = ~self.sink_mask[tok]
                tok, feats, vals = tok[keep], sp.features[keep], sp.values[keep]
            else:
                feats, vals = sp.features, sp.values
            labels = self.dictionaries.get(name)
            labels = getattr(labels, "labels", {}) or {}
            frames.append(pd.DataFrame({
                "prompt": self.prompt_index[tok], "position": self.position[tok], "token": toks[tok],
                "dictionary": name, "feature": feats.astype(np.int64), "activation": vals,
                "label": [labels.get(int(f), "") for f in feats] if labels else "",
                "is_sink": self.sink_mask[tok],
            }))
        if not frames:
            return pd.DataFrame(columns=["prompt", "position", "token", "dictionary", "feature",
                                         "activation", "label", "is_sink"])
        return pd.concat(frames, ignore_index=True)

    # -------------------------------------------------------------- persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``activations.safetensors`` (the CSR arrays) + ``activations.json`` (tokens,
        sinks, sites, quality, a snapshot of the labels), atomically.

            >>> acts.save("runs/paris")
            >>> again = FeatureActivations.load("runs/paris")
        """
        folder = Path(folder)
        tensors = {}
        for i, name in enumerate(self.dictionary_names):
            sp = self.sparse[name]
            tensors[f"{i}.indptr"] = torch.from_numpy(sp.indptr)
            tensors[f"{i}.features"] = torch.from_numpy(sp.features)
            tensors[f"{i}.values"] = torch.from_numpy(sp.values)
        atomic_save_safetensors(folder / "activations.safetensors", tensors)
        meta = {
            "format": "interp_widgets.feature_activations", "version": 1,
            "model_name": self.model_name, "prompts": list(self.prompts),
            "token_ids": [list(t) for t in self.token_ids],
            "str_tokens": [list(t) for t in self.str_tokens],
            "is_sink": [list(t) for t in self.is_sink],
            "dictionaries": [
                {"name": n, "site": self.sites[n], "n_features": self.sparse[n].n_features,
                 "labels": {str(k): v for k, v in
                            (getattr(self.dictionaries.get(n), "labels", {}) or {}).items()}}
                for n in self.dictionary_names],
            "reconstruction": {n: r.__dict__ for n, r in self.reconstruction.items()},
            "sink_rule": self.sink_rule,
        }
        atomic_write_json(folder / "activations.json", meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path, dictionaries: Mapping[str, Any] | None = None) -> FeatureActivations:
        """Read a saved result. Pass ``dictionaries={name: dictionary}`` to reattach live
        dictionaries (labels, Feature objects); otherwise the saved label snapshot is used."""
        folder = Path(folder)
        meta = read_json(folder / "activations.json", "saved activations")
        if not isinstance(meta, dict) or meta.get("format") != "interp_widgets.feature_activations":
            raise DictionaryError(f"{folder}/activations.json is not a saved FeatureActivations")
        arrays = load_safetensors(folder / "activations.safetensors")
        names = [d["name"] for d in meta["dictionaries"]]
        n_tokens = sum(len(t) for t in meta["token_ids"])
        sparse, dicts = {}, {}
        for i, d in enumerate(meta["dictionaries"]):
            try:
                sp = SparseActivations(arrays[f"{i}.indptr"].numpy(), arrays[f"{i}.features"].numpy(),
                                       arrays[f"{i}.values"].numpy(), int(d["n_features"]))
            except KeyError as e:
                raise DictionaryError(f"{folder}/activations.safetensors lacks {e}: the save is incomplete") from e
            if sp.n_tokens != n_tokens:
                raise DictionaryError(
                    f"{folder}: {d['name']} has {sp.n_tokens} token rows but the tokens list {n_tokens}")
            sparse[d["name"]] = sp
            live = (dictionaries or {}).get(d["name"])
            dicts[d["name"]] = live if live is not None else SimpleNamespace(
                name=d["name"], n_features=int(d["n_features"]),
                labels={int(k): v for k, v in d.get("labels", {}).items()})
        return cls(
            model_name=meta["model_name"], prompts=tuple(meta["prompts"]),
            token_ids=tuple(tuple(t) for t in meta["token_ids"]),
            str_tokens=tuple(tuple(t) for t in meta["str_tokens"]),
            is_sink=tuple(tuple(bool(x) for x in t) for t in meta["is_sink"]),
            dictionary_names=tuple(names), sparse=sparse,
            reconstruction={n: Reconstruction(**r) for n, r in meta["reconstruction"].items()},
            sites={d["name"]: d["site"] for d in meta["dictionaries"]},
            sink_rule=meta["sink_rule"], dictionaries=dicts,
        )

    def __repr__(self) -> str:
        n_sink = int(self.sink_mask.sum())
        parts = []
        for name in self.dictionary_names:
            r = self.reconstruction.get(name)
            q = f"L0 {r.l0:.1f}, FVU {r.fvu:.3g}" if r is not None else ""
            parts.append(f"{name} @ {self.sites[name]} [{q}]")
        return (f"FeatureActivations({self.model_name}: {self.n_prompts} prompt(s), {self.n_tokens} "
                f"tokens ({n_sink} sink), dictionaries: {'; '.join(parts)})")


# ----------------------------------------------------------------------------- computing
def _device_of(d: Any) -> torch.device:
    w = getattr(d, "W_dec", None)
    return w.device if isinstance(w, Tensor) else torch.device("cpu")


def _sink_site(sites: list[Site], n_layers: int) -> Site:
    """The residual site whose norms mark sinks: the deepest one read, else resid_post there."""
    layered = [s for s in sites if s.layer is not None]
    resid = [s for s in layered if s.name.startswith("resid_")]
    if resid:
        return max(resid, key=lambda s: s.order_key)
    layer = max((s.layer for s in layered), default=0)
    return Site("resid_post", min(int(layer), n_layers - 1))


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


@torch.no_grad()
def feature_activations(model: Any, dictionaries: Any, prompts: str | Sequence[str], *,
                        batch_size: int = 8, sink_ratio: float = DEFAULT_SINK_RATIO,
                        check_name: bool = True, progress: bool | None = None) -> FeatureActivations:
    """Activations of every feature of ``dictionaries`` on every token of ``prompts``.

    ``dictionaries``: an SAE / Transcoder / NeuronBasis / Direction, a TranscoderSet (one
    dictionary per layer), a list of those, or ``{name: dictionary}``. One nnsight trace per
    batch of ``batch_size`` prompts reads all their sites at once (and stops the forward after
    the last one); works with ``remote="local"`` / ``True`` models (only activations travel).

        >>> acts = feature_activations(model, iw.load_transcoders("starter"), prompts)
        >>> acts.top_features(-1, prompt=0)
        >>> acts.quality()            # FVU / error norm per dictionary on this call
    """
    prompts = model.check_prompts(prompts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PromptError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(sink_ratio, (int, float)) and sink_ratio > 1):
        raise PromptError(f"sink_ratio must be a number > 1, got {sink_ratio!r}")
    dicts = flatten_dictionaries(dictionaries)
    for d in dicts.values():
        if hasattr(d, "check_model"):
            d.check_model(model, check_name=check_name)
    in_site = {n: model.site(d.site) for n, d in dicts.items()}
    out_site = {n: (model.site(d.out_site) if getattr(d, "out_site", None) is not None else in_site[n])
                for n, d in dicts.items()}
    needed = sorted(set(in_site.values()) | set(out_site.values()), key=lambda s: s.order_key)
    sink_site = _sink_site(needed, model.n_layers)
    read = sorted(set(needed) | {sink_site}, key=lambda s: s.order_key)

    toks = model.tokenize(prompts)  # right padding; raises PromptError for over-long prompts
    lengths = toks.lengths
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # similar lengths batch together
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    per_prompt: list[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = [{} for _ in prompts]
    sinks: list[list[bool]] = [[] for _ in prompts]
    stats = {n: {"sse": 0.0, "ssy": 0.0, "sy": None, "n": 0, "enorm": 0.0, "l0": 0, "d": 0} for n in dicts}
    show = progress if progress is not None else len(batches) > 4
    from tqdm.auto import tqdm

    for batch in tqdm(batches, desc="feature activations", unit="batch", disable=not show):
        width = max(lengths[i] for i in batch)
        ids = toks.input_ids[batch, :width]
        mask = toks.attention_mask[batch, :width]
        saved: dict[str, Any] = {}
        with model.trace({"input_ids": ids, "attention_mask": mask}) as tracer:
            for s in read:
                saved[str(s)] = model.read(s).save()
            tracer.stop()  # nothing after the last site is needed: skip the rest of the forward
        real = mask.bool()
        acts_of = {k: _value(v)[real] for k, v in saved.items()}  # [n_real, d], row by row
        n_per = [lengths[i] for i in batch]
        starts = np.concatenate([[0], np.cumsum(n_per)])
        norms = acts_of[str(sink_site)].float().norm(dim=-1)
        batch_sink = []
        for j, i in enumerate(batch):
            sinks[i] = mark_sinks(norms[starts[j]:starts[j + 1]], float(sink_ratio))
            batch_sink += sinks[i]
        keep = ~torch.tensor(batch_sink, dtype=torch.bool)
        for name, d in dicts.items():
            dev = _device_of(d)
            x = acts_of[str(in_site[name])].to(dev)
            f = d.encode(x)
            recon = d.decode(f)
            if getattr(d, "W_skip", None) is not None:
                recon = recon + d.skip(x)
            y = acts_of[str(out_site[name])].to(dev)
            _accumulate(stats[name], y, recon, f, keep.to(dev))
            f = f.float().cpu()
            rows, cols = torch.nonzero(f, as_tuple=True)
            vals = f[rows, cols].numpy().astype(np.float32, copy=False)
            counts = torch.bincount(rows, minlength=f.shape[0]).numpy()
            cols = cols.numpy().astype(np.int32)
            nnz_starts = np.concatenate([[0], np.cumsum(counts)])
            for j, i in enumerate(batch):
                a, b = starts[j], starts[j + 1]
                lo, hi = nnz_starts[a], nnz_starts[b]
                per_prompt[i][name] = (counts[a:b], cols[lo:hi], vals[lo:hi])

    sparse = {}
    for name, d in dicts.items():
        counts = np.concatenate([per_prompt[i][name][0] for i in range(len(prompts))])
        sparse[name] = SparseActivations(
            indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            features=np.concatenate([per_prompt[i][name][1] for i in range(len(prompts))]),
            values=np.concatenate([per_prompt[i][name][2] for i in range(len(prompts))]),
            n_features=int(d.n_features),
        )
    token_ids = tuple(tuple(int(t) for t in toks.input_ids[i, :lengths[i]].tolist())
                      for i in range(len(prompts)))
    tok = model.tokenizer
    str_tokens = tuple(tuple(tok.batch_decode([[t] for t in row])) if row else () for row in token_ids)
    return FeatureActivations(
        model_name=model.name, prompts=tuple(prompts), token_ids=token_ids, str_tokens=str_tokens,
        is_sink=tuple(tuple(s) for s in sinks), dictionary_names=tuple(dicts),
        sparse=sparse, reconstruction={n: _finish(n, str(out_site[n]), st) for n, st in stats.items()},
        sites={n: str(in_site[n]) for n in dicts},
        sink_rule=SINK_RULE.format(ratio=float(sink_ratio), site=sink_site), dictionaries=dicts,
    )


def _accumulate(st: dict, y: Tensor, recon: Tensor, f: Tensor, keep: Tensor) -> None:
    y, recon = y[keep].double(), recon[keep].double()
    err = y - recon
    st["sse"] += float((err ** 2).sum())
    st["ssy"] += float((y ** 2).sum())
    sy = y.sum(0)
    st["sy"] = sy if st["sy"] is None else st["sy"] + sy
    st["n"] += int(keep.sum())
    st["enorm"] += float(err.norm(dim=-1).sum())
    st["l0"] += int((f[keep] != 0).sum())
    st["d"] = int(y.shape[-1])


def _finish(name: str, site: str, st: dict) -> Reconstruction:
    n = st["n"]
    if n == 0:
        nan = float("nan")
        return Reconstruction(name, site, 0, nan, nan, nan, nan, nan)
    mean_sq = float((st["sy"] / n).pow(2).sum())
    var = st["ssy"] - n * mean_sq
    return Reconstruction(
        dictionary=name, site=site, n_tokens=n,
        fvu=st["sse"] / var if var > 0 else float("nan"),
        mse=st["sse"] / (n * st["d"]), error_norm=st["enorm"] / n,
        relative_error=(st["sse"] / st["ssy"]) ** 0.5 if st["ssy"] > 0 else float("nan"),
        l0=st["l0"] / n,
    )


__all__ = ["feature_activations", "FeatureActivations", "SparseActivations", "Reconstruction",
           "DEFAULT_SINK_RATIO"]
