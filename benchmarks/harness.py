"""Measure ours against a baseline in the same process: interleaved, repeated, median + spread.

    >>> from benchmarks.harness import compare
    >>> r = compare("steered generate", ours=lambda: ..., baseline=lambda: ..., repeats=5)
    >>> r["ratio"]      # ours_time / baseline_time (lower is better for ours)
"""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def _time(fn: Callable[[], Any]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(
    name: str,
    *,
    ours: Callable[[], Any],
    baseline: Callable[[], Any],
    repeats: int = 5,
    warmup: int = 1,
    units: float | None = None,
    unit_name: str = "items",
    notes: str = "",
) -> dict[str, Any]:
    """Run ``ours`` and ``baseline`` alternately ``repeats`` times (after ``warmup`` each).

    Returns times (s), medians, spreads (min-max) and ``ratio = ours / baseline`` (time);
    with ``units`` (e.g. tokens per call) also throughputs and ``throughput_ratio``.
    """
    for _ in range(warmup):
        baseline()
        ours()
    t_ours, t_base = [], []
    for i in range(repeats):
        # alternate which goes first so drift and caching do not favour one side
        if i % 2 == 0:
            t_base.append(_time(baseline))
            t_ours.append(_time(ours))
        else:
            t_ours.append(_time(ours))
            t_base.append(_time(baseline))
    mo, mb = statistics.median(t_ours), statistics.median(t_base)
    out: dict[str, Any] = {
        "name": name,
        "ours_s": t_ours,
        "baseline_s": t_base,
        "ours_median_s": mo,
        "baseline_median_s": mb,
        "ours_spread_s": [min(t_ours), max(t_ours)],
        "baseline_spread_s": [min(t_base), max(t_base)],
        "ratio": mo / mb if mb > 0 else float("inf"),
        "repeats": repeats,
        "notes": notes,
    }
    if units:
        out["units"] = units
        out["unit_name"] = unit_name
        out["ours_per_s"] = units / mo
        out["baseline_per_s"] = units / mb
        out["throughput_ratio"] = mb / mo
    return out


def machine() -> dict[str, Any]:
    import os

    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
