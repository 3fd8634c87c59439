"""``warmup``: the simplified gate with a warm-up ramp and a learnable gate strength, both applied."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs
from crysfuse.fusion.blocks import inverse_softplus
from crysfuse.fusion.simplified import SimplifiedGateFusion


@FUSION.register("warmup")
class WarmupGateFusion(SimplifiedGateFusion):
    """``fused = LN(ĝ + r·s·a·t + g)`` with ``r = min(1, step / warmup_steps)`` and ``s = softplus(ρ)``
    (learnable, initially 1).

    The prior code computed r and s but never applied them; here they scale the text contribution. The
    step comes from the trainer (``FusionInputs.step``); the last training step is kept in a buffer so a
    loaded model predicts with the ramp it finished training with.

    Diagnostics: ``gate`` ``[B]`` (+ summaries), ``warmup_factor`` and ``gate_strength`` (scalars).
    """

    description = "simplified gate × warm-up ramp min(1, step/warmup_steps) × learnable strength"
    equation = ("as `simplified`, with fused = LN(ĝ + r·s·a·t + g), r = min(1, step / warmup_steps), s = softplus(ρ) "
                "(init 1) — both applied")
    scalars = ("warmup_factor", "gate_strength")
    hyperparameters = SimplifiedGateFusion.hyperparameters + ("warmup_steps",)

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__(dim=dim, dim_nodes=dim_nodes, config=config)
        self.warmup_steps = max(int(config.warmup_steps), 1)
        self.strength_raw = nn.Parameter(torch.tensor(inverse_softplus(1.0)))
        self.register_buffer("last_step", torch.zeros((), dtype=torch.long))

    def text_weight(self, gate: torch.Tensor, inputs: FusionInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.training and inputs.step >= 0:
            self.last_step.fill_(inputs.step)
        factor = torch.clamp(self.last_step.to(gate.dtype) / self.warmup_steps, max=1.0)
        strength = F.softplus(self.strength_raw)
        extra = {"warmup_factor": factor.detach(), "gate_strength": strength.detach()}
        return factor * strength * gate, extra
