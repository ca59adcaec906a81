"""Corpus: sources, splitting, packing into token batches, resuming, errors."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
import torch

import interp_widgets as iw
from interp_widgets.corpus import Corpus, html_to_text
from interp_widgets.errors import CorpusError


def test_sources_read_strings_pandas_and_files(tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta")
    (tmp_path / "b.html").write_text("<html><head><title>x</title><script>var z=1;</script></head>"
                                     "<body><p>Hello &amp; welcome</p><nav>menu</nav></body></html>")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "gamma"}) + "\n\n" + json.dumps({"text": "delta"}) + "\n")
    files = list(Corpus.from_files(tmp_path).documents())
    assert files == ["alpha beta", "Hello & welcome", "gamma", "delta"]
    assert list(Corpus.from_files(str(tmp_path / "*.txt")).documents()) == ["alpha beta"]
    df = pd.DataFrame({"t": ["one", None, "  ", "two"]})
    assert list(Corpus.from_pandas(df, "t")) == ["one", "two"]
    both = Corpus.from_strings(["x y"]) + Corpus.from_pandas(df, "t")
    assert list(both) == ["x y", "one", "two"] and len(both.sources) == 2


def test_html_to_text_drops_scripts_and_navigation():
    text = html_to_text("<div><style>.a{}</style><h1>Title</h1><p>Body  text</p><footer>f</footer></div>")
    assert text == "Title\n\nBody text" or text.split() == ["Title", "Body", "text"]
    assert "a{}" not in text and "f" not in text.split()


def test_bad_sources_raise_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        Corpus.from_files(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="no non-empty"):
        Corpus.from_strings(["", "   "])
    with pytest.raises(CorpusError, match="must be str"):
        Corpus.from_strings(["ok", 3])
    with pytest.raises(CorpusError, match="column 'x'"):
        Corpus.from_pandas(pd.DataFrame({"t": ["a"]}), "x")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"nope": 1}\n')
    with pytest.raises(CorpusError, match="bad.jsonl:2"):
        list(Corpus.from_files(tmp_path / "bad.jsonl"))
    with pytest.raises(CorpusError, match=">= 2"):
        Corpus.from_strings(["a"]).split(every=1)


def test_split_is_deterministic_and_disjoint():
    docs = [f"doc {i}" for i in range(50)]
    train, held = Corpus.from_strings(docs).split(every=10)
    assert list(held) == [f"doc {i}" for i in range(9, 50, 10)]
    assert sorted(list(train) + list(held), key=lambda d: int(d.split()[1])) == docs
    assert list(Corpus.from_strings(docs).shuffled(3)) == list(Corpus.from_strings(docs).shuffled(3))
    assert list(Corpus.from_strings(docs).shuffled(3)) != docs


def test_token_batches_pack_documents_and_resume(tiny_llama):
    tok = tiny_llama.tokenizer
    corpus = Corpus.from_strings([f"Document number {i} talks about topic {i * 7}." for i in range(60)])
    stream = [t for ids in corpus.token_stream(tok) for t in ids]
    batches = list(corpus.token_batches(tok, batch_size=2, seq_len=16))
    assert all(b.shape == (2, 16) and b.dtype == torch.long for b in batches)
    assert torch.cat([b.flatten() for b in batches]).tolist() == stream[: len(batches) * 32]
    assert tok.eos_token_id in stream  # documents are separated by EOS
    resumed = list(corpus.token_batches(tok, batch_size=2, seq_len=16, skip_batches=3))
    assert [b.tolist() for b in resumed] == [b.tolist() for b in batches[3:]]
    capped = list(corpus.token_batches(tok, batch_size=2, seq_len=16, max_tokens=100))
    assert len(capped) == 3


def test_default_corpus_ships_with_provenance():
    c = iw.Corpus.default()
    docs = list(c.documents())
    assert sum(len(d) for d in docs) > 100_000
    names = {s["name"] for s in c.sources}
    assert "python3.11-doc" in names and all(s.get("licence") for s in c.sources)
    assert any("Paris" in d for d in docs)
