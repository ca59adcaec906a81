"""Run the benchmark cases: ``python -m benchmarks [--quick] [--list] [case ...]``.

A case is ``benchmarks/cases/<name>.py`` defining ``run(quick: bool) -> list[dict]`` (dicts as
returned by :func:`benchmarks.harness.compare`). ``--quick`` runs small sizes in seconds and only
prints (CI runs it); a full run writes ``benchmarks/results/<case>.json`` and regenerates the table
in ``benchmarks/README.md`` from every JSON file there.

    $ python -m benchmarks --quick                 # every case, small, printed
    $ python -m benchmarks model_load              # one case, full, saved + README table
    $ python -m benchmarks --table                 # only rebuild the README table
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
RESULTS = HERE / "results"
README = HERE / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def discover(cases_dir: Path = CASES) -> list[str]:
    """Case names: every ``cases/*.py`` except ``__init__`` and ``_private`` modules."""
    return sorted(p.stem for p in cases_dir.glob("*.py") if not p.stem.startswith("_"))


def run_case(name: str, quick: bool) -> list[dict[str, Any]]:
    module = importlib.import_module(f"benchmarks.cases.{name}")
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"benchmarks/cases/{name}.py has no run(quick) function")
    results = module.run(quick)
    if not isinstance(results, list) or not all(isinstance(r, dict) and "name" in r for r in results):
        raise TypeError(f"benchmarks/cases/{name}.py: run() must return a list of dicts with a 'name'")
    return results


def _fmt_s(x: Any) -> str:
    if not isinstance(x, (int, float)):
        return "-"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def summary_line(r: dict[str, Any]) -> str:
    line = (f"  {r['name']}: ours {_fmt_s(r.get('ours_median_s'))}, "
            f"baseline {_fmt_s(r.get('baseline_median_s'))}, ratio {r.get('ratio', float('nan')):.3f}")
    if "throughput_ratio" in r:
        line += f", throughput x{r['throughput_ratio']:.2f}"
    if "target" in r:
        line += f"  [target {r['target']}: {'met' if r.get('ok') else 'MISSED'}]"
    return line


def _cell(x: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def machine_text(m: dict[str, Any]) -> str:
    text = (f"{m.get('cpus', '?')} CPUs ({m.get('processor', '?')}), {m.get('platform', '?')}, "
            f"Python {m.get('python', '?')}, torch {m.get('torch', '?')} "
            f"({m.get('torch_threads', '?')} threads)")
    if "load_average_1min" in m:
        text += f", load average {m['load_average_1min']} when saved"
    return text


def _load_result_file(f: Path) -> dict[str, Any]:
    """A results file as ``{"case", "date", "machine", "results"}``; also accepts a bare list of
    result dicts (each may carry its own ``machine``), as a case's own ``__main__`` may write."""
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"case": f.stem, "results": [{"name": f"unreadable {f.name}: {e}"}]}
    if isinstance(data, list):
        results = [r for r in data if isinstance(r, dict) and "name" in r]
        m = next((r["machine"] for r in results if isinstance(r.get("machine"), dict)), {})
        date = time.strftime("%Y-%m-%d", time.localtime(f.stat().st_mtime))
        return {"case": f.stem, "date": date, "machine": m, "results": results}
    if not isinstance(data, dict):
        return {"case": f.stem, "results": [{"name": f"unexpected JSON in {f.name}"}]}
    return data


def render_table(results_dir: Path = RESULTS) -> str:
    """A markdown table of every saved result, with a footnote per distinct machine."""
    rows, machines = [], []
    for f in sorted(results_dir.glob("*.json")):
        data = _load_result_file(f)
        m = machine_text(data.get("machine", {}))
        if m not in machines:
            machines.append(m)
        for r in data.get("results", []):
            thr = f"x{r['throughput_ratio']:.2f}" if "throughput_ratio" in r else "-"
            target = r.get("target", "")
            if target:
                target = f"{target} ({'met' if r.get('ok') else 'missed'})"
            rows.append(
                f"| {_cell(data.get('case', f.stem))} | {_cell(r['name'])} | {_fmt_s(r.get('ours_median_s'))} | "
                f"{_fmt_s(r.get('baseline_median_s'))} | {r.get('ratio', float('nan')):.3f} | {thr} | "
                f"{_cell(target or '-')} | {data.get('date', '?')} [{machines.index(m) + 1}] | "
                f"{_cell(r.get('notes', ''))} |"
            )
    if not rows:
        return "No saved results yet: run `python -m benchmarks` (full) to measure.\n"
    head = ("| case | benchmark | ours (median) | baseline (median) | ratio (time) | throughput | "
            "target | measured | notes |\n|---|---|---|---|---|---|---|---|---|\n")
    notes = "\n".join(f"[{i + 1}] {m}" for i, m in enumerate(machines))
    return head + "\n".join(rows) + "\n\nMachines:\n\n" + notes + "\n"


def update_readme(readme: Path = README, results_dir: Path = RESULTS) -> None:
    """Replace the text between the results markers in ``readme`` (appending them if absent)."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    table = f"{START}\n{render_table(results_dir)}{END}"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + table + after
    else:
        text = text.rstrip("\n") + "\n\n## Results\n\n" + table + "\n"
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(readme)  # concurrent full runs each rewrite the whole table from results/


def save(name: str, results: list[dict[str, Any]], results_dir: Path = RESULTS) -> Path:
    from benchmarks.harness import machine

    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    m = machine()
    if hasattr(os, "getloadavg"):
        m["load_average_1min"] = round(os.getloadavg()[0], 2)  # a busy machine inflates timings
    payload = {"case": name, "date": time.strftime("%Y-%m-%d"), "machine": m, "results": results}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)  # never a half-written result file
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", help="case names (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes, print only (what CI runs)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--table", action="store_true", help="only regenerate the README table")
    args = p.parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    if args.table:
        update_readme()
        print(f"updated {README}")
        return 0
    unknown = [c for c in args.cases if c not in available]
    if unknown:
        print(f"unknown case(s) {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    failed = []
    for name in args.cases or available:
        print(f"[{name}] {'quick' if args.quick else 'full'} run ...", flush=True)
        t = time.perf_counter()
        try:
            results = run_case(name, args.quick)
        except KeyboardInterrupt:
            print(f"[{name}] interrupted; nothing saved", file=sys.stderr)
            return 130
        except Exception:  # noqa: BLE001 (one broken case must not hide the others)
            traceback.print_exc()
            failed.append(name)
            continue
        for r in results:
            print(summary_line(r))
        print(f"[{name}] done in {time.perf_counter() - t:.1f} s", flush=True)
        if not args.quick:
            print(f"[{name}] saved {save(name, results)}")
    if not args.quick:
        update_readme()
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
