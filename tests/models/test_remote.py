"""Remote execution: remote="local" serializes traces like NDIF would; remote=True fails fast."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from model_helpers import PROMPTS, tiny

import interp_widgets as iw
from interp_widgets.errors import RemoteError
from interp_widgets.models import Model
from interp_widgets.models import model as model_module


@pytest.fixture
def no_ndif_key(monkeypatch):
    from nnsight import CONFIG

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    monkeypatch.setattr(model_module, "_REMOTE_OK", {})


@pytest.fixture
def fake_ndif(monkeypatch):
    """A local HTTP server standing in for NDIF's host (answers every GET), with a dummy key."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"pong")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("NDIF_HOST", url)
    monkeypatch.setattr(model_module, "_REMOTE_OK", {})
    yield url
    server.shutdown()
    server.server_close()


def _local_twin(m: Model) -> Model:
    """The same weights behind a second nnsight wrapper that runs remote='local'."""
    return Model(m.hf, m.tokenizer, name=m.name, remote="local")


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "neox"])
def test_remote_local_returns_the_same_activations(family):
    m = tiny(family)
    sites = [str(s) for s in m.sites()]
    logits, cache = m.run_with_cache(PROMPTS, sites=sites)
    r = iw.load_model(f"tiny-{family}", remote="local")
    assert r.remote == "local" and "remote='local'" in repr(r)
    r_logits, r_cache = r.run_with_cache(PROMPTS, sites=sites)
    assert torch.equal(logits, r_logits)
    for s in sites:
        assert torch.equal(cache[s], r_cache[s]), s


def test_remote_local_generate_and_writes_match(tiny_llama):
    r = _local_twin(tiny_llama)
    assert r.generate(PROMPTS, max_new_tokens=4) == tiny_llama.generate(PROMPTS, max_new_tokens=4)
    toks = tiny_llama.tokenize(PROMPTS)
    v = torch.randn(*toks.input_ids.shape, tiny_llama.d_model, generator=torch.Generator().manual_seed(3))
    outs = []
    for m in (tiny_llama, r):
        with torch.no_grad():
            with m.trace(toks.as_dict()):
                m.write("resid_mid.2", v)
                m.write("mlp_out.3", m.read("mlp_out.3") * 0.5)
                logits = m.read("logits").save()
        outs.append(logits)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.smollm
def test_remote_local_on_smollm(smollm):
    sites = ["resid_pre.0", "mlp_in.7", "resid_mid.12", "resid_post.29"]
    prompt = "The Eiffel Tower is in the city of"
    logits, cache = smollm.run_with_cache(prompt, sites=sites)
    r_logits, r_cache = _local_twin(smollm).run_with_cache(prompt, sites=sites)
    assert torch.equal(logits, r_logits)
    for s in sites:
        assert torch.equal(cache[s], r_cache[s]), s


@pytest.mark.timeout(20)
def test_remote_true_without_api_key_fails_at_load(no_ndif_key):
    with pytest.raises(RemoteError, match=r"remote=True needs an NDIF API key: get one at https://login.ndif.us"):
        iw.load_model("tiny-llama", remote=True)


@pytest.mark.timeout(20)
def test_remote_true_without_api_key_fails_at_trace(no_ndif_key, tiny_llama):
    m = Model(tiny_llama.hf, tiny_llama.tokenizer, name="tiny-llama", remote=True)
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        m.run_with_cache("Hello", sites=["resid_post.0"])
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        m.generate("Hello", max_new_tokens=2)
    with pytest.raises(RemoteError, match="remote='local'"):
        _ = m.remote_kwargs


@pytest.mark.timeout(20)
@pytest.mark.parametrize("host", ["127.0.0.1:9", "http://127.0.0.1:9"])
def test_remote_true_with_unreachable_host_fails_fast(monkeypatch, host):
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("NDIF_HOST", host)
    monkeypatch.setenv("IW_NDIF_TIMEOUT", "3")
    monkeypatch.setattr(model_module, "_REMOTE_OK", {})
    with pytest.raises(RemoteError, match=r"NDIF at https?://127\.0\.0\.1:9 is unreachable .*NDIF_HOST"):
        iw.load_model("tiny-llama", remote=True)


@pytest.mark.timeout(20)
def test_remote_true_refuses_models_ndif_cannot_have(fake_ndif):
    with pytest.raises(RemoteError, match=r"remote=True cannot run 'tiny-llama': NDIF runs models it hosts"):
        iw.load_model("tiny-llama", remote=True)


@pytest.mark.smollm
@pytest.mark.timeout(60)
def test_remote_default_model_is_named_by_its_hub_id(fake_ndif, smollm):
    m = iw.load_model(remote=True)
    assert m.remote is True
    assert m.nn.repo_id == m.repo_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert smollm.repo_id == m.repo_id and smollm.remote is False


@pytest.mark.timeout(120)
def test_remote_hub_id_builds_a_weightless_model(fake_ndif, tmp_path, tiny_llama):
    """load_model("org/name", remote=True) reads only config + tokenizer (here from an offline
    Hugging Face cache) and builds the model on the meta device: NDIF holds the weights."""
    snap = tmp_path / "hub" / "models--fake-org--tiny-llama" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    tiny_llama.hf.config.save_pretrained(snap)
    tiny_llama.tokenizer.save_pretrained(snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    code = textwrap.dedent(
        """
        import interp_widgets as iw
        m = iw.load_model("fake-org/tiny-llama", remote=True)
        p = next(m.hf.parameters())
        print(p.device, m.nn.repo_id, m.n_layers, m.d_model, m.site("resid_post.-1"))
        print(m.tokenize("Hello world").input_ids.tolist())
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=110)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "meta fake-org/tiny-llama 4 64 resid_post.3"
    assert lines[-1] == str(tiny_llama.tokenize("Hello world").input_ids.tolist())
    assert not any(Path(snap).glob("*.safetensors"))


@pytest.mark.timeout(30)
def test_remote_true_with_a_silent_host_times_out_instead_of_hanging(monkeypatch):
    """A host that accepts connections but never answers: RemoteError after IW_NDIF_TIMEOUT."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or replies
        monkeypatch.setenv("NDIF_API_KEY", "test-key")
        monkeypatch.setenv("NDIF_HOST", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("IW_NDIF_TIMEOUT", "1")
        monkeypatch.setattr(model_module, "_REMOTE_OK", {})
        with pytest.raises(RemoteError, match=r"unreachable .*waited at most 1 s"):
            iw.load_model("tiny-llama", remote=True)
