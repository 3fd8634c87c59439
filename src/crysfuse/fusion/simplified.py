"""``simplified``: the seed's recommended single additive gate over token-level cross-attention."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput, gate_diagnostics
from crysfuse.fusion.blocks import ResidualCrossAttention, normalized_entropy, sigmoid_mlp


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
    equation = "ĝ = LN(g + MHA(g, T)); a = σ(MLP([g; t])); fused = LN(ĝ + a·t + g)"
    gates = ("gate",)
    on_request = ("attention_entropy",)
    attention_maps: ClassVar[dict[str, tuple[str, str]]] = {"graph_to_text": ("graph", "tokens")}
    hyperparameters = ("num_heads", "dropout", "dim_hidden", "return_attention")

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__(dim=dim, dim_nodes=dim_nodes, config=config)
        self.graph_to_text = ResidualCrossAttention(dim=dim, config=config)
        self.gate = sigmoid_mlp(dim_in=2 * dim, dim_hidden=config.dim_hidden, dropout=config.dropout)
        self.norm_out = nn.LayerNorm(dim)
        self.return_attention = config.return_attention

    def text_weight(self, gate: torch.Tensor, inputs: FusionInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The multiplier of ``t`` per crystal ``[B]`` and extra diagnostics; here simply the gate."""
        return gate, {}

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        g, t = inputs.graph, inputs.text
        g_hat, weights = self.graph_to_text(g.unsqueeze(1), inputs.tokens, inputs.token_mask)
        gate = torch.sigmoid(self.gate(torch.cat([g, t], dim=-1))).squeeze(-1)
        weight, extra = self.text_weight(gate, inputs)
        fused = self.norm_out(g_hat.squeeze(1) + weight.unsqueeze(-1) * t + g)
        diagnostics = {**gate_diagnostics("gate", gate), **extra}
        output = FusionOutput(fused=fused, diagnostics=diagnostics)
        if self.wants_attention(inputs):
            output.attention["graph_to_text"] = weights
            diagnostics.update(gate_diagnostics("attention_entropy", normalized_entropy(weights, inputs.token_mask)))
        return output
