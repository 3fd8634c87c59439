"""Resumable epochs: the full training state after every epoch, and loading it back safely.

* :class:`ResumeCheckpoint` — after every epoch, the full training state (weights, optimiser, scheduler,
  loops, callbacks, RNG states) goes to ``resume/last.ckpt`` (temporary name, then rename) and the epoch to
  ``resume/last.json``. Resuming loads it with ``torch.load(weights_only=True)``: no code is unpickled.
* :class:`RngState` carries the random number generators through that checkpoint.

The run directory's lock and status live in :mod:`crysfuse.rundir.state`.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from crysfuse.io import write_json_atomic
from crysfuse.rundir.layout import RESUME_CHECKPOINT_FILE, RESUME_MARKER_FILE, resume_dir
from crysfuse.rundir.state import RunDirectoryError


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
    except Exception as err:
        raise RunDirectoryError(f"refusing resume state {path}: not a plain training state ({err})") from err
    return epoch, seconds


class ResumeCheckpoint(L.Callback):
    """Saves the full training state after every epoch, atomically."""

    def __init__(self, run_dir: Path, *, clock_start: float) -> None:
        self.directory = resume_dir(run_dir)
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
        tmp = self.directory / f"{RESUME_CHECKPOINT_FILE}.tmp"
        trainer.save_checkpoint(tmp)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            os.replace(tmp, self.directory / RESUME_CHECKPOINT_FILE)
            # A progress marker for people and tools; resuming reads epoch and seconds from last.ckpt itself.
            write_json_atomic(self.directory / RESUME_MARKER_FILE, {"epoch": trainer.current_epoch})


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
