"""Fixtures for the notebook tests: a kernelspec for this interpreter, and a timing summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nbrun import KERNEL_NAME, TIMINGS, install_kernelspec  # noqa: E402


@pytest.fixture(scope="session")
def notebook_kernel(tmp_path_factory):
    """JUPYTER_PATH pointing at a kernelspec for ``sys.executable``; yields the kernel name."""
    mp = pytest.MonkeyPatch()
    root = install_kernelspec(tmp_path_factory.mktemp("jupyter"))
    mp.setenv("JUPYTER_PATH", str(root))
    yield KERNEL_NAME
    mp.undo()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not TIMINGS:
        return
    tr = terminalreporter
    tr.section("notebook execution times")
    for name, t in TIMINGS.items():
        tr.write_line(f"{name:34s} wall {t['seconds']:6.1f} s   kernel CPU {t['cpu']:6.1f} s   "
                      f"peak RSS {t['rss']:5.0f} MB")
    tr.write_line(f"{'total':34s} wall {sum(t['seconds'] for t in TIMINGS.values()):6.1f} s")
