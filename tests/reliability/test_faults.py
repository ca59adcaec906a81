"""Faults: Ctrl-C in the middle of long work, a process killed while saving, a dead or silent
NDIF host. "Nothing lost" is asserted each time: the model equals a freshly built one, the
interrupted scan resumes to the uninterrupted result, every saved file still loads with either
its old or its new content.

(A corrupted model cache is detected and rebuilt: tests/models/test_default_cache.py.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import PROMPT, assert_clean

import interp_widgets as iw
from interp_widgets import files
from interp_widgets.errors import RemoteError

DOCS = [f"Report {i}: the {['red', 'green', 'blue'][i % 3]} train left station {i % 7} at noon."
        for i in range(60)]
SCAN = dict(max_tokens=640, batch_size=2, seq_len=16, top_k=3, window=4)
INDEX_FIELDS = ("tokens", "top_seq", "top_pos", "top_act", "top_window", "hist_counts", "max_act", "fired", "act_sum")


def interrupt_tqdm_at(monkeypatch, n: int) -> dict:
    """Make the ``n``-th progress-bar update raise KeyboardInterrupt (what Ctrl-C in a notebook
    does: the exception surfaces wherever the kernel's main thread happens to be)."""
    import tqdm.std

    calls = {"n": 0}
    real = tqdm.std.tqdm.update

    def update(self, k=1):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, k)

    monkeypatch.setattr(tqdm.std.tqdm, "update", update)
    return calls


@pytest.mark.timeout(180)
def test_interrupted_scan_leaves_the_model_clean_and_resumes(tiny_llama, fresh_llama, sae, tmp_path, monkeypatch):
    corpus = iw.Corpus.from_strings(DOCS)
    reference = iw.scan(tiny_llama, sae, corpus, progress=False, **SCAN)
    calls = interrupt_tqdm_at(monkeypatch, 4)  # Ctrl-C as the 4th of the 20 batches is counted
    with pytest.raises(KeyboardInterrupt):
        iw.scan(tiny_llama, sae, corpus, checkpoint_dir=tmp_path / "ck", progress=True, **SCAN)
    assert calls["n"] == 4
    monkeypatch.undo()
    assert_clean(tiny_llama, fresh_llama)
    saved = json.loads((tmp_path / "ck" / "scan.json").read_text())
    assert saved["batches"] == 4  # the checkpoint holds exactly the batches done before Ctrl-C
    resumed = iw.scan(tiny_llama, sae, corpus, checkpoint_dir=tmp_path / "ck", progress=False, **SCAN)
    for f in INDEX_FIELDS:
        assert torch.equal(getattr(resumed, f), getattr(reference, f)), f
    assert resumed.n_tokens == reference.n_tokens


@pytest.mark.timeout(180)
def test_interrupted_steered_generation_leaves_the_model_clean(tiny_llama, fresh_llama, sae):
    spec = iw.Steer(sae[3], 12.0, positions="all")
    reference = iw.steer(tiny_llama, spec).generate(PROMPT, max_new_tokens=6)

    def stop_at_step_3(step: int, total: int) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        iw.steer(tiny_llama, spec).generate(PROMPT, max_new_tokens=6, progress=stop_at_step_3)
    assert_clean(tiny_llama, fresh_llama)
    again = iw.steer(tiny_llama, spec).generate(PROMPT, max_new_tokens=6)
    assert again.steered.tokens == reference.steered.tokens
    assert again.baseline.tokens == reference.baseline.tokens
    assert torch.equal(again.logprob_diff[0], reference.logprob_diff[0])


@pytest.mark.timeout(180)
def test_interrupted_attribution_leaves_the_model_clean(tiny_llama, fresh_llama, transcoders, monkeypatch):
    kw = dict(max_feature_nodes=20, batch_size=4)
    reference = iw.attribute(tiny_llama, PROMPT, transcoders, progress=False, **kw)
    interrupt_tqdm_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        iw.attribute(tiny_llama, PROMPT, transcoders, progress=True, **kw)
    monkeypatch.undo()
    assert_clean(tiny_llama, fresh_llama)
    again = iw.attribute(tiny_llama, PROMPT, transcoders, progress=False, **kw)
    assert list(again.nodes["node_id"]) == list(reference.nodes["node_id"])
    assert (again.adjacency != reference.adjacency).nnz == 0


@pytest.mark.timeout(180)
def test_interrupted_feature_activations_leave_the_model_clean(tiny_llama, fresh_llama, sae, monkeypatch):
    """Ctrl-C inside the nnsight trace itself (the second batch's forward)."""
    prompts = [PROMPT, "Hello world, this is", "A second batch", "of prompts"]
    reference = iw.feature_activations(tiny_llama, sae, prompts, batch_size=2)
    real = tiny_llama.trace
    calls = {"n": 0}

    def trace(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tiny_llama, "trace", trace)
    with pytest.raises(KeyboardInterrupt):
        iw.feature_activations(tiny_llama, sae, prompts, batch_size=2)
    monkeypatch.undo()
    assert_clean(tiny_llama, fresh_llama)
    again = iw.feature_activations(tiny_llama, sae, prompts, batch_size=2)
    assert torch.equal(again.dense(sae.name, 1), reference.dense(sae.name, 1))


# --------------------------------------------------------------------------- saving under faults
def _writers(tmp: Path, sae, graph, index):
    """Each kind of user work we persist: (name, write a new version, read it back)."""
    sae.save(tmp / "sae")
    graph.save(tmp / "graph")
    graph.to_json(tmp / "graph.json")
    index.save(tmp / "index")

    def label(v):
        sae.set_label(1, f"label {v}")

    def group(v):
        graph.supernodes["mine"] = list(graph.nodes["node_id"][: 1 + v])
        graph.save(tmp / "graph")

    def export(v):
        graph.labels[graph.nodes["node_id"].iat[0]] = f"edited {v}"
        graph.to_json(tmp / "graph.json")

    def reindex(v):
        index.meta["round"] = v
        index.save(tmp / "index")

    return [
        ("labels.json", label, lambda: iw.load_dictionary(tmp / "sae").labels.get(1)),
        ("supernodes (graph.save)", group, lambda: iw.AttributionGraph.load(tmp / "graph").supernodes.get("mine")),
        ("graph JSON", export, lambda: iw.AttributionGraph.from_json(tmp / "graph.json").labels.get(
            graph.nodes["node_id"].iat[0])),
        ("feature index", reindex, lambda: iw.FeatureIndex.load(tmp / "index").meta.get("round")),
    ]


@pytest.fixture(scope="module")
def small_graph(tiny_llama):
    return iw.attribute(tiny_llama, "The cat sat", "neurons", max_feature_nodes=5, progress=False)


@pytest.fixture(scope="module")
def small_index(tiny_llama, sae):
    return iw.scan(tiny_llama, sae, iw.Corpus.from_strings(DOCS), progress=False,
                   **{**SCAN, "max_tokens": 64})


@pytest.mark.parametrize("where", ["os.replace", "os.fsync"])
def test_a_save_interrupted_mid_write_keeps_the_old_file(where, tmp_path, monkeypatch, sae, small_graph, small_index):
    """Ctrl-C (or a crash) while the new bytes are written, or just before the rename: the file on
    disk is the complete previous version and no temp file is left behind."""
    writers = _writers(tmp_path, sae, small_graph, small_index)
    for name, write, read in writers:
        write(1)
        before = read()
        target = getattr(os, where.split(".")[1])

        def boom(*a, _real=target, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(files.os, where.split(".")[1], boom)
        with pytest.raises(KeyboardInterrupt):
            write(2)
        monkeypatch.undo()
        assert read() == before, name
        leftovers = [p.name for p in tmp_path.rglob("*.tmp")]
        assert not leftovers, (name, leftovers)
        write(3)
        assert read() != before, name  # and the next save works


KILL_CHILD = textwrap.dedent("""
    import sys, itertools
    from pathlib import Path
    import interp_widgets as iw
    tmp = Path(sys.argv[1])
    sae = iw.load_dictionary(tmp / "sae")
    graph = iw.AttributionGraph.load(tmp / "graph")
    index = iw.FeatureIndex.load(tmp / "index")
    for i in itertools.count(1):
        sae.set_label(i % 8, f"label {i}")
        graph.supernodes["mine"] = list(graph.nodes["node_id"][: 2 + i % 3])
        graph.labels[graph.nodes["node_id"].iat[0]] = f"edited {i}"
        graph.save(tmp / "graph")
        graph.to_json(tmp / "graph.json")
        index.meta["round"] = i
        index.save(tmp / "index")
        print(i, flush=True)
""")


@pytest.mark.timeout(240)
def test_a_killed_kernel_loses_no_saved_work(tmp_path, sae, small_graph, small_index):
    """A real process saving labels, supernodes, a graph and an index in a loop, killed with
    SIGKILL (what a kernel restart does) at two moments: every file still loads, and holds the
    last completed round or the one after it."""
    _writers(tmp_path, sae, small_graph, small_index)
    for wait_rounds in (3, 11):
        proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        done = 0
        try:
            for line in proc.stdout:
                done = int(line)
                if done >= wait_rounds:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert done >= wait_rounds, proc.stderr.read()
        d = iw.load_dictionary(tmp_path / "sae")
        last = max((int(v.split()[1]) for v in d.labels.values() if v.startswith("label ")), default=0)
        assert last in (done, done + 1)
        g = iw.AttributionGraph.load(tmp_path / "graph")
        assert len(g.supernodes["mine"]) in (2, 3, 4)
        gj = iw.AttributionGraph.from_json(tmp_path / "graph.json")
        assert int(gj.labels[gj.nodes["node_id"].iat[0]].split()[1]) in (done, done + 1)
        assert iw.FeatureIndex.load(tmp_path / "index").meta["round"] in (done, done + 1)


# --------------------------------------------------------------------------- NDIF down or silent
@pytest.fixture
def silent_host(monkeypatch):
    """A TCP port that accepts connections and never answers (a hung NDIF)."""
    from interp_widgets.models import model as model_module

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("NDIF_HOST", f"http://127.0.0.1:{srv.getsockname()[1]}")
    monkeypatch.setenv("IW_NDIF_TIMEOUT", "1.5")
    monkeypatch.setattr(model_module, "_REMOTE_OK", {})
    yield
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    srv.close()


@pytest.mark.timeout(30)
def test_a_silent_ndif_host_times_out_with_a_clear_message(silent_host, tiny_llama):
    t = time.monotonic()
    with pytest.raises(RemoteError, match=r"unreachable \(.*timed out.*waited at most 1.5 s\).*remote=False"):
        iw.load_model("meta-llama/Llama-3.1-8B", remote=True)
    assert time.monotonic() - t < 10
    # a model already loaded with remote=True fails at its next trace the same way, not by hanging
    from interp_widgets.models import Model

    remote = Model(tiny_llama.hf, tiny_llama.tokenizer, name="tiny-llama", remote=True)
    t = time.monotonic()
    with pytest.raises(RemoteError, match="timed out"):
        remote.run_with_cache("Hello", sites=["resid_post.0"])
    assert time.monotonic() - t < 10
