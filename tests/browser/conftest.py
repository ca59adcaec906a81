"""Session fixtures for the real-browser suite: one JupyterLab + one chromium page."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Lab, have_chromium  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if not have_chromium():
        raise RuntimeError(
            "the browser tests need Debian's chromium at /usr/bin/chromium: "
            "apt-get install -y chromium fonts-noto-cjk (.ci/run does this), or set IW_CHROMIUM")
    lab = Lab(tmp_path_factory.mktemp("lab"))
    yield lab
    lab.close()


@pytest.fixture(scope="session")
def nb(lab):
    """The panels notebook, opened and run once for the session."""
    from notebook_cells import CELLS

    notebook = lab.open_notebook("panels.ipynb", list(CELLS.values()))
    notebook.run_all(timeout=240)
    yield notebook
    notebook.close()
