"""Uncertainty from ensembles of seeds: how well the members' spread ranks the ensemble's errors on the test
set (Spearman's ρ of spread against |error|), and the calibration curve (error against spread, in bins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from crysfuse.analysis.diagnose import spearman
from crysfuse.predict import Predictions, combine_members

CALIBRATION_BINS = 5


def ensemble_uncertainty(members: Sequence[Predictions]) -> dict[str, Any] | None:
    """For ≥ 2 members' test predictions: the ensemble MAE, the mean spread, Spearman's ρ (and p) of the
    spread against the ensemble's absolute error, and the calibration curve (``spread``, ``rmse`` and ``n``
    per spread bin of about equal counts); ``None`` for fewer than 2 members."""
    if len(members) < 2:
        return None
    kept, mean, spread = combine_members([(m.ids, m.prediction) for m in members])
    targets = dict(zip(members[0].ids, members[0].target))
    target = np.array([targets[i] for i in kept], dtype=float)
    abs_error = np.abs(mean - target)
    finite = np.isfinite(abs_error)
    rho = spearman(spread[finite], abs_error[finite])
    return {"n_members": len(members), "n_records": int(finite.sum()),
            "ensemble_mae": float(abs_error[finite].mean()) if finite.any() else float("nan"),
            "mean_spread": float(spread[finite].mean()) if finite.any() else float("nan"),
            "spread_error_spearman": rho["rho"], "spread_error_p": rho["p"],
            "calibration": calibration_curve(spread[finite], mean[finite] - target[finite])}


def calibration_curve(spread: np.ndarray, error: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Crystals sorted by spread into ``bins`` groups of about equal size: mean spread, RMSE of the error and
    count per group. A calibrated spread gives RMSE ≈ spread (points on the diagonal)."""
    order = np.argsort(spread, kind="stable")
    return [{"spread": float(spread[part].mean()), "rmse": float(np.sqrt(np.mean(error[part] ** 2))),
             "n": int(part.size)}
            for part in np.array_split(order, min(bins, spread.size)) if part.size]
