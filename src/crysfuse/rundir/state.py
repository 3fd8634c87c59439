"""The state of a run directory: one writer at a time (a lock) and a recorded status.

* :class:`RunLock` — an exclusive ``flock`` on ``run_dir/.lock``; a second process is refused at once. The
  kernel drops the lock when the holder dies, even by SIGKILL.
* ``status.json`` — ``running`` while training, ``finished`` once every output is written.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from crysfuse.io import write_json_atomic
from crysfuse.rundir.layout import (
    LOCK_FILE,
    RESUME_CHECKPOINT_FILE,
    STATUS_FILE,
    SUMMARY_FILE,
    resume_dir,
)


class RunDirectoryError(RuntimeError):
    """The run directory is in use, finished, or holds a different run."""


class RunLock:
    """Exclusive, non-blocking lock on ``run_dir/.lock`` for the lifetime of a ``with`` block."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._handle: Any = None

    def __enter__(self) -> RunLock:  # noqa: PYI034
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirectoryError(
                f"run directory {self.path.parent} is in use by {holder}; wait for it or choose another --run-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def read_status(run_dir: Path) -> dict[str, Any]:
    """``status.json`` of a run directory (``{}`` when absent or unreadable)."""
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    """Record the run's state (``running`` or ``finished``) with a timestamp."""
    write_json_atomic(Path(run_dir) / STATUS_FILE,
                      {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})


def update_status(run_dir: Path, **extra: Any) -> None:
    """Add ``extra`` to the recorded status, keeping its state and other fields."""
    status = read_status(run_dir)
    write_status(run_dir, status.pop("state", "running"), **{**status, **extra})


def is_finished(run_dir: Path) -> bool:
    """Status ``finished`` and a ``summary.json``: every output of the run is there."""
    return read_status(run_dir).get("state") == "finished" and (Path(run_dir) / SUMMARY_FILE).exists()


def resume_checkpoint_path(run_dir: Path) -> Path | None:
    """The last completed epoch's training state, if one was saved."""
    path = resume_dir(run_dir) / RESUME_CHECKPOINT_FILE
    return path if path.is_file() else None
