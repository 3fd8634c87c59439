"""Reusable layers of the ALIGNN graph encoder.

Equations follow Choudhary & DeCost, "Atomistic Line Graph Neural Network for improved materials property
predictions", npj Comput. Mater. 7, 185 (2021), §Methods ("Edge-gated graph convolution", "ALIGNN update"),
and the edge-gated graph convolution of Bresson & Laurent, "Residual Gated Graph ConvNets" (2017).
Message passing uses PyTorch Geometric's ``scatter`` on explicit ``edge_index`` tensors.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.utils import scatter


class RBFExpansion(nn.Module):
    """Gaussian radial basis: ``exp(-γ (d - μ_k)²)`` on ``num_bins`` centres in ``[vmin, vmax]``.

    As in ALIGNN, γ is the inverse of the centre spacing (not its inverse square).

    Shapes: ``[*]`` → ``[*, num_bins]``.
    """

    def __init__(self, *, vmin: float, vmax: float, num_bins: int) -> None:
        super().__init__()
        centres = torch.linspace(vmin, vmax, num_bins)
        self.register_buffer("centres", centres, persistent=False)
        self.gamma = 1.0 / float(torch.diff(centres).mean())

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.gamma * (values.unsqueeze(-1) - self.centres) ** 2)

    def extra_repr(self) -> str:
        return f"bins={self.centres.numel()}, range=({self.centres[0]:.2f}, {self.centres[-1]:.2f})"


class MLPLayer(nn.Sequential):
    """Linear → BatchNorm1d → SiLU (ALIGNN's embedding block). Shapes: ``[M, dim_in]`` → ``[M, dim_out]``."""

    def __init__(self, *, dim_in: int, dim_out: int) -> None:
        super().__init__(nn.Linear(dim_in, dim_out), nn.BatchNorm1d(dim_out), nn.SiLU())


class EdgeGatedGraphConv(nn.Module):
    """Residual edge-gated graph convolution.

    For an edge i→j: ``m_ij = W_s x_i + W_d x_j + W_e e_ij``, ``σ_ij = sigmoid(m_ij)``;
    ``h_j = Σ_i σ_ij ⊙ W_B x_i / (Σ_i σ_ij + 1e-6)``;
    ``x'_j = x_j + SiLU(BN(W_A x_j + h_j))``, ``e'_ij = e_ij + SiLU(BN(m_ij))``.
    """

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.src_gate = nn.Linear(dim, dim)
        self.dst_gate = nn.Linear(dim, dim)
        self.edge_gate = nn.Linear(dim, dim)
        self.src_update = nn.Linear(dim, dim)
        self.dst_update = nn.Linear(dim, dim)
        self.bn_nodes = nn.BatchNorm1d(dim)
        self.bn_edges = nn.BatchNorm1d(dim)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: Node features ``[N, D]``.
            edge_index: ``[2, E]`` (row 0 source i, row 1 destination j).
            e: Edge features ``[E, D]``.

        Returns:
            Updated node features ``[N, D]`` and edge features ``[E, D]``.
        """
        src, dst = edge_index[0], edge_index[1]
        m = self.src_gate(x).index_select(0, src) + self.dst_gate(x).index_select(0, dst) + self.edge_gate(e)
        sigma = torch.sigmoid(m)
        messages = self.dst_update(x).index_select(0, src) * sigma
        num_nodes = x.size(0)
        sum_sigma_h = scatter(messages, dst, dim=0, dim_size=num_nodes, reduce="sum")
        sum_sigma = scatter(sigma, dst, dim=0, dim_size=num_nodes, reduce="sum")
        h = sum_sigma_h / (sum_sigma + 1e-6)
        x_out = x + F.silu(self.bn_nodes(self.src_update(x) + h))
        e_out = e + F.silu(self.bn_edges(m))
        return x_out, e_out


class ALIGNNConv(nn.Module):
    """One ALIGNN layer: an edge-gated convolution on the crystal graph (atoms, bonds), then one on the
    line graph (bonds, bond-angle triplets), where the bond features are the line graph's nodes."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.node_update = EdgeGatedGraphConv(dim=dim)
        self.edge_update = EdgeGatedGraphConv(dim=dim)

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor,
        line_edge_index: torch.Tensor,
        z: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shapes: x ``[N, D]``, y ``[E, D]``, z ``[T, D]``; edge_index ``[2, E]``, line_edge_index ``[2, T]``."""
        x, m = self.node_update(x, edge_index, y)
        y, z = self.edge_update(m, line_edge_index, z)
        return x, y, z


class ProjectionHead(nn.Module):
    """``p = W1 x``; ``z = LayerNorm(p + Dropout(W2 GELU(p)))``. Shapes: ``[*, dim_in]`` → ``[*, dim_out]``."""

    def __init__(self, *, dim_in: int, dim_out: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.projection = nn.Linear(dim_in, dim_out)
        self.fc = nn.Linear(dim_out, dim_out)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.projection(x)
        return self.norm(p + self.dropout(self.fc(F.gelu(p))))


def mlp(*, dim_in: int, dim_hidden: int, dim_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Two-layer perceptron ``Linear → SiLU → Dropout → Linear``. Shapes: ``[*, dim_in]`` → ``[*, dim_out]``."""
    return nn.Sequential(
        nn.Linear(dim_in, dim_hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(dim_hidden, dim_out)
    )
