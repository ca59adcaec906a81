"""JupyterLab 4 + Debian chromium (Playwright) for the real-browser tests.

One JupyterLab per test session on 127.0.0.1 in a temp dir (its own config, data, runtime and
settings dirs, so nothing from the machine leaks in); notebooks are written there, opened in one
chromium page, and run with JupyterLab's own commands. The kernel behind a notebook is also
reachable from the test through jupyter_client, to read and set Python-side state.

    >>> nb = lab.open_notebook("demo.ipynb", ["import interp_widgets as iw", "iw.LogitLens(m, 'x')"])
    >>> nb.run_all()
    >>> nb.kernel_eval("lens.prompt")
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("IW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--disable-default-apps",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll a condition (not a sleep-as-sync: returns as soon as it holds)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last failure
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


class Lab:
    """A JupyterLab server in ``root`` plus one chromium page."""

    def __init__(self, root: Path):
        from interp_widgets.cli import jupyter_args

        self.root = root
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.base = f"http://127.0.0.1:{self.port}"
        home = root / ".home"
        dirs = {
            "JUPYTER_CONFIG_DIR": home / "config",
            "JUPYTER_DATA_DIR": home / "data",
            "JUPYTER_RUNTIME_DIR": home / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": home / "settings",
            "JUPYTERLAB_WORKSPACES_DIR": home / "workspaces",
            "IPYTHONDIR": home / "ipython",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.runtime = dirs["JUPYTER_RUNTIME_DIR"]
        # render every cell (no windowing), so panels far down the notebook are laid out
        tracker = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True, exist_ok=True)
        tracker.write_text(json.dumps({"windowingMode": "none"}))
        notif = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notif.parent.mkdir(parents=True, exist_ok=True)
        notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
        # comms over kernel subshells (JupyterLab >= 4.4 default with ipykernel 7) run widget
        # callbacks on a second kernel thread, and under load some kernel->browser widget updates
        # never reach the model (jupyterlab/jupyterlab#19719); keep comms on the main shell
        kernels = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension" / "kernels-settings.jupyterlab-settings"
        kernels.write_text(json.dumps({"commsOverSubshells": "disabled"}))
        env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, "PYTHONUNBUFFERED": "1"}
        env.pop("JUPYTER_PATH", None)
        self.log = open(root / "jupyterlab.log", "w")  # noqa: SIM115 - closed in close()
        cmd = [sys.executable, "-m", "jupyter", "lab", *jupyter_args(self.port, root),
               f"--IdentityProvider.token={self.token}", "--LabApp.expose_app_in_browser=True",
               "--ServerApp.open_browser=False"]
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._up, 90, "JupyterLab to answer /api/status")
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        self.context = self.browser.new_context(viewport={"width": 1600, "height": 1200}, device_scale_factor=1)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited: see {self.root / 'jupyterlab.log'}")
        try:
            with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base}{path}?token={self.token}", timeout=10) as r:
            return json.loads(r.read())

    def open_notebook(self, name: str, cells: list[str]) -> Notebook:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(self.root / name))
        return Notebook(self, name, len(cells))

    def close(self) -> None:
        for step in (lambda: self.context.close(), lambda: self.browser.close(), lambda: self._pw.stop()):
            try:
                step()
            except Exception:  # noqa: BLE001,S110 - best effort teardown
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Notebook:
    """An open notebook in the Lab page, and a jupyter_client connection to its kernel."""

    def __init__(self, lab: Lab, name: str, n_cells: int):
        self.lab = lab
        self.name = name
        self.n_cells = n_cells
        self.page = lab.page
        self.page.goto(f"{lab.base}/lab/tree/{name}?token={lab.token}&reset")
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell && window.jupyterapp.shell.currentWidget", timeout=60_000)
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        # the kernel session exists and is idle
        wait_until(self._kernel_id, 60, "the notebook's kernel to start")
        self.page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget; const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k && k.status === 'idle'; }", timeout=60_000)
        self._kc: Any = None

    def _kernel_id(self) -> str | None:
        for s in self.lab.api("/api/sessions"):
            if s.get("path", "").endswith(self.name) and s.get("kernel"):
                return str(s["kernel"]["id"])
        return None

    # ---- running cells in the browser
    def run_all(self, timeout: float = 120) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_function(
            """(n) => {
              const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');
              if (cells.length < n) return false;
              for (const c of cells) {
                const p = c.querySelector('.jp-InputPrompt');
                const t = p ? p.textContent : '';
                if (!/\\[\\d+\\]/.test(t)) return false;
              }
              return true;
            }""", arg=self.n_cells, timeout=timeout * 1000)
        errors = self.page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t.split("\n")[0]]
        if tracebacks:
            raise AssertionError("a notebook cell failed:\n" + "\n---\n".join(tracebacks))

    def run_cell(self, i: int, timeout: float = 120) -> None:
        """Run one cell (as if selected and Shift+Enter) and wait until it has finished."""
        before = self.cell(i).locator(".jp-InputPrompt").inner_text()
        self.page.evaluate(
            "(i) => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = i;"
            " return window.jupyterapp.commands.execute('notebook:run-cell'); }", i)
        self.page.wait_for_function(
            "([el, before]) => { const t = el.querySelector('.jp-InputPrompt').textContent; return /\\[\\d+\\]/.test(t) && t !== before; }",
            arg=[self.cell(i).element_handle(), before], timeout=timeout * 1000)

    def cell(self, i: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(i)

    def panel(self, i: int) -> Any:
        """The panel rendered by cell ``i`` (its ``.iw-panel`` root)."""
        return self.cell(i).locator(".iw-panel").first

    # ---- the kernel, from the test
    @property
    def kc(self) -> Any:
        if self._kc is None:
            from jupyter_client import BlockingKernelClient

            kid = self._kernel_id()
            kc = BlockingKernelClient(connection_file=str(self.lab.runtime / f"kernel-{kid}.json"))
            kc.load_connection_file()
            kc.start_channels()
            kc.wait_for_ready(timeout=30)
            self._kc = kc
        return self._kc

    def kernel_exec(self, code: str, timeout: float = 60) -> None:
        """Run statements in the notebook's kernel (as if from another cell, without output)."""
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: None, store_history=False)
        if reply["content"]["status"] != "ok":
            c = reply["content"]
            raise AssertionError(f"kernel code failed: {c.get('ename')}: {c.get('evalue')}")

    def kernel_eval(self, expr: str, timeout: float = 60) -> Any:
        """A JSON-able Python expression evaluated in the notebook's kernel."""
        reply = self.kc.execute_interactive(
            "", user_expressions={"v": f"__import__('json').dumps({expr})"}, timeout=timeout,
            output_hook=lambda m: None, store_history=False)
        v = reply["content"]["user_expressions"]["v"]
        if v.get("status") != "ok":
            raise AssertionError(f"kernel expression {expr!r} failed: {v.get('ename')}: {v.get('evalue')}")
        return json.loads(ast.literal_eval(v["data"]["text/plain"]))

    def wait_kernel(self, expr: str, pred: Callable[[Any], bool], timeout: float = 60, what: str | None = None) -> Any:
        """Poll a kernel expression until ``pred(value)`` holds; returns the value."""
        box: dict[str, Any] = {}

        def check() -> bool:
            box["v"] = self.kernel_eval(expr)
            return bool(pred(box["v"]))

        try:
            wait_until(check, timeout, what or f"kernel {expr!r}", interval=0.2)
        except TimeoutError as e:
            raise AssertionError(f"{e}; last value {box.get('v')!r}") from None
        return box["v"]

    def close(self) -> None:
        if self._kc is not None:
            self._kc.stop_channels()


def screenshot(locator: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    return path


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None
