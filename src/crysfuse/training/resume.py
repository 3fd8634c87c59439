"""Crash safety for a run directory: one writer (a lock), a recorded state, and resumable epochs.

* :class:`RunLock` — an exclusive ``flock`` on ``run_dir/.lock``; a second process is refused at once. The
  kernel drops the lock when the holder dies, even by SIGKILL.
* ``status.json`` — ``running`` while training, ``finished`` once every output is written.
* :class:`ResumeCheckpoint` — after every epoch, the full training state (weights, optimiser, scheduler,
  loops, callbacks, RNG states) goes to ``resume/last.ckpt`` (temporary name, then rename) and the epoch to
  ``resume/last.json``. Resuming loads it with ``torch.load(weights_only=True)``: no code is unpickled.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from crysfuse.io import write_json_atomic, write_text_atomic

RESUME_DIR = "resume"
STATUS_FILE = "status.json"


class RunDirectoryError(RuntimeError):
    """The run directory is in use, finished, or holds a different run."""


class RunLock:
    """Exclusive, non-blocking lock on ``run_dir/.lock`` for the lifetime of a ``with`` block."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._handle: Any = None

    def __enter__(self) -> "RunLock":
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


def resume_checkpoint_path(run_dir: Path) -> Path | None:
    """The last completed epoch's training state, if one was saved."""
    path = Path(run_dir) / RESUME_DIR / "last.ckpt"
    return path if path.is_file() else None


def check_resume_state(path: Path) -> tuple[int, float]:
    """Load ``path`` with ``weights_only=True`` (tensors and plain containers only) or refuse it.

    Returns:
        The last completed epoch and the training seconds spent so far, both read from the checkpoint
        itself (so they cannot disagree with the state that is resumed).

    Raises:
        RunDirectoryError: The file is not a plain training state (corrupted, or it would run code).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        epoch = int(state["epoch"])
        seconds = float(state.get("callbacks", {}).get(ResumeCheckpoint.__name__, {}).get("seconds", 0.0))
    except Exception as err:  # noqa: BLE001 - any failure means the file cannot be trusted
        raise RunDirectoryError(f"refusing resume state {path}: not a plain training state ({err})") from err
    return epoch, seconds


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop ``metrics.jsonl`` lines of epochs after ``last_epoch`` (written before a crash, then redone)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("epoch", -1) <= last_epoch:
                kept.append(line)
        except json.JSONDecodeError:
            break  # a line cut by the crash: nothing after it can be trusted
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


class ResumeCheckpoint(L.Callback):
    """Saves the full training state after every epoch, atomically."""

    def __init__(self, run_dir: Path, *, clock_start: float) -> None:
        self.directory = Path(run_dir) / RESUME_DIR
        self.clock_start = clock_start

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def state_dict(self) -> dict[str, float]:
        """Training seconds so far, stored inside the checkpoint."""
        return {"seconds": time.perf_counter() - self.clock_start}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / "last.ckpt.tmp"
        trainer.save_checkpoint(tmp)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            os.replace(tmp, self.directory / "last.ckpt")
            # A progress marker for people and tools; resuming reads epoch and seconds from last.ckpt itself.
            write_json_atomic(self.directory / "last.json", {"epoch": trainer.current_epoch})


class RngState(L.Callback):
    """Carries the torch, numpy and Python RNG states through a checkpoint (as tensors and plain lists)."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        py_state = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        np_state = state_dict["numpy"]
        np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                             np_state["has_gauss"], np_state["gauss"]))
        py_state = state_dict["python"]
        random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss"]))
