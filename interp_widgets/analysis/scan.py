"""Corpus scans: stream text through the model and index what every feature responds to.

``scan`` runs batches of a :class:`~interp_widgets.corpus.Corpus` through nnsight traces (each
trace stops after the last site it needs) and keeps, per feature, in bounded memory:

- the top-k activating contexts (one per sequence, with the window of activations around the max),
- a histogram of its non-zero activations, its firing density and its mean activation.

The result, a :class:`FeatureIndex`, saves to safetensors + JSON and reloads; a scan saves a
checkpoint as it goes and resumes after an interrupt.

    >>> index = iw.scan(model, sae, iw.Corpus.default(), max_tokens=50_000)
    >>> index.top_examples(123, k=5)[0].tokens        # the context around the strongest activation
    >>> index.density(123), index.mean_activation(123), index.histogram(123)

Position 0 (the attention sink of SmolLM2-like models) is never counted.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..corpus import Corpus
from ..dictionaries.base import flatten_dictionaries
from ..dictionaries.train import read_sites
from ..errors import CorpusError, DictionaryError, FeatureError, GraphError, MemoryBudgetError
from ..files import atomic_save_safetensors, atomic_write_json, load_safetensors, read_json

#: log10 bin edges used while scanning (fine, global); saved histograms are rebinned per feature
_LOG_LO, _LOG_HI, _LOG_BINS = -4.0, 5.0, 180
HIST_BINS = 16
DATA_INDEX = Path(__file__).resolve().parents[1] / "data" / "starter" / "index"


@dataclass(frozen=True)
class TopExample:
    """One top-activating context of a feature (a row of :meth:`FeatureIndex.top_examples`)."""

    tokens: list[str]
    activations: list[float]
    max_position: int  # index of the max inside ``tokens``
    activation: float
    source: str
    sequence: int
    position: int  # position of the max inside the scanned sequence

    def as_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "activations": self.activations, "max_position": self.max_position,
                "activation": self.activation, "source": self.source}

    def __repr__(self) -> str:
        text = "".join(f"[[{t}]]" if i == self.max_position else t for i, t in enumerate(self.tokens))
        return f"TopExample({self.activation:.3g}, {text!r})"


@dataclass(frozen=True, eq=False)
class FeatureIndex:
    """Per-feature evidence from a corpus scan (one dictionary).

    Tensors: ``top_seq/top_pos [n, k]`` (where each example's max is), ``top_act [n, k]``,
    ``top_window [n, k, w]`` (activations around the max, relative to ``top_act``),
    ``hist_counts [n, bins]`` over ``[0, max_act]``, ``fired [n]``, ``act_sum [n]``; ``tokens
    [n_seq, seq_len]`` are the scanned token ids, ``vocab`` maps the ids used to strings.
    """

    name: str
    site: str
    n_features: int
    n_tokens: int
    tokens: Tensor
    vocab: dict[int, str]
    top_seq: Tensor
    top_pos: Tensor
    top_act: Tensor
    top_window: Tensor
    hist_counts: Tensor
    max_act: Tensor
    fired: Tensor
    act_sum: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    # -------------------------------------------------------------- queries
    def _check(self, feature: int) -> int:
        if isinstance(feature, bool) or not isinstance(feature, int):
            raise FeatureError(f"feature must be an int, got {type(feature).__name__} {feature!r}")
        if not 0 <= feature < self.n_features:
            raise FeatureError(f"feature {feature} is out of range for index {self.name!r}: "
                               f"ids are 0-{self.n_features - 1}")
        return feature

    @property
    def window(self) -> int:
        return int(self.top_window.shape[-1])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    def window_start(self, pos: int) -> int:
        return _window_start(pos, self.window, self.seq_len)

    def top_examples(self, feature: int, k: int | None = None) -> list[TopExample]:
        """The strongest contexts (one per scanned sequence), strongest first."""
        f = self._check(feature)
        k = self.top_act.shape[1] if k is None else min(int(k), self.top_act.shape[1])
        rows = []
        for j in range(k):
            act = float(self.top_act[f, j])
            if act <= 0:
                break
            seq, pos = int(self.top_seq[f, j]), int(self.top_pos[f, j])
            start = self.window_start(pos)
            ids = self.tokens[seq, start:start + self.window].tolist()
            rel = self.top_window[f, j].float()
            rel = rel / 255.0 if self.top_window.dtype == torch.uint8 else rel
            rows.append(TopExample(
                tokens=[self.vocab.get(int(i), f"<{int(i)}>") for i in ids],
                activations=[round(float(v) * act, 4) for v in rel[: len(ids)]],
                max_position=pos - start, activation=act,
                source=f"{self.meta.get('corpus', 'corpus')} seq {seq}", sequence=seq, position=pos))
        return rows

    def histogram(self, feature: int) -> tuple[list[float], list[int]]:
        """``(bin_edges, counts)`` of the feature's non-zero activations (linear bins to its max)."""
        f = self._check(feature)
        mx = float(self.max_act[f])
        nb = self.hist_counts.shape[1]
        edges = [mx * i / nb for i in range(nb + 1)]
        return edges, [int(c) for c in self.hist_counts[f]]

    def density(self, feature: int) -> float:
        """Fraction of scanned tokens (position 0 excluded) where the feature is active."""
        return float(self.fired[self._check(feature)]) / max(self.n_tokens, 1)

    def mean_activation(self, feature: int) -> float:
        """Mean activation over the tokens where the feature fires (0 if it never does)."""
        f = self._check(feature)
        n = float(self.fired[f])
        return float(self.act_sum[f]) / n if n else 0.0

    def max_activation(self, feature: int) -> float:
        return float(self.max_act[self._check(feature)])

    @property
    def live(self) -> Tensor:
        """Ids of the features that fired at least once in the scan."""
        return torch.nonzero(self.fired > 0).flatten()

    def to_pandas(self) -> Any:
        """One row per feature: density, mean / max activation, firing count, top token."""
        import pandas as pd

        top_tok = []
        for f in range(self.n_features):
            if float(self.top_act[f, 0]) > 0:
                top_tok.append(self.vocab.get(int(self.tokens[int(self.top_seq[f, 0]), int(self.top_pos[f, 0])]), ""))
            else:
                top_tok.append("")
        fired = self.fired.double()
        return pd.DataFrame({
            "feature": range(self.n_features),
            "density": (fired / max(self.n_tokens, 1)).numpy(),
            "mean_activation": torch.where(fired > 0, self.act_sum.double() / fired.clamp_min(1), 0).numpy(),
            "max_activation": self.max_act.double().numpy(),
            "n_fired": self.fired.numpy(),
            "top_token": top_tok,
        })

    def __repr__(self) -> str:
        live = int((self.fired > 0).sum())
        return (f"FeatureIndex({self.name!r}, site={self.site}, features={self.n_features}, "
                f"live={live}, tokens={self.n_tokens:,}, top_k={self.top_act.shape[1]}, window={self.window})")

    # -------------------------------------------------------------- save / load
    def _arrays(self) -> dict[str, Tensor]:
        return {"top_seq": self.top_seq.to(torch.int32), "top_pos": self.top_pos.to(torch.int16),
                "top_act": self.top_act.to(torch.float32), "top_window": self.top_window,
                "hist_counts": self.hist_counts.to(torch.int32), "max_act": self.max_act.to(torch.float32),
                "fired": self.fired.to(torch.int32), "act_sum": self.act_sum.to(torch.float32)}

    def _header(self) -> dict[str, Any]:
        return {"format": "interp_widgets.feature_index", "version": 1, "name": self.name,
                "site": self.site, "n_features": self.n_features, "n_tokens": self.n_tokens,
                "meta": self.meta}

    def save(self, path: str | Path) -> Path:
        """Save to a folder: ``index.json`` + ``index.safetensors`` + ``vocab.json``."""
        return save_index_set(path, {"index": self})  # a set of one, under the stem load() defaults to

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> FeatureIndex:
        """Load a saved index (a folder from ``save``), or ``name`` from a ``save_index_set`` folder."""
        folder = Path(path)
        stem = "index" if name is None else _safe_name(name)
        head = read_json(folder / f"{stem}.json", "feature index header")
        if not isinstance(head, dict) or head.get("format") != "interp_widgets.feature_index":
            raise DictionaryError(f"{folder / (stem + '.json')} is not a FeatureIndex header")
        arrays = load_safetensors(folder / f"{stem}.safetensors")
        tokens = load_safetensors(folder / "tokens.safetensors")["tokens"].long()
        # the header names the token table its examples point into (older saves have none and load as before)
        if "tokens_sha" in head and head["tokens_sha"] != _tokens_sha(tokens):
            raise DictionaryError(
                f"{folder / (stem + '.json')} belongs to another scan than {folder / 'tokens.safetensors'} "
                f"(a save that was interrupted, or two scans saved into one folder): scan again and "
                f"save the whole set with save_index_set, or save each scan in its own folder")
        vocab = {int(k): v for k, v in read_json(folder / "vocab.json", "index vocabulary").items()}
        missing = {"top_seq", "top_pos", "top_act", "top_window", "hist_counts", "max_act", "fired",
                   "act_sum"} - set(arrays)
        if missing:
            raise DictionaryError(f"{folder}/{stem}.safetensors lacks {sorted(missing)}: rebuild the index")
        return cls(name=head["name"], site=head["site"], n_features=int(head["n_features"]),
                   n_tokens=int(head["n_tokens"]), tokens=tokens, vocab=vocab,
                   top_seq=arrays["top_seq"].long(), top_pos=arrays["top_pos"].long(),
                   top_act=arrays["top_act"], top_window=arrays["top_window"],
                   hist_counts=arrays["hist_counts"], max_act=arrays["max_act"], fired=arrays["fired"],
                   act_sum=arrays["act_sum"], meta=dict(head.get("meta") or {}))

    @classmethod
    def load_starter(cls, name: str) -> FeatureIndex:
        """The precomputed index of a starter-pack dictionary: ``"transcoder.12"``, ``"resid_post.12"``."""
        name = name.removeprefix("starter/")
        if not (DATA_INDEX / f"{_safe_name(name)}.json").is_file():
            have = sorted(p.stem for p in DATA_INDEX.glob("*.json") if p.stem != "vocab") if DATA_INDEX.is_dir() else []
            raise DictionaryError(f"no starter index named {name!r}; available: "
                                  f"{', '.join(have) or 'none (the starter pack is not installed)'}")
        return cls.load(DATA_INDEX, name)


def _safe_name(name: str) -> str:
    return name.replace("/", "_")


def _tokens_sha(tokens: Tensor) -> str:
    """A fingerprint of a scan's token table, recorded in every index header that points into it."""
    return hashlib.sha256(tokens.long().contiguous().numpy().tobytes()).hexdigest()[:16]


def _save_shared(folder: Path, tokens: Tensor, vocab: dict[int, str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.int32 if tokens.numel() and int(tokens.max()) >= 32768 else torch.int16
    atomic_save_safetensors(folder / "tokens.safetensors", {"tokens": tokens.to(dtype)})
    atomic_write_json(folder / "vocab.json", {str(k): v for k, v in sorted(vocab.items())})
    return _tokens_sha(tokens)


def save_index_set(folder: str | Path, indexes: Mapping[str, FeatureIndex]) -> Path:
    """Save several indexes of one scan sharing the token table (``FeatureIndex.load(folder, name)``).

    Each file is written atomically and each header records the token table's fingerprint, so
    an index left over from an earlier scan in the same folder (or a save cut off half-way)
    fails to load with a clear error instead of showing examples from the wrong tokens.
    """
    folder = Path(folder)
    if not indexes:
        raise DictionaryError("save_index_set needs at least one index")
    first = next(iter(indexes.values()))
    for name, ix in indexes.items():
        if ix.tokens is not first.tokens and not torch.equal(ix.tokens, first.tokens):
            raise DictionaryError(f"index {name!r} comes from another scan: save it on its own")
    sha = _save_shared(folder, first.tokens, first.vocab)
    for name, ix in indexes.items():
        stem = _safe_name(name)
        atomic_save_safetensors(folder / f"{stem}.safetensors", ix._arrays())
        atomic_write_json(folder / f"{stem}.json", {**ix._header(), "tokens_sha": sha})
    return folder


def _window_start(pos: int | Tensor, window: int, seq_len: int) -> Any:
    before = (window * 3) // 4  # show more context before the max than after it
    if isinstance(pos, Tensor):
        return (pos - before).clamp(0, max(seq_len - window, 0))
    return min(max(pos - before, 0), max(seq_len - window, 0))


# ------------------------------------------------------------------------ streaming state
class _Accumulator:
    """Bounded per-feature state for one dictionary during a scan."""

    def __init__(self, n: int, k: int, window: int):
        self.k, self.w = k, window
        self.top_act = torch.zeros(n, k)
        self.top_seq = torch.zeros(n, k, dtype=torch.long)
        self.top_pos = torch.zeros(n, k, dtype=torch.long)
        self.top_window = torch.zeros(n, k, window)
        self.hist = torch.zeros(n * _LOG_BINS, dtype=torch.long)
        self.fired = torch.zeros(n, dtype=torch.long)
        self.act_sum = torch.zeros(n, dtype=torch.float64)
        self.max_act = torch.zeros(n)

    def update(self, acts: Tensor, seq0: int) -> None:
        """``acts [B, S, n]`` (position 0 already zeroed), sequences numbered from ``seq0``."""
        B, S, n = acts.shape
        pos_mask = acts > 0
        self.fired += pos_mask.sum((0, 1))
        self.act_sum += acts.sum((0, 1)).double()
        self.max_act = torch.maximum(self.max_act, acts.amax((0, 1)))
        nz = acts[pos_mask]
        feat = pos_mask.nonzero()[:, 2]
        b = ((nz.log10() - _LOG_LO) / (_LOG_HI - _LOG_LO) * _LOG_BINS).long().clamp(0, _LOG_BINS - 1)
        self.hist += torch.bincount(feat * _LOG_BINS + b, minlength=n * _LOG_BINS)
        # one candidate per sequence: its max for each feature
        m, p = acts.max(1)  # [B, n]
        w = min(self.w, S)
        start = _window_start(p, w, S)  # [B, n]
        idx = start.unsqueeze(1) + torch.arange(w).view(1, w, 1)  # [B, w, n]
        win = acts.gather(1, idx).permute(2, 0, 1)  # [n, B, w]
        if w < self.w:
            win = torch.nn.functional.pad(win, (0, self.w - w))
        cand_act = torch.cat([self.top_act, m.T], 1)
        cand_seq = torch.cat([self.top_seq, (torch.arange(B) + seq0).view(1, B).expand(n, B)], 1)
        cand_pos = torch.cat([self.top_pos, p.T], 1)
        cand_win = torch.cat([self.top_window, win], 1)
        best = cand_act.topk(self.k, dim=1).indices
        self.top_act = cand_act.gather(1, best)
        self.top_seq = cand_seq.gather(1, best)
        self.top_pos = cand_pos.gather(1, best)
        self.top_window = cand_win.gather(1, best.unsqueeze(-1).expand(-1, -1, self.w))

    def state(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in ("top_act", "top_seq", "top_pos", "top_window", "hist",
                                              "fired", "act_sum", "max_act")}

    def load(self, st: Mapping[str, Tensor]) -> None:
        for k, v in st.items():
            setattr(self, k, v.clone())

    def finish(self, name: str, site: str, n_tokens: int, tokens: Tensor, vocab: dict[int, str],
               meta: dict[str, Any]) -> FeatureIndex:
        n = self.top_act.shape[0]
        # rebin the fine log histogram into HIST_BINS linear bins over [0, max] per feature
        # (each log bin's count is spread over the linear bins it overlaps, uniformly in value)
        edges = 10 ** (_LOG_LO + torch.arange(_LOG_BINS + 1, dtype=torch.float64) * (_LOG_HI - _LOG_LO) / _LOG_BINS)
        lo, hi = edges[:-1].view(1, -1, 1), edges[1:].view(1, -1, 1)
        mx = self.max_act.double().clamp_min(1e-12).view(-1, 1, 1)
        hi = torch.minimum(hi, mx)
        j = torch.arange(HIST_BINS, dtype=torch.float64).view(1, 1, -1)
        left, right = mx * j / HIST_BINS, mx * (j + 1) / HIST_BINS
        overlap = (torch.minimum(hi, right) - torch.maximum(lo, left)).clamp_min(0)  # [n, L, H]
        share = overlap / overlap.sum(-1, keepdim=True).clamp_min(1e-300)
        counts = (self.hist.view(n, _LOG_BINS, 1).double() * share).sum(1).round().long()
        rel = self.top_window / self.top_act.clamp_min(1e-12).unsqueeze(-1)
        window = (rel.clamp(0, 1) * 255).round().to(torch.uint8)
        return FeatureIndex(name=name, site=site, n_features=n, n_tokens=n_tokens, tokens=tokens,
                            vocab=vocab, top_seq=self.top_seq.clone(), top_pos=self.top_pos.clone(),
                            top_act=self.top_act.clone(), top_window=window, hist_counts=counts,
                            max_act=self.max_act.clone(), fired=self.fired.to(torch.int32),
                            act_sum=self.act_sum.to(torch.float32), meta=meta)


# ------------------------------------------------------------------------ the scan
def scan_memory(model: Any, dictionaries: Any, *, max_tokens: int, batch_size: int, seq_len: int,
                top_k: int, window: int) -> dict[str, int]:
    """Bytes a scan will hold at its peak, by part (what :func:`scan_many` checks before it starts).

        >>> sum(scan_memory(model, sae, max_tokens=100_000, batch_size=8, seq_len=128,
        ...                 top_k=20, window=24).values())
    """
    dicts = flatten_dictionaries(dictionaries)
    widths = [int(d.n_features) for d in dicts.values()]
    n_max = max(widths, default=0)
    n_seq = max_tokens // max(seq_len, 1) + 1
    per_feature_state = top_k * (4 + 8 + 8 + 4 * window) + _LOG_BINS * 8 + 20
    return {
        # top-k contexts, fine histograms and counters of every dictionary, kept all scan long
        "feature state": sum(widths) * per_feature_state,
        # one batch encoded by the widest dictionary: activations, masks, windows, candidates
        "batch activations": n_max * (batch_size * seq_len * 13 + batch_size * window * 12
                                      + (top_k + batch_size) * (4 * window + 20)),
        # the model's forward up to the last site, and the stored token ids
        "forward": batch_size * seq_len * int(getattr(model, "d_model", 0)) * 4 * 8,
        "tokens": n_seq * seq_len * 8 * 2,
        # rebinning the histograms at the end: [n_features, log bins, linear bins] float64 temporaries
        "histograms": n_max * _LOG_BINS * HIST_BINS * 8 * 5,
    }


def check_scan_memory(model: Any, dictionaries: Any, *, memory_budget: Any = "auto", **sizes: int) -> None:
    """Raise :class:`MemoryBudgetError` if :func:`scan_memory` exceeds ``memory_budget``."""
    from .attribution.build import _available_memory, _budget, _fmt_bytes

    try:
        budget = _budget(memory_budget)
    except GraphError as e:
        raise CorpusError(str(e)) from None
    if budget is None:
        return
    parts = scan_memory(model, dictionaries, **sizes)
    need = sum(parts.values())
    if need > budget:
        biggest = max(parts, key=parts.get)
        what = ("memory_budget" if memory_budget != "auto"
                else f"80% of the {_fmt_bytes(_available_memory())} available")
        raise MemoryBudgetError(
            f"this scan needs ~{_fmt_bytes(need)} but {what} is {_fmt_bytes(budget)} (largest part: "
            f"{biggest}, {_fmt_bytes(parts[biggest])}). Lower batch_size (now {sizes['batch_size']}), "
            f"seq_len (now {sizes['seq_len']}), top_k (now {sizes['top_k']}) or window (now "
            f"{sizes['window']}), scan fewer or narrower dictionaries at once, or pass a larger "
            f"memory_budget"
        )


def scan_many(model: Any, dictionaries: Any, corpus: Corpus, *, max_tokens: int = 100_000,
              batch_size: int = 8, seq_len: int = 128, top_k: int = 20, window: int = 24,
              checkpoint_dir: str | Path | None = None, checkpoint_every_s: float = 120.0,
              progress: bool = True, memory_budget: Any = "auto") -> dict[str, FeatureIndex]:
    """Scan several dictionaries in one stream of forward passes; ``{name: FeatureIndex}``.

    ``dictionaries``: a mapping name -> dictionary, a list, or a ``TranscoderSet``.
    ``memory_budget``: bytes, a size such as ``"4GB"``, ``"auto"`` (80% of the memory available
    now) or None; the scan refuses with :class:`~interp_widgets.errors.MemoryBudgetError` before
    allocating anything when its estimate (:func:`scan_memory`) is larger.
    """
    dicts = flatten_dictionaries(dictionaries)  # refuses none / non-dictionaries, naming the fix
    if not isinstance(corpus, Corpus):
        raise CorpusError(f"corpus must be an iw.Corpus, got {type(corpus).__name__}")
    for name, v, lo in (("batch_size", batch_size, 1), ("seq_len", seq_len, 2), ("top_k", top_k, 1),
                        ("window", window, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise CorpusError(f"{name} must be an int >= {lo}, got {v!r}")
    if seq_len > model.n_ctx:
        raise CorpusError(f"seq_len={seq_len} is longer than {model.name}'s context of {model.n_ctx} "
                          f"tokens: pass seq_len <= {model.n_ctx}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < batch_size * seq_len:
        raise CorpusError(f"max_tokens must be an int >= batch_size * seq_len = {batch_size * seq_len}, "
                          f"got {max_tokens!r}")
    if window > seq_len:
        raise CorpusError(f"top_k must be >= 1 and window in 1-{seq_len}, got {top_k}, {window}")
    for d in dicts.values():
        d.check_model(model)
    check_scan_memory(model, dicts, max_tokens=max_tokens, batch_size=batch_size, seq_len=seq_len,
                      top_k=top_k, window=window, memory_budget=memory_budget)
    sites = sorted({d.site for d in dicts.values()}, key=lambda s: s.order_key)
    accs = {name: _Accumulator(d.n_features, top_k, window) for name, d in dicts.items()}
    seqs: list[Tensor] = []
    state = {"batches": 0, "n_tokens": 0}
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and (ckpt / "scan.json").is_file():
        st = read_json(ckpt / "scan.json", "scan checkpoint")
        if st.get("dictionaries") != sorted(dicts) or st.get("max_tokens") != max_tokens:
            raise CorpusError(f"the scan checkpoint in {ckpt} belongs to another scan: delete it or "
                              f"pass another checkpoint_dir")
        tensors = load_safetensors(ckpt / "scan.safetensors")
        for name, acc in accs.items():
            acc.load({k.split("|", 1)[1]: v for k, v in tensors.items() if k.startswith(name + "|")})
        seqs = list(tensors["tokens"].long()) if "tokens" in tensors else []
        state = {"batches": int(st["batches"]), "n_tokens": int(st["n_tokens"])}

    def save_ckpt() -> None:
        if ckpt is None:
            return
        tensors = {f"{name}|{k}": v for name, acc in accs.items() for k, v in acc.state().items()}
        if seqs:
            tensors["tokens"] = torch.stack(seqs).to(torch.int32)
        atomic_save_safetensors(ckpt / "scan.safetensors", tensors)
        atomic_write_json(ckpt / "scan.json", {**state, "dictionaries": sorted(dicts), "max_tokens": max_tokens})

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_tokens, initial=state["batches"] * batch_size * seq_len, unit="tok",
                   unit_scale=True, desc="scan")
    last = time.perf_counter()
    try:
        with torch.no_grad():
            for ids in corpus.token_batches(model.tokenizer, batch_size=batch_size, seq_len=seq_len,
                                            max_tokens=max_tokens, skip_batches=state["batches"]):
                acts = read_sites(model, ids, sites)
                seq0 = len(seqs)
                for name, d in dicts.items():
                    a = d.encode(acts[d.site]).float()
                    a[:, 0] = 0  # attention sink: never evidence
                    accs[name].update(a, seq0)
                seqs.extend(ids)
                state["batches"] += 1
                state["n_tokens"] += ids.shape[0] * (ids.shape[1] - 1)
                if bar is not None:
                    bar.update(ids.numel())
                if ckpt is not None and time.perf_counter() - last > checkpoint_every_s:
                    save_ckpt()
                    last = time.perf_counter()
    except KeyboardInterrupt:
        save_ckpt()
        raise
    finally:
        if bar is not None:
            bar.close()
    if not seqs:
        raise CorpusError(f"corpus {corpus.name!r} has fewer than {batch_size * seq_len} tokens: "
                          f"give more text or a smaller batch_size / seq_len")
    save_ckpt()
    tokens = torch.stack(seqs)
    vocab = {int(i): model.tokenizer.decode([int(i)]) for i in torch.unique(tokens)}
    meta = {"model": model.name, "corpus": corpus.name, "top_k": top_k, "window": window,
            "seq_len": seq_len, "batch_size": batch_size}
    return {name: acc.finish(name, str(dicts[name].site), state["n_tokens"], tokens, vocab, meta)
            for name, acc in accs.items()}


def scan(model: Any, dictionary: Any, corpus: Corpus, *, max_tokens: int = 100_000, batch_size: int = 8,
         seq_len: int = 128, top_k: int = 20, window: int = 24, checkpoint_dir: str | Path | None = None,
         progress: bool = True, memory_budget: Any = "auto") -> FeatureIndex:
    """Scan ``corpus`` with one dictionary and build its :class:`FeatureIndex`.

        >>> index = iw.scan(model, sae, iw.Corpus.default(), max_tokens=50_000)
        >>> index.top_examples(7, k=3)
        >>> index.save("my_index"); iw.FeatureIndex.load("my_index")
    """
    name = getattr(dictionary, "name", "dictionary")
    out = scan_many(model, {name: dictionary}, corpus, max_tokens=max_tokens, batch_size=batch_size,
                    seq_len=seq_len, top_k=top_k, window=window, checkpoint_dir=checkpoint_dir,
                    progress=progress, memory_budget=memory_budget)
    return out[name]


# ------------------------------------------------------------------------ automatic labels
def _show(tok: str) -> str:
    s = tok.strip()
    if s:
        return s
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(tok[:1], repr(tok))


def promoted_tokens(model: Any, dictionary: Any, *, top: int = 3, chunk: int = 256) -> list[list[str]]:
    """Per feature, the tokens its decoder direction raises most through the final norm and unembedding."""
    from ..models.sites import Site

    W_U = model.module(Site("logits")).weight.detach().float()  # [vocab, d]
    norm = model.hf
    for part in model.spec.final_norm.split("."):
        norm = getattr(norm, part)
    gamma = getattr(norm, "weight", None)
    gamma = torch.ones(W_U.shape[1]) if gamma is None else gamma.detach().float()
    if getattr(model.hf.config, "model_type", "") in ("gemma", "gemma2", "gemma3"):
        gamma = 1 + gamma  # Gemma's RMSNorm scales by (1 + weight)
    W = dictionary.W_dec.detach().float()
    out: list[list[str]] = []
    with torch.no_grad():
        for i in range(0, W.shape[0], chunk):
            logits = (W[i:i + chunk] * gamma) @ W_U.T
            ids = logits.topk(top, dim=-1).indices
            out += [[_show(model.tokenizer.decode([int(t)])) for t in row] for row in ids]
    return out


def auto_labels(model: Any, dictionary: Any, index: FeatureIndex, *, n_tokens: int = 3,
                n_promoted: int = 3) -> dict[int, str]:
    """A label for every live feature from its evidence: ``"Paris / France → Paris, French"``.

    Left of the arrow: the tokens where its top examples peak (weighted by activation); right:
    the tokens its direction promotes most (direct logit effect).
    """
    promoted = promoted_tokens(model, dictionary, top=n_promoted)
    labels: dict[int, str] = {}
    for f in index.live.tolist():
        weights: Counter[str] = Counter()
        for j in range(index.top_act.shape[1]):
            act = float(index.top_act[f, j])
            if act <= 0:
                break
            tok = index.vocab.get(int(index.tokens[int(index.top_seq[f, j]), int(index.top_pos[f, j])]), "")
            weights[_show(tok)] += act
        top = [t for t, _ in weights.most_common(n_tokens)]
        promo = []
        for t in promoted[f]:
            if t not in promo:
                promo.append(t)
        labels[int(f)] = f"{' / '.join(top)} → {', '.join(promo)}"
    return labels


__all__ = ["FeatureIndex", "TopExample", "scan", "scan_many", "save_index_set", "auto_labels",
           "promoted_tokens", "scan_memory"]
