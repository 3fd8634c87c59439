"""Batched inference over prepared items, returning predictions and per-sample diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from crysfuse.data.dataset import CrystalData, make_loader


@dataclass
class Predictions:
    """``prediction`` and ``target`` arrays ``[M]`` in target units; per-sample gate arrays by key."""

    ids: list[str]
    target: np.ndarray
    prediction: np.ndarray
    gates: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def predict_items(
    model: torch.nn.Module, ids: Sequence[str], items: Sequence[CrystalData], *, batch_size: int = 64
) -> Predictions:
    """Run ``model`` (in eval mode) over ``items``; diagnostics of shape ``[B]`` are collected per sample."""
    model.eval()
    device = next(model.parameters()).device
    predictions, targets = [], []
    gates: dict[str, list[np.ndarray]] = {}
    for batch in make_loader(items, batch_size=batch_size, shuffle=False):
        batch = batch.to(device)
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
