"""Safe file I/O shared by every layer: atomic writes, safetensors-only weight loading.

Everything that stores user work (labels, supernodes, feature indexes, checkpoints) writes a
temp file and renames it, so a crash or kernel restart never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import DictionaryError, UnsafeFileError

PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib"}


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False))


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save`` to bytes, then an atomic write."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def refuse_pickle(path: str | os.PathLike) -> None:
    """Raise :class:`UnsafeFileError` for formats that can run code when loaded."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeFileError(
            f"{p} is a pickle-based file ({p.suffix}); loading it could execute arbitrary code, "
            f"so interp_widgets only reads weights from .safetensors. Convert it once in a "
            f"trusted session: safetensors.torch.save_file(torch.load(path), 'weights.safetensors')"
        )


def load_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """Load a safetensors file as CPU tensors, with clear errors for missing/truncated files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    refuse_pickle(p)
    if not p.is_file():
        raise DictionaryError(f"weights file {p} does not exist")
    if p.suffix != ".safetensors":
        raise UnsafeFileError(f"{p} is not a .safetensors file; only safetensors weights are read")
    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DictionaryError(
            f"{p} is not a valid safetensors file (truncated or corrupted: {e}); "
            f"re-download or re-save it"
        ) from e


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    p = Path(path)
    if not p.is_file():
        raise DictionaryError(f"{what} {p} does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DictionaryError(f"{what} {p} is not valid JSON ({e}); fix or delete it") from e
