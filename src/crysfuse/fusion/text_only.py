"""``text_only``: the prediction from the text alone; the baseline that shows what the text carries by itself."""

from __future__ import annotations

import torch
from torch import nn

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput, gate_diagnostics
from crysfuse.fusion.blocks import ResidualCrossAttention, normalized_entropy


@FUSION.register("text_only")
class TextOnlyFusion(FusionModule):
    """Attention pooling of the text tokens, no graph.

    A learned query ``q`` ∈ ℝ^P attends over the projected tokens (real multi-key attention, masks honoured):
    ``p = LN(q + MHA(q, T))``, ``fused = LN(t + p)`` with ``t`` the projected pooled text. Shapes: tokens ``[B, L, P]``, text
    ``[B, P]`` → fused ``[B, P]``. A crystal without text gets ``LN(t)`` of an all-zero pooled vector (the same
    prediction for every such crystal). The model builds no graph encoder for this variant
    (``uses_graph = False``); ``inputs.graph`` and ``inputs.nodes`` are zeros and never read.
    """

    uses_graph = False
    description = "text alone: attention-pooled tokens (learned query) + pooled text, no graph encoder"
    equation = "p = LN(q + MHA(q, T)), q learned; fused = LN(t + p) (no graph encoder is built or run)"
    on_request = ("attention_entropy",)
    hyperparameters = ("num_heads", "dropout", "return_attention")

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__(dim=dim, dim_nodes=dim_nodes, config=config)
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.pool = ResidualCrossAttention(dim=dim, config=config)
        self.norm_out = nn.LayerNorm(dim)
        self.return_attention = config.return_attention

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        batch = inputs.text.size(0)
        pooled, weights = self.pool(self.query.expand(batch, 1, -1), inputs.tokens, inputs.token_mask)
        output = FusionOutput(fused=self.norm_out(inputs.text + pooled.squeeze(1)))
        if self.return_attention:
            output.attention["query_to_text"] = weights
            output.diagnostics.update(
                gate_diagnostics("attention_entropy", normalized_entropy(weights, inputs.token_mask)))
        return output
