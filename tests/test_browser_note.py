"""``make test`` on a machine without Chromium says so at the end of the run, not only in a skip line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import chromium_or_skip

ROOT = Path(__file__).resolve().parents[1]


def test_chromium_probe():
    """Skipped (and counted) where there is no browser; elsewhere the browser is found."""
    _, chromium = chromium_or_skip()
    assert Path(chromium).exists()


def test_a_run_without_chromium_ends_with_a_note():
    env = {**os.environ, "CRYSFUSE_TEST_CHROMIUM": "no-such-browser-here", "CI": ""}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_browser_note.py::test_chromium_probe"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    note = [line for line in lines if line.startswith("NOTE: 1 browser test(s) were skipped")]
    assert note and "install Debian's chromium" in note[0]
