"""Import cost, each in a fresh interpreter: what ``import interp_widgets`` adds.

- ``import interp_widgets`` vs ``import torch``: the package is lazy, so it should cost a small
  fraction of torch (target: adds <= 0.3 s over a bare interpreter).
- ``import torch; import interp_widgets`` vs ``import torch``: the added cost for a torch user.
- ``iw.load_model`` (first touch of the model layer: torch + our models package) vs
  ``import torch``.

    python -m benchmarks import_time
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.harness import compare


def _python(code: str):
    def call() -> None:
        subprocess.run([sys.executable, "-c", code], check=True)

    return call


def run(quick: bool) -> list[dict]:
    repeats, warmup = (1, 0) if quick else (9, 1)
    bare = compare("python -c pass (reference)", ours=_python("pass"), baseline=_python("pass"),
                   repeats=repeats, warmup=warmup)
    results = []
    r = compare(
        "import interp_widgets vs import torch",
        ours=_python("import interp_widgets"),
        baseline=_python("import torch"),
        repeats=repeats, warmup=warmup,
        notes="fresh interpreters; the public API is resolved lazily",
    )
    r["added_s"] = r["ours_median_s"] - bare["ours_median_s"]
    r["target"] = "adds <= 0.3 s over a bare interpreter"
    r["ok"] = r["added_s"] <= 0.3
    r["notes"] += f"; adds {r['added_s'] * 1000:.0f} ms over `python -c pass`"
    results.append(r)

    r = compare(
        "import torch + interp_widgets vs import torch",
        ours=_python("import torch, interp_widgets"),
        baseline=_python("import torch"),
        repeats=repeats, warmup=warmup,
    )
    r["added_s"] = r["ours_median_s"] - r["baseline_median_s"]
    r["target"] = "adds <= 0.3 s"
    r["ok"] = r["added_s"] <= 0.3
    r["notes"] = f"adds {r['added_s'] * 1000:.0f} ms"
    results.append(r)
    if quick:
        return results

    r = compare(
        "first touch of iw.load_model vs import torch",
        ours=_python("import interp_widgets as iw; iw.load_model"),
        baseline=_python("import torch"),
        repeats=repeats, warmup=warmup,
    )
    r["added_s"] = r["ours_median_s"] - r["baseline_median_s"]
    r["notes"] = (f"adds {r['added_s'] * 1000:.0f} ms (models layer; transformers and nnsight load "
                  f"on the first load_model call)")
    results.append(r)
    return results
