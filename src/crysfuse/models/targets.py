"""Target transforms (``data.target_transform``): the model learns ``t(y)``; predictions are mapped back with
``t⁻¹`` so everything outside the model (predictions, metrics, model selection) is in the target's units.

``log1p`` compresses the long tail of a non-negative target with a spike at 0 (band gaps); it needs
``y > -1``. ``asinh`` is defined for every real value (``asinh(y) ≈ y`` near 0, ``≈ sign(y) log(2|y|)`` far
out), so it also fits signed targets such as formation energies.
"""

from __future__ import annotations

import numpy as np
import torch

from crysfuse.config import ConfigError

TRANSFORMS = {
    "none": (lambda y: y, lambda t: t),
    "log1p": (torch.log1p, torch.expm1),
    "asinh": (torch.asinh, torch.sinh),
}
"""``data.target_transform`` → (``t``, ``t⁻¹``), elementwise on tensors."""


def _pair(name: str):
    if name not in TRANSFORMS:
        raise ConfigError(f"unknown target transform {name!r}")
    return TRANSFORMS[name]


def transform_target(name: str, y: torch.Tensor) -> torch.Tensor:
    """``t(y)``, elementwise. Shapes: ``[*]`` → ``[*]``."""
    return _pair(name)[0](y)


def inverse_target(name: str, t: torch.Tensor) -> torch.Tensor:
    """``t⁻¹``, elementwise. Shapes: ``[*]`` → ``[*]``."""
    return _pair(name)[1](t)


def transformed_targets(name: str, targets: np.ndarray) -> np.ndarray:
    """``t(y)`` of the training targets ``[M]`` (for the standardisation statistics), checking the domain.

    Raises:
        ConfigError: a finite target outside the transform's domain (``log1p``: ``y <= -1``).
    """
    values = np.asarray(targets, dtype=np.float64)
    if name == "log1p":
        bad = values[np.isfinite(values) & (values <= -1.0)]
        if bad.size:
            raise ConfigError(f"data.target_transform 'log1p' needs targets > -1; {bad.size} training "
                              f"target(s) are not (smallest {bad.min():.4g}); use 'asinh' or 'none'")
    return transform_target(name, torch.from_numpy(values)).numpy()
