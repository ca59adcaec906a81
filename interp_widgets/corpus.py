"""``Corpus``: local text for scans and dictionary training, streamed as token batches.

A corpus is an ordered, re-iterable list of documents (strings) plus a record of where they came
from. Nothing is downloaded: text comes from strings, local files, a pandas column, or the small
sample that ships inside the package (:meth:`Corpus.default`).

    >>> corpus = iw.Corpus.from_files("notes/*.txt")            # or .from_strings([...]), .default()
    >>> train, held_out = corpus.split(every=20)                 # every 20th document held out
    >>> for ids in train.token_batches(model.tokenizer, batch_size=8, seq_len=128): ...

This module sits at the bottom of the package (it imports only ``errors`` / ``files``), so the
dictionary trainer and the analysis scans can both use it.
"""

from __future__ import annotations

import glob
import gzip
import html
import html.parser
import json
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorpusError

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CORPUS = DATA_DIR / "corpus" / "default.jsonl.gz"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".html", ".htm", ".jsonl", ".jsonl.gz", ".txt.gz")


@dataclass(frozen=True)
class Corpus:
    """Documents (an ordered, re-iterable source of strings) and their provenance.

    ``sources`` is a list of dicts (``{"name": ..., "licence": ..., "documents": n}``) copied
    into the cards of whatever is built from the corpus.
    """

    _load: Callable[[], Iterable[str]] = field(repr=False)
    name: str = "corpus"
    sources: tuple[dict[str, Any], ...] = ()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_strings(cls, texts: str | Sequence[str], *, name: str = "strings") -> Corpus:
        """A corpus over in-memory strings (one document each)."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence):
            raise CorpusError(f"from_strings needs a list of str, got {type(texts).__name__}")
        docs = [t for t in texts if _check_doc(t, "from_strings").strip()]
        if not docs:
            raise CorpusError("from_strings got no non-empty text: pass at least one document")
        return cls(lambda: iter(docs), name=name,
                   sources=({"name": name, "kind": "strings", "documents": len(docs)},))

    @classmethod
    def from_pandas(cls, frame: Any, column: str, *, name: str | None = None) -> Corpus:
        """A corpus over one text column of a pandas DataFrame (missing values skipped)."""
        if not hasattr(frame, "columns"):
            raise CorpusError(f"from_pandas needs a pandas DataFrame, got {type(frame).__name__}")
        if column not in frame.columns:
            raise CorpusError(
                f"column {column!r} is not in the DataFrame; its columns are "
                f"{', '.join(map(str, frame.columns))}"
            )
        docs = [str(t) for t in frame[column].dropna().tolist() if str(t).strip()]
        if not docs:
            raise CorpusError(f"column {column!r} holds no non-empty text")
        name = name or f"pandas:{column}"
        return cls(lambda: iter(docs), name=name,
                   sources=({"name": name, "kind": "pandas", "documents": len(docs)},))

    @classmethod
    def from_files(cls, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                   name: str | None = None, licence: str | None = None) -> Corpus:
        """Text from local files (globs and folders allowed), read lazily on each pass.

        ``.txt/.md/.rst``: one document per file; ``.html``: the visible text; ``.jsonl``
        (optionally ``.gz``): one document per line, field ``"text"``.
        """
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        files: list[Path] = []
        for item in items:
            p = Path(item).expanduser()
            if p.is_dir():
                files += sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(TEXT_SUFFIXES))
            elif any(ch in str(item) for ch in "*?["):
                files += sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
            elif p.is_file():
                files.append(p)
            else:
                raise CorpusError(f"corpus path {str(item)!r} does not exist: pass existing files, "
                                  f"folders or globs")
        if not files:
            raise CorpusError(f"no text files matched {items!r} (looked for {', '.join(TEXT_SUFFIXES)})")

        def load() -> Iterator[str]:
            for f in files:
                yield from _read_documents(f)

        src = {"name": name or (files[0].name if len(files) == 1 else str(items[0])),
               "kind": "files", "files": len(files)}
        if licence:
            src["licence"] = licence
        return cls(load, name=src["name"], sources=(src,))

    @classmethod
    def default(cls) -> Corpus:
        """The small offline sample shipped in the package (provenance in ``data/corpus/sources.json``).

        About 110 kB gzipped: Python 3.11 documentation prose (PSF licence, from Debian's
        ``python3.11-doc``) and text generated by SmolLM2-135M-Instruct (Apache-2.0) on prompts
        about places, antonyms, arithmetic, code and translation. Written by
        ``scripts/build_starter_pack.py``; works on a fresh machine without apt.

            >>> corpus = iw.Corpus.default()
            >>> corpus.sources[0]["licence"]
            'PSF License Agreement'
        """
        if not DEFAULT_CORPUS.is_file():
            raise CorpusError(
                f"the built-in corpus {DEFAULT_CORPUS} is missing from this install: reinstall "
                f"interp-widgets, or pass your own text with Corpus.from_files / from_strings"
            )
        c = cls.from_files(DEFAULT_CORPUS, name="interp_widgets default sample")
        meta = DEFAULT_CORPUS.with_name("sources.json")
        sources = tuple(json.loads(meta.read_text())) if meta.is_file() else c.sources
        return cls(c._load, name=c.name, sources=sources)

    # ------------------------------------------------------------------ combining
    def __add__(self, other: Corpus) -> Corpus:
        return Corpus.concat([self, other])

    @staticmethod
    def concat(corpora: Sequence[Corpus], *, name: str | None = None) -> Corpus:
        """All documents of the first corpus, then the second, and so on."""
        corpora = list(corpora)

        def load() -> Iterator[str]:
            for c in corpora:
                yield from c.documents()

        return Corpus(load, name=name or " + ".join(c.name for c in corpora),
                      sources=tuple(s for c in corpora for s in c.sources))

    def split(self, every: int = 20) -> tuple[Corpus, Corpus]:
        """``(train, held_out)``: every ``every``-th document goes to ``held_out`` (deterministic)."""
        if not isinstance(every, int) or every < 2:
            raise CorpusError(f"split(every=...) must be an int >= 2, got {every!r}")

        def pick(keep_held: bool) -> Callable[[], Iterator[str]]:
            def load() -> Iterator[str]:
                for i, d in enumerate(self.documents()):
                    if (i % every == every - 1) == keep_held:
                        yield d
            return load

        return (Corpus(pick(False), name=f"{self.name} [train]", sources=self.sources),
                Corpus(pick(True), name=f"{self.name} [held-out 1/{every}]", sources=self.sources))

    def shuffled(self, seed: int = 0) -> Corpus:
        """The same documents in a seeded random order (loads the document list in memory)."""
        def load() -> Iterator[str]:
            docs = list(self.documents())
            random.Random(seed).shuffle(docs)
            return iter(docs)

        return Corpus(load, name=self.name, sources=self.sources)

    # ------------------------------------------------------------------ reading
    def documents(self) -> Iterator[str]:
        """The documents, in order (a fresh pass each call)."""
        n = 0
        for d in self._load():
            if isinstance(d, str) and d.strip():
                n += 1
                yield d
        if n == 0:
            raise CorpusError(f"corpus {self.name!r} produced no text")

    def __iter__(self) -> Iterator[str]:
        return self.documents()

    def token_stream(self, tokenizer: Any, *, separator: int | None = None) -> Iterator[list[int]]:
        """Token ids per document, each followed by ``separator`` (default: the EOS token)."""
        sep = tokenizer.eos_token_id if separator is None else separator
        for d in self.documents():
            ids = tokenizer(d, add_special_tokens=False)["input_ids"]
            if ids:
                yield list(ids) + ([sep] if sep is not None else [])

    def token_batches(self, tokenizer: Any, *, batch_size: int = 8, seq_len: int = 128,
                      max_tokens: int | None = None, skip_batches: int = 0,
                      drop_last: bool = True) -> Iterator[Any]:
        """Packed ``[batch_size, seq_len]`` LongTensors of token ids (documents joined by EOS).

        Packing keeps every position real (no padding), so a forward pass wastes nothing.
        ``max_tokens`` stops after that many tokens; ``skip_batches`` resumes a run.
        """
        import torch

        if batch_size < 1 or seq_len < 2:
            raise CorpusError(f"batch_size must be >= 1 and seq_len >= 2, got {batch_size}, {seq_len}")
        per = batch_size * seq_len
        buf: list[int] = []
        done = 0
        for ids in self.token_stream(tokenizer):
            buf.extend(ids)
            while len(buf) >= per:
                chunk, buf = buf[:per], buf[per:]
                if max_tokens is not None and (done + 1) * per > max_tokens and done > 0:
                    return
                done += 1
                if done > skip_batches:
                    yield torch.tensor(chunk, dtype=torch.long).view(batch_size, seq_len)
        if not drop_last and len(buf) >= seq_len and done >= skip_batches:
            rows = len(buf) // seq_len
            yield torch.tensor(buf[: rows * seq_len], dtype=torch.long).view(rows, seq_len)

    def count_tokens(self, tokenizer: Any) -> int:
        return sum(len(ids) for ids in self.token_stream(tokenizer))

    def __repr__(self) -> str:
        names = ", ".join(str(s.get("name")) for s in self.sources[:4])
        return f"Corpus({self.name!r}, sources=[{names}])"


def _check_doc(t: Any, where: str) -> str:
    if not isinstance(t, str):
        raise CorpusError(f"{where}: documents must be str, got {type(t).__name__} {t!r:.40}")
    return t


def _read_documents(path: Path) -> Iterator[str]:
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            with opener(path, "rt", encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise CorpusError(f"{path}:{i + 1} is not valid JSON ({e})") from e
                    text = rec.get("text") if isinstance(rec, dict) else None
                    if not isinstance(text, str):
                        raise CorpusError(f"{path}:{i + 1} has no string field 'text'")
                    yield text
        elif name.endswith((".html", ".htm")):
            yield html_to_text(path.read_text(encoding="utf-8", errors="replace"))
        else:
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                yield f.read()
    except OSError as e:
        raise CorpusError(f"cannot read corpus file {path}: {e}") from e


class _TextExtractor(html.parser.HTMLParser):
    SKIP = {"script", "style", "nav", "head", "footer"}
    BLOCK = {"p", "div", "li", "h1", "h2", "h3", "h4", "pre", "dt", "dd", "tr", "br", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(source: str) -> str:
    """The visible text of an HTML page (scripts, styles and navigation dropped)."""
    p = _TextExtractor()
    p.feed(source)
    text = html.unescape("".join(p.parts))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out, blank = [], False
    for line in lines:
        if line:
            out.append(line)
            blank = False
        elif not blank:
            out.append("")
            blank = True
    return "\n".join(out).strip()
