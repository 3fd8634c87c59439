"""``concat``: CrysMMNet-style late fusion by concatenation."""

from __future__ import annotations

import torch

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput


@FUSION.register("concat")
class ConcatFusion(FusionModule):
    """fused = [g; t]: the projected graph vector and pooled text, concatenated. ``[B, P]`` → ``[B, 2P]``."""

    description = "CrysMMNet-style: [g; t] concatenated, MLP head"
    equation = "fused = [g; t] (CrysMMNet-style late fusion)"

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__(dim=dim, dim_nodes=dim_nodes, config=config)
        self.dim_out = 2 * dim

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        return FusionOutput(fused=torch.cat([inputs.graph, inputs.text], dim=-1))
