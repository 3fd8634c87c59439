"""``quality``: the gated fusion with the improved text-quality gate."""

from __future__ import annotations

import torch
from torch import nn

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs
from crysfuse.fusion.blocks import sigmoid_mlp
from crysfuse.fusion.gated import GatedFusion


class ImprovedQualityGate(nn.Module):
    """``q = β·σ(MLP_q(t)) + (1 − β)·σ(‖t_raw‖ − θ)`` with learnable θ (initially 3.0) and β = σ(b)
    (initially 0.5): a convex mix instead of a product, so neither part can silence the other.

    The norm detection reads the encoder's pooled text *before* the projection's LayerNorm
    (``FusionInputs.text_norm``), where a missing or emptied text really has a small norm.
    Shapes: ``[B, P]`` → ``[B]``; extra scalar diagnostics ``quality_threshold`` and ``quality_mix``.
    """

    def __init__(self, *, dim: int, config: FusionConfig) -> None:
        super().__init__()
        self.score = sigmoid_mlp(dim_in=dim, dim_hidden=max(dim // 2, 1), dropout=0.0)
        self.threshold = nn.Parameter(torch.tensor(float(config.quality_threshold)))
        self.mix_logit = nn.Parameter(torch.zeros(()))

    def forward(self, inputs: FusionInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        learned = torch.sigmoid(self.score(inputs.text)).squeeze(-1)
        detected = torch.sigmoid(inputs.text_norm - self.threshold)
        mix = torch.sigmoid(self.mix_logit)
        quality = mix * learned + (1 - mix) * detected
        return quality, {"quality_threshold": self.threshold.detach(), "quality_mix": mix.detach()}


@FUSION.register("quality")
class QualityGatedFusion(GatedFusion):
    """:class:`GatedFusion` with :class:`ImprovedQualityGate` in place of the original quality gate."""

    description = "gated, with a learnable-threshold quality gate mixed convexly with the learned score"
    equation = ("as `gated`, with q = β·σ(MLP_q(t)) + (1 − β)·σ(‖t_raw‖ − θ), θ learnable (init 3.0), β = σ(b) "
                "learnable (init 0.5)")
    scalars = ("quality_threshold", "quality_mix")

    def build_quality_gate(self, *, dim: int, config: FusionConfig) -> nn.Module:
        return ImprovedQualityGate(dim=dim, config=config)
