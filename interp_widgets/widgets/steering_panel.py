"""``SteeringPanel``: steer generation with features or directions, live, next to the baseline.

Each row is one intervention (a dictionary feature or a direction) with a strength slider, a mode
(add / scale / clamp / ablate) and positions. Baseline and steered continuations are shown side by
side with differing tokens marked and each steered token's log-prob difference; a dose-response
chart sweeps one row's strength.

Live: the browser debounces slider moves; every change gets a request id; a worker thread runs
one request at a time, skips queued requests that a newer one superseded, stops a running one as
soon as a newer one arrives, and never lets an older result overwrite a newer one.

    >>> panel = iw.SteeringPanel(model, sae, prompt="My favourite city is")
    >>> panel.add(sae[12], strength=40.0)          # or "steer with this" in a dashboard
    >>> panel.set_strength(0, 80.0); panel.wait().steered.text
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import traitlets

from ..analysis.steering import Steer, SteeringResult, steer, steering_sweep
from ..dictionaries import Feature, flatten_dictionaries
from ..errors import SteeringError
from ._base import Panel, css, error_message, esm, guarded, model_lock, to_bytes
from .selection import Selection

MODES = ("add", "scale", "clamp", "ablate")
POSITION_CHOICES = ("all", "prompt", "generated", "last")


class _Superseded(KeyboardInterrupt):
    """Raised inside a running generation when a newer request arrived (the steering engine
    cleans up after KeyboardInterrupt, leaving no hooks on the model)."""


def _positions(p: Any) -> Any:
    """Row positions -> Steer positions: keywords, "last", "3", "2,5", "-1" or "token:Paris"."""
    if isinstance(p, (list, tuple)):
        return [int(x) for x in p]
    s = str(p).strip()
    if s == "last":
        return [-1]
    if s in ("all", "prompt", "generated"):
        return s
    if s.startswith("token:"):
        return {"token": s[len("token:"):]}
    try:
        return [int(x) for x in s.replace(" ", "").split(",") if x]
    except ValueError:
        raise SteeringError(
            f"positions {p!r} not understood: use all, prompt, generated, last, indices like 2,5 or token:Paris"
        ) from None


class SteeringPanel(Panel):
    """Steering panel.

    In: ``prompt``, ``rows`` (one dict per intervention: id, label, strength, mode, positions,
    enabled, lo, hi), ``max_new_tokens``, ``temperature``, ``seed``, ``dose_row`` (row id for
    the dose-response chart), ``dose_target``. Out: ``request_id`` (latest asked), ``result_id``
    (shown), ``baseline`` / ``steered`` (tokens and text), ``differs``, ``logprob_diff`` (float32
    bytes), ``next_token``, ``dose``. ``result`` is the last :class:`SteeringResult`.
    """

    _esm = esm("steering_panel.js")
    _css = css()
    uses_plotly = True

    prompt = traitlets.Unicode("").tag(sync=True)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    targets_info = traitlets.List().tag(sync=True)  # features of the dictionaries one can add
    max_new_tokens = traitlets.Int(16).tag(sync=True)
    temperature = traitlets.Float(0.0).tag(sync=True)
    seed = traitlets.Int(0).tag(sync=True)
    request_id = traitlets.Int(0).tag(sync=True)
    result_id = traitlets.Int(0).tag(sync=True)
    prompt_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    baseline = traitlets.List(traitlets.Unicode()).tag(sync=True)
    steered = traitlets.List(traitlets.Unicode()).tag(sync=True)
    differs = traitlets.List(traitlets.Bool()).tag(sync=True)
    logprob_diff = traitlets.Bytes(b"").tag(sync=True)
    kl = traitlets.Float(0.0).tag(sync=True)
    next_token = traitlets.Dict().tag(sync=True)
    dose_row = traitlets.Int(-1).tag(sync=True)
    dose_target = traitlets.Unicode("").tag(sync=True)
    dose = traitlets.Dict().tag(sync=True)
    runs = traitlets.Int(0).tag(sync=True)          # generations actually run (not superseded)

    def __init__(self, model: Any, dictionaries: Any = None, prompt: str = "", *,
                 steers: Sequence[Any] = (), selection: Selection | None = None,
                 max_new_tokens: int = 16, live: bool = True, **kwargs: Any) -> None:
        self.model = model
        self.dicts = flatten_dictionaries(dictionaries) if dictionaries is not None else {}
        self.selection = selection if selection is not None else Selection.shared()
        self.live = live
        self.result: SteeringResult | None = None
        self._targets: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._latest = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iw-steer")
        self._pending: Future | None = None
        self._ready = False
        info = [{"dictionary": n, "n_features": int(d.n_features), "site": str(d.site)} for n, d in self.dicts.items()]
        super().__init__(targets_info=info, max_new_tokens=max_new_tokens, **kwargs)
        for s in steers:
            self.add(s, run=False)
        self._ready = True
        self.prompt = prompt  # the observer queues the first run
        self.selection.observe(self._on_steer_request, names=["steer"])
        self.on_msg(self._on_action)

    def _repr_keys(self) -> list[str]:
        return ["prompt", "max_new_tokens", "result_id"]

    # ------------------------------------------------------------------ rows
    def add(self, target: Any, strength: float | None = None, *, mode: str = "add", positions: Any = "all",
            label: str | None = None, run: bool = True) -> int:
        """Add an intervention row (a Feature, a Direction, or a ready ``iw.Steer``); returns its id."""
        if isinstance(target, Steer):
            spec = target
            target, mode, positions = spec.target, spec.mode, spec.positions
            strength = spec.strength if strength is None else strength
            label = label or spec.target_label()
            site = str(spec.site) if spec.site is not None else None
        else:
            site = None
        if not (isinstance(target, Feature) or hasattr(target, "direction")):
            raise SteeringError(f"cannot steer with {type(target).__name__}: pass a dictionary feature "
                                f"(sae[12]), a Direction, or an iw.Steer")
        if mode not in MODES:
            raise SteeringError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
        if strength is None:
            strength = {"add": 8.0, "scale": 0.0, "clamp": 0.0, "ablate": 0.0}[mode]
        rid = next(self._ids)
        self._targets[rid] = (target, site)
        s = float(strength)
        span = max(abs(s) * 2, 10.0) if mode in ("add", "clamp") else 4.0
        pos = positions if isinstance(positions, str) else ",".join(str(int(x)) for x in positions) if isinstance(positions, (list, tuple)) else str(positions)
        row = {"id": rid, "label": label or _label(target), "strength": s, "mode": mode,
               "positions": pos, "enabled": True, "lo": -span if mode != "scale" else -2.0, "hi": span}
        if run:
            self.rows = [*self.rows, row]
        else:  # while building: no run per row
            ready, self._ready = self._ready, False
            try:
                self.rows = [*self.rows, row]
            finally:
                self._ready = ready
        return rid

    def remove(self, row_id: int) -> None:
        self.rows = [r for r in self.rows if r["id"] != row_id]
        self._targets.pop(row_id, None)

    def set_strength(self, row: int, strength: float) -> None:
        """Set the strength of the row at position ``row`` (what moving its slider does)."""
        self._edit(row, strength=float(strength))

    def set_mode(self, row: int, mode: str) -> None:
        self._edit(row, mode=mode)

    def _edit(self, i: int, **changes: Any) -> None:
        rows = [dict(r) for r in self.rows]
        if not 0 <= i < len(rows):
            raise SteeringError(f"row {i} does not exist: the panel has rows 0-{len(rows) - 1}")
        rows[i].update(changes)
        self.rows = rows

    def specs(self) -> list[Steer]:
        """The enabled rows as ``iw.Steer`` specs (what the next run uses)."""
        out = []
        for r in self.rows:
            if not r.get("enabled", True):
                continue
            if r.get("id") not in self._targets:
                raise SteeringError(f"row {r.get('id')!r} is not one of this panel's rows: add targets with panel.add(...)")
            target, site = self._targets[r["id"]]
            mode = r["mode"]
            if mode not in MODES:
                raise SteeringError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
            try:
                strength = None if mode == "ablate" else float(r["strength"])
            except (TypeError, ValueError):
                raise SteeringError(f"strength {r['strength']!r} of {r['label']!r} is not a number: "
                                    f"type a number such as 8 or -4") from None
            if strength is not None and not math.isfinite(strength):
                raise SteeringError(f"strength {r['strength']!r} of {r['label']!r} is not a finite number")
            kw: dict[str, Any] = {"mode": mode, "positions": _positions(r.get("positions", "all"))}
            if site is not None:
                kw["site"] = site
            elif not isinstance(target, Feature) and getattr(target, "site", None) is not None:
                kw["site"] = target.site
            out.append(Steer(target, strength, name=r["label"], **kw))
        if not out:
            base = self._noop_target()
            if base is None:
                raise SteeringError("nothing to steer with: add a feature (\"steer with this\" in a dashboard, "
                                    "or panel.add(sae[12])) or a direction")
            out.append(Steer(base, 0.0, name="(no steering)"))  # adding 0 x a direction: both arms equal
        return out

    def _noop_target(self) -> Any:
        if self._targets:
            return next(iter(self._targets.values()))[0]
        if self.dicts:
            return next(iter(self.dicts.values()))[0]
        return None

    # ------------------------------------------------------------------ live runs
    @traitlets.observe("prompt", "rows", "max_new_tokens", "temperature", "seed")
    def _on_change(self, change: dict[str, Any]) -> None:
        if self._ready and self.live:
            self.request()

    @guarded
    def request(self) -> int:
        """Queue a run with the current settings; returns its request id. A newer request makes
        queued ones skip and a running one stop early; only the newest result is shown."""
        if not self.prompt.strip():
            if self.prompt:
                raise SteeringError("the prompt is empty: type some text to continue")
            return self._latest
        specs = self.specs()
        with self._lock:
            self._latest += 1
            rid = self._latest
        self.request_id = rid
        self.busy = True
        self.status = "generating"
        args = (rid, self.prompt, specs, int(self.max_new_tokens), float(self.temperature), int(self.seed))
        self._pending = self._pool.submit(self._job, *args)
        return rid

    def _stale(self, rid: int) -> bool:
        with self._lock:
            return rid != self._latest

    def _job(self, rid: int, prompt: str, specs: list[Steer], n: int, temperature: float, seed: int) -> None:
        if self._stale(rid):
            return  # superseded while queued: never started
        try:
            def progress(step: int, total: int) -> None:
                if self._stale(rid):
                    raise _Superseded
                self.progress = step / max(total, 1)

            with model_lock(self.model):
                if self._stale(rid):  # superseded while waiting for the model
                    return
                self.runs += 1
                res = steer(self.model, specs).generate(prompt, max_new_tokens=n, temperature=temperature,
                                                        seed=seed, progress=progress)
            self._apply(rid, res)
        except _Superseded:
            return
        except Exception as e:  # noqa: BLE001 - shown in the panel, the worker lives on
            if not self._stale(rid):
                self.error = error_message(e)
                self.busy = False

    def _apply(self, rid: int, res: SteeringResult) -> bool:
        """Show ``res`` if it answers the newest request; an older one is dropped."""
        with self._lock:
            if rid != self._latest or rid <= self.result_id:
                return False
        self.result = res
        shift = res.next_token(0, k=8)
        row = lambda t: {"token": t[0], "id": t[1], "p_base": t[2], "p_steer": t[3]}  # noqa: E731
        with self.hold_sync():
            self.prompt_tokens = self.model.to_str_tokens(res.prompts[0])
            self.baseline = list(res.baseline.str_tokens[0]) if res.baseline is not None else []
            self.steered = list(res.steered.str_tokens[0])
            self.differs = list(res.differs[0]) if res.baseline is not None else []
            diff = res.logprob_diff[0].tolist() if res.logprob_diff is not None else []
            self.logprob_diff = to_bytes(diff)
            self.kl = float(res.mean_kl or 0.0)
            self.next_token = {"kl": shift.kl, "up": [row(t) for t in shift.up], "down": [row(t) for t in shift.down],
                               "top_baseline": [row(t) for t in shift.top_baseline[:5]],
                               "top_steered": [row(t) for t in shift.top_steered[:5]]}
            self.result_id = rid
            self.error = ""
            self.busy = False
            self.progress = -1.0
            self.status = ""
        return True

    def wait(self, timeout: float = 120.0) -> SteeringResult | None:
        """Block until queued runs finish (for scripts and tests); returns the shown result."""
        while True:
            fut = self._pending
            if fut is None:
                return self.result
            fut.result(timeout=timeout)
            if fut is self._pending:
                return self.result

    # ------------------------------------------------------------------ dose-response
    @guarded
    def dose_response(self, row: int | None = None, strengths: Sequence[float] | None = None,
                      target: str | None = None) -> Any:
        """Sweep one row's strength; the metric is the log-prob of ``target`` (default: the
        baseline's first generated token) after the prompt. Fills ``dose`` and returns the sweep."""
        i = self.dose_row if row is None else row
        if not 0 <= i < len(self.rows):
            raise SteeringError(f"choose a row for the dose-response chart (rows 0-{len(self.rows) - 1})")
        r = self.rows[i]
        if r["mode"] == "ablate":
            raise SteeringError("an ablation has no strength to sweep: switch the row to scale or add")
        spec = [s for s in self.specs() if s.name == r["label"]] or None
        if spec is None:
            raise SteeringError(f"row {i} ({r['label']!r}) is disabled: enable it to sweep it")
        spec0 = spec[0]
        if strengths is None:
            s = float(r["strength"]) or float(r["hi"])
            strengths = [0.0, s / 4, s / 2, 3 * s / 4, s, 1.5 * s, 2 * s] if r["mode"] != "scale" else [-1, 0, 0.5, 1, 1.5, 2, 3]
        tgt = target or self.dose_target or (self.baseline[0] if self.baseline else None)
        if not tgt:
            raise SteeringError("no target token: set dose_target (e.g. ' Paris') or run the panel once")
        with self.working(f"sweeping {len(strengths)} strengths"), model_lock(self.model):
            sw = steering_sweep(self.model, spec0, list(strengths), self.prompt, target=tgt)
        self.dose = {"row": i, "label": r["label"], "strengths": [float(x) for x in sw.strengths],
                     "values": [float(x) for x in sw.mean.tolist()], "baseline": float(sw.baseline.mean()),
                     "metric": sw.metric_name, "units": sw.units, "target": tgt, "current": float(r["strength"])}
        return sw

    # ------------------------------------------------------------------ links and actions
    def _on_steer_request(self, change: dict[str, Any]) -> None:
        f = change["new"]
        if f is not None:
            guarded(lambda self: self.add(f))(self)

    def _on_action(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        a = content.get("action")
        if a == "dose":
            self.dose_response(int(content.get("row", -1)), target=content.get("target") or None)
        elif a == "add":
            self._add_from_browser(str(content.get("dictionary", "")), content.get("feature"))
        elif a == "remove":
            self.remove(int(content.get("id", -1)))
        elif a == "rerun":
            self.request()

    @guarded
    def _add_from_browser(self, dictionary: str, feature: Any) -> None:
        if dictionary not in self.dicts:
            raise SteeringError(f"no dictionary {dictionary!r}: choose one of {', '.join(self.dicts) or '(none given)'}")
        self.add(self.dicts[dictionary][int(feature)])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().close()


def _label(target: Any) -> str:
    if isinstance(target, Feature):
        return f"{target.dictionary.name}#{target.index}" + (f" {target.label}" if target.label else "")
    return str(getattr(target, "name", None) or getattr(target, "label", None) or "direction")
