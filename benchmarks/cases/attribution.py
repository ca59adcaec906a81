"""Attribution graph on SmolLM2 with 30 transcoders vs a per-target backward baseline.

Ours: ``iw.attribute`` end to end (one trace, feature ranking in rounds, batched backward passes
over position prefixes, graph assembly). Baseline (``benchmarks/baseline_attribution.py``): the
same edges for the same targets (ours picks them; the baseline skips ranking), one
``torch.autograd.grad`` per target over the whole prompt. Both must give the same numbers
(max relative difference <= 1e-4) before anything is timed.

Transcoders: the starter pack when it is built, else random TopK transcoders of the pack's shape
(width 1024, k 32). Quick (CI): 8 tokens, 128 feature nodes. Full: 16 tokens, 1024 nodes.

    python -m benchmarks.cases.attribution            # full (by hand), writes results/attribution.json
    python -m benchmarks.cases.attribution --quick
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import compare, machine

TEXT = ("The Eiffel Tower is in the city of Paris, the capital of France, and it was built for "
        "the World's Fair of 1889 by the company of Gustave Eiffel.")


def _prompt(model: Any, n_tokens: int) -> str:
    ids = model.tokenizer(TEXT)["input_ids"][:n_tokens]
    text = model.tokenizer.decode(ids)
    assert len(model.tokenizer(text)["input_ids"]) == n_tokens
    return text


def _transcoders(model: Any) -> tuple[Any, str]:
    import interp_widgets as iw

    try:
        return iw.load_transcoders("starter", model=model), "starter pack"
    except (iw.errors.DictionaryError, FileNotFoundError):
        tcs = {L: iw.Transcoder.random(d_in=model.d_model, n_features=1024, layer=L,
                                       architecture="topk", k=32, seed=L,
                                       metadata={"model": model.name})
               for L in range(model.n_layers)}
        return iw.TranscoderSet(tcs, name="random-topk-1024"), "random TopK width 1024, k 32"


def same_numbers(graph: Any) -> float:
    """Max |ours - baseline| / max |baseline| over every edge of the graph (targets x sources)."""
    from benchmarks.baseline_attribution import graph_rows, per_target_rows

    idx, cols, prep = graph_rows(graph)
    base = per_target_rows(prep, idx)[:, cols]
    n = graph.nodes
    n_f = int((n["kind"] == "feature").sum())
    n_src = len(cols)
    A = graph.adjacency.toarray()
    ours = torch.from_numpy(A[list(range(n_f)) + list(range(n_src, len(n)))][:, :n_src]).float()
    # baseline rows are logits first, ours features first
    n_log = len(prep.logit_ids)
    base = torch.cat([base[n_log:], base[:n_log]])
    return float((ours - base).abs().max() / base.abs().max())


def _case(model: Any, n_tokens: int, max_feature_nodes: int, repeats: int) -> dict[str, Any]:
    import interp_widgets as iw
    from benchmarks.baseline_attribution import graph_rows, per_target_rows

    tcs, tc_name = _transcoders(model)
    prompt = _prompt(model, n_tokens)
    kw = dict(max_feature_nodes=max_feature_nodes, batch_size=64, progress=False)
    graph = iw.attribute(model, prompt, tcs, **kw)
    rel = same_numbers(graph)
    assert rel <= 1e-4, rel
    idx, _, prep = graph_rows(graph)

    def ours() -> Any:
        return iw.attribute(model, prompt, tcs, **kw)

    def baseline() -> Any:
        return per_target_rows(prep, idx)

    est = iw.estimate_attribution(model, prompt, tcs, max_feature_nodes=max_feature_nodes)
    r = compare(f"attribute SmolLM2 {n_tokens} tokens, 30 transcoders, {max_feature_nodes} nodes",
                ours=ours, baseline=baseline, repeats=repeats, warmup=1,
                units=len(graph.targets) + max_feature_nodes, unit_name="targets",
                notes=f"transcoders: {tc_name}; baseline: one autograd backward per target over "
                      f"the whole prompt (given our targets, no ranking)")
    # CPU seconds of one run each: on a shared machine wall time mostly measures the neighbours
    cpu = {}
    for side, fn in (("ours", ours), ("baseline", baseline)):
        c = time.process_time()
        fn()
        cpu[side] = time.process_time() - c
    r.update(ours_cpu_s=cpu["ours"], baseline_cpu_s=cpu["baseline"],
             cpu_speedup=cpu["baseline"] / cpu["ours"])
    r.update(max_rel_diff=rel, n_active_features=graph.metadata["n_active_features"],
             n_edges=graph.n_edges, estimate_s=est.seconds, estimate_bytes=est.memory_bytes,
             under_30s=r["ours_median_s"] < 30.0, speedup=1.0 / r["ratio"],
             torch_threads=torch.get_num_threads(), load_avg=os.getloadavg())
    return r


def run(quick: bool) -> list[dict]:
    import interp_widgets as iw

    # on a shared, loaded machine one thread is far faster than two (OpenMP barriers spin)
    if os.environ.get("IW_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["IW_BENCH_THREADS"]))
    model = iw.load_model()
    if quick:
        results = [_case(model, 8, 128, repeats=1)]
    else:
        results = [_case(model, 16, 1024, repeats=3)]
    for r in results:
        r["machine"] = machine()
    return results


if __name__ == "__main__":
    t = time.time()
    out = run(quick="--quick" in sys.argv)
    for r in out:
        print(f"{r['name']}: ours {r['ours_median_s']:.2f}s, baseline {r['baseline_median_s']:.2f}s, "
              f"speedup {r['speedup']:.2f}x (CPU time {r['cpu_speedup']:.2f}x: "
              f"{r['ours_cpu_s']:.1f}s vs {r['baseline_cpu_s']:.1f}s), "
              f"max rel diff {r['max_rel_diff']:.2e}")
    if "--quick" not in sys.argv:
        path = Path(__file__).resolve().parents[1] / "results" / "attribution.json"
        path.write_text(json.dumps(out, indent=1, default=str))
    print(f"total {time.time() - t:.0f}s")
