"""What every panel shares: error / busy / progress traits, guarded observers, binary buffers,
and plotly.js shipped once per page.

    >>> class MyPanel(Panel):
    ...     _esm = esm("my_panel.js")
    ...     prompt = Unicode("").tag(sync=True)
    ...     @observe("prompt")
    ...     @guarded
    ...     def _on_prompt(self, change): ...   # an exception lands in .error; the panel lives
"""

from __future__ import annotations

import functools
import gzip
import logging
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anywidget
import numpy as np
import traitlets
from ipywidgets import widget_serialization

from ..errors import InterpWidgetsError

log = logging.getLogger("interp_widgets.widgets")
STATIC = Path(__file__).parent / "_static"
F = TypeVar("F", bound=Callable[..., Any])


def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def esm(*names: str) -> str:
    """One panel's ES module: the shared helpers (``_common.js``) followed by the given files.

    Concatenated in Python because an anywidget module is loaded from a blob URL and cannot
    import a sibling file; this keeps "no build step" true.
    """
    return "\n".join([_read("_common.js"), *(f"// ---- {n}\n" + _read(n) for n in names)])


def css(name: str | None = None) -> str:
    return _read("_common.css") + ("\n" + _read(name) if name else "")


def error_message(e: BaseException) -> str:
    """What a person sees in the panel: our messages as they are, anything else with its type."""
    if isinstance(e, InterpWidgetsError):
        return str(e)
    return f"{type(e).__name__}: {e}"


def guarded(fn: F) -> F:
    """Run a panel method so that any exception is shown in ``self.error`` instead of killing
    the widget; the previous results stay on screen. A success clears the error."""

    @functools.wraps(fn)
    def wrapper(self: Panel, *args: Any, **kwargs: Any) -> Any:
        before = self.error
        try:
            out = fn(self, *args, **kwargs)
        except KeyboardInterrupt:
            self.error = "interrupted: the previous result is kept"
            self.busy = False
            return None
        except Exception as e:  # noqa: BLE001 - a panel must survive anything its inputs cause
            if not isinstance(e, InterpWidgetsError):
                log.warning("panel %s: %s", type(self).__name__, traceback.format_exc())
            self.error = error_message(e)
            self.busy = False
            return None
        if before and self.error == before:
            self.error = ""  # the stale error of an earlier input (a nested call's new error stays)
        return out

    return wrapper  # type: ignore[return-value]


def to_bytes(a: Any, dtype: Any = np.float32) -> bytes:
    """A contiguous little-endian buffer for a bytes trait (decoded as a typed array in JS)."""
    arr = np.ascontiguousarray(np.asarray(a, dtype=dtype))
    if arr.dtype.byteorder == ">":
        arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
    return arr.tobytes()


def from_bytes(b: bytes | memoryview | None, dtype: Any = np.float32) -> np.ndarray:
    """Inverse of :func:`to_bytes` (flat)."""
    if not b:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(bytes(b), dtype=np.dtype(dtype).newbyteorder("<"))


_MODEL_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """One lock per model: nnsight keeps its tracing state per process (greenlets), so two
    threads must never run traces on a model at once (the steering worker vs. other panels)."""
    with _LOCKS_LOCK:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


class PlotlyJS(anywidget.AnyWidget):
    """Carries plotly.js (gzipped, ~1.4 MB) to the page once; panels with charts point at the
    one instance and the first one to draw loads it into ``window.Plotly``."""

    _esm = "export default { render({ el }) { el.style.display = 'none'; } };"
    source_gz = traitlets.Bytes(b"").tag(sync=True)
    version = traitlets.Unicode("").tag(sync=True)


_PLOTLY: PlotlyJS | None = None
_PLOTLY_LOCK = threading.Lock()


def plotly_js_gz() -> bytes:
    """The plotly.min.js bundled in the plotly PyPI package, gzipped (cached)."""
    return _plotly_js_gz()


@functools.lru_cache(maxsize=1)
def _plotly_js_gz() -> bytes:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)


def plotly_widget() -> PlotlyJS:
    """The one PlotlyJS instance of this kernel."""
    global _PLOTLY
    with _PLOTLY_LOCK:
        if _PLOTLY is None or getattr(_PLOTLY, "comm", None) is None:
            import plotly

            _PLOTLY = PlotlyJS(source_gz=plotly_js_gz(), version=str(plotly.__version__))
        return _PLOTLY


class Panel(anywidget.AnyWidget):
    """Base of every interp_widgets panel.

    Traits shared with the browser: ``error`` (shown inside the panel, never raised),
    ``busy`` (a spinner), ``progress`` (0-1, ``-1`` when unknown) and ``status`` (a short line).
    """

    error = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    progress = traitlets.Float(-1.0).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    _plotly = traitlets.Instance(PlotlyJS, allow_none=True).tag(sync=True, **widget_serialization)

    uses_plotly: bool = False

    def __init__(self, **kwargs: Any) -> None:
        if self.uses_plotly and "_plotly" not in kwargs:
            kwargs["_plotly"] = plotly_widget()
        super().__init__(**kwargs)

    @contextmanager
    def working(self, status: str = "") -> Iterator[None]:
        """Mark the panel busy while a block runs; errors propagate to :func:`guarded`."""
        self.busy = True
        self.status = status
        self.progress = -1.0
        try:
            yield
            self.error = ""
        finally:
            self.busy = False
            self.progress = -1.0
            self.status = ""

    def _repr_keys(self) -> list[str]:
        return []

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """A value from the browser that a trait refuses lands in ``error`` (and the browser is
        put back to the kernel's values) instead of an exception in the kernel log."""
        try:
            super().set_state(sync_data)
        except traitlets.TraitError as e:  # traitlets rolls the whole update back
            self.error = str(e)
            self.send_state([k for k in sync_data if k in self.keys])

    def _handle_custom_msg(self, content: Any, buffers: Any) -> None:
        """A malformed message from the browser is shown in the panel (ipywidgets would only
        log the exception in the kernel and leave the panel silent)."""
        for callback in list(self._msg_callbacks.callbacks):
            try:
                callback(self, content, buffers)
            except Exception as e:  # noqa: BLE001 - a panel must survive anything its inputs cause
                if isinstance(e, InterpWidgetsError):
                    self.error = str(e)
                else:
                    log.warning("panel %s: %s", type(self).__name__, traceback.format_exc())
                    self.error = (f"a message from the browser was not understood ({content!r}): "
                                  f"{type(e).__name__}: {e}")
                self.busy = False

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)!r}" for k in self._repr_keys()]
        if self.error:
            parts.append(f"error={self.error!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write this panel's current state as a self-contained, kernel-free HTML page."""
        from .report import write_static_html

        return write_static_html([self], Path(path), title=title or type(self).__name__)
