"""``balanced``: the gated fusion with a symmetric mix that never drops either modality."""

from __future__ import annotations

import torch

from crysfuse.fusion.base import FUSION
from crysfuse.fusion.gated import GatedFusion


@FUSION.register("balanced")
class BalancedGatedFusion(GatedFusion):
    """``w = 0.5 + 0.5·q·f`` ∈ [0.5, 1];
    ``fused = LN(((1 − w)·g + w·ĝ) + (w·t + (1 − w)·t̂))``.

    Diagnostics as :class:`GatedFusion`; ``effective`` is ``w``.
    """

    description = "w = 0.5 + 0.5·q·f ∈ [0.5, 1]; symmetric mix of g, ĝ, t, t̂"
    equation = "as `gated`, with w = 0.5 + 0.5·q·f ∈ [0.5, 1]; fused = LN(((1 − w)·g + w·ĝ) + (w·t + (1 − w)·t̂))"

    def effective_weight(self, quality: torch.Tensor, fusion: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.5 * quality * fusion

    def combine(self, g: torch.Tensor, g_hat: torch.Tensor, t: torch.Tensor, t_hat: torch.Tensor,
                w: torch.Tensor) -> torch.Tensor:
        return self.norm_out(((1 - w) * g + w * g_hat) + (w * t + (1 - w) * t_hat))
