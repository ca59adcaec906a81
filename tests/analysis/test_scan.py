"""Corpus scans: exact top examples, statistics, save/load, resume, labels (tiny model, real traces)."""

from __future__ import annotations

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.scan import (
    FeatureIndex,
    auto_labels,
    save_index_set,
    scan,
    scan_many,
)
from interp_widgets.corpus import Corpus
from interp_widgets.dictionaries.base import SAE
from interp_widgets.errors import CorpusError, DictionaryError, FeatureError

DOCS = [f"Report {i}: the {['red', 'green', 'blue'][i % 3]} train left station {i % 7} at noon."
        for i in range(120)]
KW = dict(max_tokens=1_600, batch_size=4, seq_len=32, top_k=4, window=8, progress=False)


@pytest.fixture(scope="module")
def sae(tiny_llama):
    return SAE.random(d_in=tiny_llama.d_model, n_features=48, site="resid_post.1",
                      architecture="topk", k=6, seed=2)


@pytest.fixture(scope="module")
def index(tiny_llama, sae):
    return scan(tiny_llama, sae, Corpus.from_strings(DOCS), **KW)


def _true_acts(model, sae, index):
    """Brute force: run each scanned sequence again and encode it (position 0 zeroed)."""
    out = []
    for seq in index.tokens:
        with torch.no_grad():
            with model.trace({"input_ids": seq[None], "attention_mask": torch.ones_like(seq[None])}):
                h = model.read("resid_post.1").save()
        with torch.no_grad():
            a = sae.encode(getattr(h, "value", h))[0]
        a[0] = 0
        out.append(a)
    return torch.stack(out)  # [n_seq, seq_len, n_features]


def test_scan_statistics_match_brute_force(tiny_llama, sae, index):
    acts = _true_acts(tiny_llama, sae, index)
    assert index.n_tokens == acts.shape[0] * (acts.shape[1] - 1)
    fired = (acts > 0).sum((0, 1))
    for f in range(0, 48, 5):
        assert index.density(f) == pytest.approx(float(fired[f]) / index.n_tokens)
        if fired[f]:
            assert index.mean_activation(f) == pytest.approx(float(acts[..., f].sum() / fired[f]), rel=1e-4)
        edges, counts = index.histogram(f)
        assert len(edges) == len(counts) + 1 and edges[-1] == pytest.approx(float(acts[..., f].max()), rel=1e-5)
        assert abs(sum(counts) - int(fired[f])) <= len(counts)  # rebinning rounds each bin
        # the top examples are the strongest sequences, one per sequence, strongest first
        per_seq = acts[..., f].max(1).values
        want = per_seq.sort(descending=True).values[:4]
        rows = index.top_examples(f)
        got = [r.activation for r in rows]
        assert got == pytest.approx(want[want > 0].tolist(), rel=1e-5)
        for r in rows:
            assert r.tokens[r.max_position] == tiny_llama.tokenizer.decode([int(index.tokens[r.sequence, r.position])])
            assert max(r.activations) == pytest.approx(r.activation, rel=0.01)
            assert r.activations[r.max_position] == pytest.approx(r.activation, rel=0.01)
            assert len(r.tokens) == len(r.activations) == 8 and r.position >= 1


def test_save_load_round_trip_and_pandas(tmp_path, index):
    index.save(tmp_path / "ix")
    again = FeatureIndex.load(tmp_path / "ix")
    for f in (0, 7, 31):
        assert again.top_examples(f) == index.top_examples(f)
        assert again.histogram(f) == index.histogram(f)
        assert again.density(f) == index.density(f)
    df = index.to_pandas()
    assert list(df.columns[:4]) == ["feature", "density", "mean_activation", "max_activation"]
    assert len(df) == 48 and (df.density >= 0).all()
    assert "FeatureIndex(" in repr(index) and "[[" in repr(index.top_examples(int(index.live[0]))[0])


def test_scan_many_shares_one_pass_and_resumes_after_interrupt(tiny_llama, sae, tmp_path, index):
    other = SAE.random(d_in=tiny_llama.d_model, n_features=16, site="resid_post.0", architecture="topk", k=3)
    calls = {"n": 0}

    def flaky():
        for i, d in enumerate(DOCS):
            if calls["n"] == 0 and i == 40:
                calls["n"] += 1
                raise KeyboardInterrupt
            yield d

    corpus = Corpus(flaky, name="strings")
    with pytest.raises(KeyboardInterrupt):
        scan_many(tiny_llama, {"a": sae, "b": other}, corpus, checkpoint_dir=tmp_path / "ck", **KW)
    assert (tmp_path / "ck" / "scan.json").is_file()
    resumed = scan_many(tiny_llama, {"a": sae, "b": other}, corpus, checkpoint_dir=tmp_path / "ck", **KW)
    assert torch.equal(resumed["a"].top_act, index.top_act)
    assert torch.equal(resumed["a"].fired, index.fired)
    assert torch.equal(resumed["a"].tokens, index.tokens)
    save_index_set(tmp_path / "set", resumed)
    assert FeatureIndex.load(tmp_path / "set", "b").n_features == 16
    with pytest.raises(CorpusError, match="another scan"):
        scan_many(tiny_llama, {"a": sae}, corpus, checkpoint_dir=tmp_path / "ck", **KW)


def test_an_index_from_another_scan_in_the_same_folder_is_refused(tiny_llama, sae, index, tmp_path):
    other = SAE.random(d_in=tiny_llama.d_model, n_features=16, site="resid_post.1", architecture="topk", k=2)
    save_index_set(tmp_path, {"a": index, "b": scan(tiny_llama, other, Corpus.from_strings(DOCS), **KW)})
    assert FeatureIndex.load(tmp_path, "b").n_features == 16
    # a later scan of other text saves "a" only: the token table changes under the old "b"
    later = scan(tiny_llama, sae, Corpus.from_strings([d.upper() for d in DOCS]), **KW)
    assert not torch.equal(later.tokens, index.tokens)
    save_index_set(tmp_path, {"a": later})
    assert torch.equal(FeatureIndex.load(tmp_path, "a").top_act, later.top_act)
    with pytest.raises(DictionaryError, match="another scan"):
        FeatureIndex.load(tmp_path, "b")
    # a mixed set is refused before anything is written
    with pytest.raises(DictionaryError, match="another scan"):
        save_index_set(tmp_path / "mixed", {"a": later, "b": index})
    assert not (tmp_path / "mixed").exists()


def test_errors_name_the_fix(tiny_llama, sae, index):
    with pytest.raises(FeatureError, match="0-47"):
        index.top_examples(48)
    with pytest.raises(CorpusError, match="max_tokens"):
        scan(tiny_llama, sae, Corpus.from_strings(DOCS), max_tokens=10, progress=False)
    with pytest.raises(CorpusError, match="fewer than"):
        scan(tiny_llama, sae, Corpus.from_strings(["hi"]), max_tokens=2048, progress=False)
    with pytest.raises(DictionaryError, match="no starter index named 'nope'"):
        FeatureIndex.load_starter("nope")
    wrong = SAE.random(d_in=7, n_features=4, site="resid_post.1", architecture="topk", k=1)
    with pytest.raises(DictionaryError, match="d_in=7"):
        scan(tiny_llama, wrong, Corpus.from_strings(DOCS), progress=False)


def test_auto_labels_use_evidence(tiny_llama, sae, index):
    labels = auto_labels(tiny_llama, sae, index)
    assert set(labels) == set(index.live.tolist())
    f = int(index.live[0])
    top_tok = index.top_examples(f)[0].tokens[index.top_examples(f)[0].max_position].strip()
    assert " → " in labels[f]
    assert (top_tok or "␣") in labels[f].split(" → ")[0] or top_tok == ""


def test_public_names(index):
    assert iw.scan is scan and iw.FeatureIndex is FeatureIndex
