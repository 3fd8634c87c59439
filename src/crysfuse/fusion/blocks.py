"""Building blocks shared by several fusion variants: residual cross-attention and the two-sided
attention + gate inputs of the gated family."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.utils import to_dense_batch

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FusionInputs, masked_attention


class ResidualCrossAttention(nn.Module):
    """``out = LN(query + MHA(query, keys, mask))``: multi-head attention over many keys, residual, LayerNorm.

    Shapes: query ``[B, Q, D]``, keys ``[B, L, D]``, mask ``[B, L]`` → out ``[B, Q, D]``, weights ``[B, Q, L]``.
    """

    def __init__(self, *, dim: int, config: FusionConfig) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, config.num_heads, dropout=config.dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        context, weights = masked_attention(self.attention, query, keys, key_mask)
        return self.norm(query + context), weights


def normalized_entropy(weights: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Entropy of attention rows divided by log(#valid keys), averaged over queries.

    Args:
        weights: ``[B, Q, L]``; key_mask: ``[B, L]``.

    Returns:
        ``[B]`` in [0, 1] (0 where a crystal has fewer than two valid keys).
    """
    if weights.size(-1) == 0:
        return weights.new_zeros(weights.size(0))
    entropy = -(weights * torch.log(weights.clamp_min(1e-12))).sum(-1).mean(-1)
    num_keys = key_mask.sum(-1).to(weights.dtype)
    scale = torch.where(num_keys > 1, torch.log(num_keys.clamp_min(2.0)), torch.ones_like(num_keys))
    return torch.where(num_keys > 1, entropy / scale, torch.zeros_like(entropy)).clamp(0.0, 1.0)


class AtomProjection(nn.Module):
    """Projects node features ``[N, H]`` to ``[B, Nmax, P]`` (padded) with a mask ``[B, Nmax]``."""

    def __init__(self, *, dim_nodes: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_nodes, dim)

    def forward(self, inputs: FusionInputs) -> tuple[torch.Tensor, torch.Tensor]:
        atoms = self.linear(inputs.nodes)
        return to_dense_batch(atoms, inputs.node_batch, batch_size=inputs.graph.size(0))


class TwoSidedAttention(nn.Module):
    """The attention half of the gated family: the graph vector attends over the text tokens and the text
    vector attends over the atoms (both real multi-key attention).

    ``ĝ = LN(g + MHA(g, T))``, ``t̂ = LN(t + MHA(t, atoms))``; shapes ``[B, P]`` each.
    """

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__()
        self.graph_to_text = ResidualCrossAttention(dim=dim, config=config)
        self.text_to_atoms = ResidualCrossAttention(dim=dim, config=config)
        self.atoms = AtomProjection(dim_nodes=dim_nodes, dim=dim)

    def forward(self, inputs: FusionInputs) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        g_hat, w_text = self.graph_to_text(inputs.graph.unsqueeze(1), inputs.tokens, inputs.token_mask)
        atoms, atom_mask = self.atoms(inputs)
        t_hat, w_atoms = self.text_to_atoms(inputs.text.unsqueeze(1), atoms, atom_mask)
        weights = {"graph_to_text": w_text, "text_to_atoms": w_atoms}
        return g_hat.squeeze(1), t_hat.squeeze(1), weights


def sigmoid_mlp(*, dim_in: int, dim_hidden: int, dropout: float) -> nn.Sequential:
    """``Linear → ReLU → Dropout → Linear(→1)``; apply sigmoid to the output. ``[*, dim_in]`` → ``[*, 1]``."""
    return nn.Sequential(
        nn.Linear(dim_in, dim_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim_hidden, 1)
    )


def inverse_softplus(value: float) -> float:
    """``x`` with ``softplus(x) == value`` (for initialising positive learnable scalars)."""
    return math.log(math.expm1(value))
