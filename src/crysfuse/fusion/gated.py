"""``gated``: the original double gate (quality × fusion), reproduced faithfully so its failure can be
measured and diagnosed."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput, gate_diagnostics
from crysfuse.fusion.blocks import TwoSidedAttention, normalized_entropy, sigmoid_mlp


class OriginalQualityGate(nn.Module):
    """``q = σ(MLP_q(t)) · σ(‖t‖ − θ)`` with a fixed θ (3.0).

    ``t`` leaves a LayerNorm, so ``‖t‖ ≈ √P`` (8 for P = 64) for every text and the norm factor is ≈ 0.99
    whatever the text's quality — the flaw the seed's study ran into, kept here on purpose.
    Shapes: ``[B, P]`` → ``[B]``.
    """

    def __init__(self, *, dim: int, config: FusionConfig) -> None:
        super().__init__()
        self.score = sigmoid_mlp(dim_in=dim, dim_hidden=max(dim // 2, 1), dropout=0.0)
        self.register_buffer("threshold", torch.tensor(float(config.quality_threshold)))

    def forward(self, inputs: FusionInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        learned = torch.sigmoid(self.score(inputs.text)).squeeze(-1)
        norm_factor = torch.sigmoid(torch.linalg.vector_norm(inputs.text, dim=-1) - self.threshold)
        return learned * norm_factor, {}


@FUSION.register("gated")
class GatedFusion(FusionModule):
    """The original gated cross-attention, with real multi-key attention.

    ``ĝ = LN(g + MHA(g, tokens))``, ``t̂ = LN(t + MHA(t, atoms))``; quality ``q`` (see
    :class:`OriginalQualityGate`), fusion ``f = σ(MLP_f([g; t]))``, effective ``w = q·f``;
    ``fused = LN((1 − w)·ĝ + w·t̂ + g)``.

    Diagnostics: ``quality``, ``fusion``, ``effective`` ``[B]`` and their ``_mean/_std/_min/_max``.
    """

    description = "original double gate: w = quality × fusion; fused = LN((1−w)·ĝ + w·t̂ + g)"
    equation = ("ĝ = LN(g + MHA(g, T)); t̂ = LN(t + MHA(t, A)); q = σ(MLP_q(t))·σ(‖t‖ − 3); f = σ(MLP_f([g; t])); "
                "w = q·f; fused = LN((1 − w)·ĝ + w·t̂ + g)")
    gates = ("quality", "fusion", "effective")
    on_request = ("attention_entropy",)
    attention_maps: ClassVar[dict[str, tuple[str, str]]] = {"graph_to_text": ("graph", "tokens"), "text_to_atoms": ("text", "atoms")}
    hyperparameters = ("num_heads", "dropout", "dim_hidden", "quality_threshold", "return_attention")

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__(dim=dim, dim_nodes=dim_nodes, config=config)
        self.attend = TwoSidedAttention(dim=dim, dim_nodes=dim_nodes, config=config)
        self.quality_gate = self.build_quality_gate(dim=dim, config=config)
        self.fusion_gate = sigmoid_mlp(dim_in=2 * dim, dim_hidden=config.dim_hidden, dropout=config.dropout)
        self.norm_out = nn.LayerNorm(dim)
        self.return_attention = config.return_attention

    def build_quality_gate(self, *, dim: int, config: FusionConfig) -> nn.Module:
        return OriginalQualityGate(dim=dim, config=config)

    def effective_weight(self, quality: torch.Tensor, fusion: torch.Tensor) -> torch.Tensor:
        """``w = q·f`` ``[B]``."""
        return quality * fusion

    def combine(self, g: torch.Tensor, g_hat: torch.Tensor, t: torch.Tensor, t_hat: torch.Tensor,
                w: torch.Tensor) -> torch.Tensor:
        """``LN((1 − w)·ĝ + w·t̂ + g)``; ``w`` is ``[B, 1]``, the rest ``[B, P]``."""
        return self.norm_out((1 - w) * g_hat + w * t_hat + g)

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        g, t = inputs.graph, inputs.text
        g_hat, t_hat, weights = self.attend(inputs)
        quality, extra = self.quality_gate(inputs)
        fusion = torch.sigmoid(self.fusion_gate(torch.cat([g, t], dim=-1))).squeeze(-1)
        effective = self.effective_weight(quality, fusion)
        fused = self.combine(g, g_hat, t, t_hat, effective.unsqueeze(-1))
        diagnostics = {
            **gate_diagnostics("quality", quality),
            **gate_diagnostics("fusion", fusion),
            **gate_diagnostics("effective", effective),
            **extra,
        }
        output = FusionOutput(fused=fused, diagnostics=diagnostics)
        if self.wants_attention(inputs):
            output.attention.update(weights)
            entropy = normalized_entropy(weights["graph_to_text"], inputs.token_mask)
            diagnostics.update(gate_diagnostics("attention_entropy", entropy))
        return output
