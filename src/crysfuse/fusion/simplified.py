"""``simplified``: the seed's recommended single additive gate over token-level cross-attention."""

from __future__ import annotations

import torch
from torch import nn

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput, gate_diagnostics, masked_attention
from crysfuse.nn.layers import mlp


@FUSION.register("simplified")
class SimplifiedGateFusion(FusionModule):
    """Graph attends over the text tokens; one sigmoid gate adds the text.

    ``ĝ = LN(g + MHA(q=g, k=v=tokens, mask))`` (real multi-key attention over the L tokens),
    ``a = σ(MLP([g; t]))`` ∈ (0, 1) per crystal, ``fused = LN(ĝ + a·t + g)``.
    Without text (all tokens masked) the attention context is zero and ``t`` is the projection of an
    all-zero pooled vector, which the gate can learn to switch off.

    Diagnostics: ``gate`` ``[B]`` and ``gate_{mean,std,min,max}``.
    """

    description = "graph attends over text tokens; fused = LN(ĝ + a·t + g), one sigmoid gate a"

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__(dim=dim, dim_nodes=dim_nodes, config=config)
        self.attention = nn.MultiheadAttention(dim, config.num_heads, dropout=config.dropout, batch_first=True)
        self.norm_attended = nn.LayerNorm(dim)
        self.gate = mlp(dim_in=2 * dim, dim_hidden=config.dim_hidden, dim_out=1, dropout=config.dropout)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        g, t = inputs.graph, inputs.text
        context, _ = masked_attention(self.attention, g.unsqueeze(1), inputs.tokens, inputs.token_mask)
        g_hat = self.norm_attended(g + context.squeeze(1))
        gate = torch.sigmoid(self.gate(torch.cat([g, t], dim=-1))).squeeze(-1)
        fused = self.norm_out(g_hat + gate.unsqueeze(-1) * t + g)
        return FusionOutput(fused=fused, diagnostics=gate_diagnostics("gate", gate))
