"""Batched inference over prepared items, returning predictions and per-sample diagnostics."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from crysfuse.data.dataset import CrystalData, make_loader

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """``prediction`` and ``target`` arrays ``[M]`` in target units; per-sample gate arrays by key."""

    ids: list[str]
    target: np.ndarray
    prediction: np.ndarray
    gates: dict[str, np.ndarray] = field(default_factory=dict)
    precision: str = "32-true"
    """The precision the model ran at (a Lightning setting such as ``32-true`` or ``bf16-mixed``)."""


def autocast_dtype(precision: str | int) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision setting (``bf16-mixed`` → bfloat16, ``16-mixed`` →
    float16), ``None`` for full precision (``32-true``, ``64-true``)."""
    text = str(precision).lower()
    if text.startswith("bf16"):
        return torch.bfloat16
    if text.startswith("16"):
        return torch.float16
    return None


def model_precision(model: torch.nn.Module) -> str:
    """The precision a crysfuse model was trained with (its config's ``train.precision``; ``32-true`` when
    the model carries no config)."""
    config = getattr(model, "config", None)
    return str(config.train.precision) if config is not None else "32-true"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), as oneDNN reports it. Without it
    PyTorch emulates bfloat16 and ``bf16-mixed`` runs several times *slower* than float32 (docs/benchmarks.md,
    "CPUs without native bfloat16"). ``True`` where PyTorch cannot tell (no oneDNN), so nothing is reported."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


@functools.cache
def warn_if_bf16_is_emulated(precision: str | int, device_type: str) -> bool:
    """Log a warning (once per setting) when ``precision`` asks for bfloat16 on a CPU that only emulates it;
    returns whether it warned."""
    if device_type != "cpu" or autocast_dtype(precision) is not torch.bfloat16 or cpu_has_native_bf16():
        return False
    logger.warning(
        "precision %s on a CPU without native bfloat16 (%s): PyTorch emulates it, which is several times slower "
        "than 32-true here; use train.precision=32-true on this machine", precision,
        torch.backends.cpu.get_cpu_capability())
    return True


def precision_context(precision: str | int, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for a reduced-precision setting (weights stay float32), a no-op for full precision."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    warn_if_bf16_is_emulated(str(precision), device.type)
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict_items(
    model: torch.nn.Module,
    ids: Sequence[str],
    items: Sequence[CrystalData],
    *,
    batch_size: int = 64,
    precision: str | None = None,
) -> Predictions:
    """Run ``model`` (in eval mode) over ``items``; diagnostics of shape ``[B]`` are collected per sample.

    ``precision`` defaults to the one the model was trained with (``train.precision``), so a run's own
    ``predictions_test.csv`` and a later ``crysfuse predict`` compute the same numbers."""
    model.eval()
    device = next(model.parameters()).device
    precision = precision or model_precision(model)
    predictions, targets = [], []
    gates: dict[str, list[np.ndarray]] = {}
    for batch in make_loader(items, batch_size=batch_size, shuffle=False):
        batch = batch.to(device)
        with precision_context(precision, device):
            output = model(batch)
        predictions.append(output.prediction.double().cpu().numpy())
        targets.append(batch.y.double().cpu().numpy())
        for key, value in output.diagnostics.items():
            if value.dim() == 1 and value.numel() == batch.num_graphs:
                gates.setdefault(key, []).append(value.double().cpu().numpy())
    empty = np.zeros(0)
    return Predictions(
        ids=list(ids),
        target=np.concatenate(targets) if targets else empty,
        prediction=np.concatenate(predictions) if predictions else empty,
        gates={k: np.concatenate(v) for k, v in gates.items()},
        precision=str(precision),
    )


def regression_metrics(target: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and max error over finite targets (``nan`` when there are none)."""
    mask = np.isfinite(target)
    if not mask.any():
        return {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan"), "max_error": float("nan")}
    error = prediction[mask] - target[mask]
    variance = float(np.var(target[mask]))
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1.0 - np.mean(error**2) / variance) if variance > 0 else float("nan"),
        "max_error": float(np.max(np.abs(error))),
    }


def combine_members(
    members: Sequence[tuple[Sequence[str], np.ndarray]],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ids every member predicted (in the first member's order), the mean and the std over members
    (population std, 0 for a single member)."""
    values = [dict(zip(ids, prediction)) for ids, prediction in members]
    kept = [i for i in members[0][0] if all(i in v for v in values)]
    stacked = np.array([[v[i] for i in kept] for v in values], dtype=float).reshape(len(values), len(kept))
    return kept, stacked.mean(axis=0), stacked.std(axis=0)
