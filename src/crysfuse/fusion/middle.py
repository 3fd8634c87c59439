"""Middle fusion: node-level text injection after an ALIGNN layer, combinable with any late variant.

Switched on by ``fusion.middle_layers`` (0-based ALIGNN layer indices), not by a registry key: it is an
addition to the graph encoder, while the registry holds the late-fusion variants.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

from crysfuse.fusion.base import gate_diagnostics
from crysfuse.nn.layers import mlp


class MiddleFusion(nn.Module):
    """``t' = MLP(t)`` broadcast to the atoms of each crystal; ``α = σ(W_g [x; t'])`` per node and channel;
    ``x ← LN(x + α ⊙ t')``.

    Shapes: nodes ``x [N, H]``, text ``t [B, P]``, node_batch ``[N]`` → ``[N, H]``.
    Diagnostics under ``prefix``: ``<prefix>_gate`` ``[B]`` = the mean of α over a crystal's atoms and
    channels (+ summaries), and ``<prefix>_gate_saturation`` ``[B]`` = the fraction of α entries below 0.05
    or above 0.95 (the channel mean alone hides saturation). The third output is the mean of α over the
    channels per atom ``[N]`` (how much of the text each atom takes in; ``crysfuse explain`` shows it).
    """

    def __init__(self, *, dim_nodes: int, dim_text: int, dim_hidden: int, dropout: float, prefix: str) -> None:
        super().__init__()
        self.text_transform = mlp(dim_in=dim_text, dim_hidden=dim_hidden, dim_out=dim_nodes, dropout=dropout)
        self.gate = nn.Linear(2 * dim_nodes, dim_nodes)
        self.norm = nn.LayerNorm(dim_nodes)
        self.prefix = prefix

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, node_batch: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        injected = self.text_transform(text).index_select(0, node_batch)
        alpha = torch.sigmoid(self.gate(torch.cat([x, injected], dim=-1)))
        num_graphs = text.size(0)
        per_atom = alpha.mean(-1)
        per_crystal = scatter(per_atom, node_batch, dim=0, dim_size=num_graphs, reduce="mean")
        saturated = ((alpha < 0.05) | (alpha > 0.95)).to(alpha.dtype).mean(-1)
        saturation = scatter(saturated, node_batch, dim=0, dim_size=num_graphs, reduce="mean")
        diagnostics = {
            **gate_diagnostics(f"{self.prefix}_gate", per_crystal),
            **gate_diagnostics(f"{self.prefix}_gate_saturation", saturation),
        }
        return self.norm(x + alpha * injected), diagnostics, per_atom.detach()
