"""The embedded default's safetensors cache: corrupt or partial caches are detected and rebuilt.

Every test works in a temporary INTERP_WIDGETS_CACHE (never on the user's cache). The one rebuild (~20 s: a real GGUF load) happens once, in the last test.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from interp_widgets.models import loading

pytestmark = pytest.mark.smollm

MODEL_FILE = "model.safetensors"


@pytest.fixture(scope="module")
def pristine(smollm):
    """The user's cache (built by the session's first SmolLM2 load). Tests only hard-link its
    files; every file a test damages is a private copy. Checked intact again at the end."""
    path = loading.default_cache_path()
    assert loading.cache_state(path)["state"] == "ok"
    yield path
    assert loading.cache_state(path)["state"] == "ok", "a test damaged the user's cache"


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path / "cache"))
    return loading.default_cache_path()


def _view(pristine, target, copy=()):
    """A cache at ``target``: files in ``copy`` are real copies (safe to damage), the rest hard links."""
    target.mkdir(parents=True)
    for f in pristine.iterdir():
        if f.name not in copy:
            try:
                os.link(f, target / f.name)
                continue
            except OSError:  # another file system: copy instead
                pass
        shutil.copy2(f, target / f.name)
    return target


def test_cache_dir_follows_the_env_var(cache_env, tmp_path):
    assert cache_env.is_relative_to(tmp_path / "cache")
    st = loading.cache_state()
    assert st["state"] == "missing" and "no manifest" in st["why"]


def test_intact_copy_is_ok(pristine, cache_env):
    _view(pristine, cache_env)
    assert loading.cache_state() == {"path": str(cache_env), "state": "ok", "why": ""}


def test_truncated_weights_are_detected(pristine, cache_env):
    _view(pristine, cache_env, copy=[MODEL_FILE])
    f = cache_env / MODEL_FILE
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    st = loading.cache_state()
    assert st["state"] == "corrupt" and "has size" in st["why"]


def test_truncated_to_nothing_is_detected(pristine, cache_env):
    _view(pristine, cache_env, copy=["tokenizer.json"])
    (cache_env / "tokenizer.json").write_bytes(b"")
    assert loading.cache_state()["state"] == "corrupt"


def test_flipped_byte_same_size_is_detected(pristine, cache_env):
    _view(pristine, cache_env, copy=[MODEL_FILE])
    f = cache_env / MODEL_FILE
    with open(f, "r+b") as fh:
        fh.seek(f.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x01]))
    st = loading.cache_state()
    assert st["state"] == "corrupt" and "sha256" in st["why"]


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda d: (d / "manifest.json").unlink(), "no manifest"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "unreadable manifest"),
        (lambda d: (d / "manifest.json").write_text("[]"), "cache format"),
        (lambda d: (d / "config.json").unlink(), "is missing"),
        (lambda d: (d / "config.json").write_text(" " * (d / "config.json").stat().st_size), "sha256"),
    ],
)
def test_partial_or_damaged_folders_are_detected(pristine, cache_env, damage, why):
    _view(pristine, cache_env, copy=["manifest.json", "config.json"])
    damage(cache_env)
    st = loading.cache_state()
    assert st["state"] == "corrupt" and why in st["why"]


def test_manifest_that_lists_too_little_is_detected(pristine, cache_env):
    _view(pristine, cache_env, copy=["manifest.json"])
    m = json.loads((cache_env / "manifest.json").read_text())
    del m["files"][MODEL_FILE]
    (cache_env / "manifest.json").write_text(json.dumps(m))
    assert "does not list" in loading.cache_state()["why"]


def test_cache_from_another_gguf_is_stale(pristine, cache_env):
    _view(pristine, cache_env, copy=["manifest.json"])
    m = json.loads((cache_env / "manifest.json").read_text())
    m["source"]["gguf_size"] += 1
    (cache_env / "manifest.json").write_text(json.dumps(m))
    assert "another GGUF" in loading.cache_state()["why"]


def test_interrupted_build_leaves_nothing_behind(cache_env, monkeypatch):
    def interrupted(dtype):
        raise KeyboardInterrupt

    monkeypatch.setattr(loading, "_load_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        loading.load_default_hf()
    assert not cache_env.exists()
    assert list(cache_env.parent.iterdir()) == []  # no half-written temp folder either


@pytest.mark.timeout(300)
def test_corrupt_cache_is_rebuilt_and_equals_the_gguf_load_bitwise(pristine, cache_env, smollm, monkeypatch):
    """The one real rebuild of the suite (~20 s): flip a byte, load, get the GGUF weights back."""
    _view(pristine, cache_env, copy=[MODEL_FILE])
    f = cache_env / MODEL_FILE
    with open(f, "r+b") as fh:
        fh.seek(f.stat().st_size - 5)
        fh.write(b"\x7f")
    assert loading.cache_state()["state"] == "corrupt"
    built_from_gguf = []
    real_build = loading._build_default_cache

    def spy(target):
        built_from_gguf.append(real_build(target))
        return built_from_gguf[-1]

    monkeypatch.setattr(loading, "_build_default_cache", spy)
    hf_cached, _ = loading.load_default_hf()  # detects the damage, rebuilds, loads the cache
    assert len(built_from_gguf) == 1, "a corrupt cache must be rebuilt"
    hf, tok = built_from_gguf[0]
    assert loading.cache_state()["state"] == "ok"
    assert getattr(hf_cached.config, "quantization_config", None) is None
    # the rebuilt file is byte-for-byte the user's cache file (deterministic conversion) ...
    built = json.loads((cache_env / "manifest.json").read_text())["files"][MODEL_FILE]
    ref = json.loads((pristine / "manifest.json").read_text())["files"][MODEL_FILE]
    assert built == ref
    # ... and the GGUF-loaded weights equal the cache-loaded ones (smollm) bitwise
    cached = smollm.hf.state_dict()
    fresh = hf.state_dict()
    assert set(fresh) == set(cached)
    rebuilt = hf_cached.state_dict()
    for k, v in fresh.items():
        assert v.dtype == cached[k].dtype == torch.float32, k
        assert torch.equal(v, cached[k]), k
        assert torch.equal(rebuilt[k], cached[k]), k
    assert tok("The Eiffel Tower")["input_ids"] == smollm.tokenizer("The Eiffel Tower")["input_ids"]
