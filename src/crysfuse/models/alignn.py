"""ALIGNN graph encoder: atoms, bonds and bond angles → node features and a pooled graph vector.

Architecture as in Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021): CGCNN atom features (92-d) embedded
by MLP(92→D); bond lengths expanded in 80 Gaussian RBFs over 0–8 Å and embedded by MLP(80→64) → MLP(64→D);
bond-angle cosines expanded in 40 RBFs over [-1, 1] and embedded the same way; ``num_alignn_layers``
ALIGNN layers (graph + line-graph edge-gated convolutions), then ``num_gcn_layers`` edge-gated convolutions
on the crystal graph; mean pooling over atoms. ``model.norm``, ``model.readout`` switch the normalisation
(BatchNorm / LayerNorm) and the pooling (mean / sum). With the defaults this backbone has 4,026,496 parameters,
the same count as the reference implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from crysfuse.chemistry import DIM_ATOM_FEATURES, cgcnn_feature_table
from crysfuse.config import ModelConfig
from crysfuse.nn.layers import ALIGNNConv, EdgeGatedGraphConv, MLPLayer, RBFExpansion


@dataclass
class GraphEncoding:
    """Encoder output: ``nodes`` ``[N, D]`` (after the last layer), ``graph`` ``[B, D]`` (mean or sum over atoms)."""

    nodes: torch.Tensor
    graph: torch.Tensor


class ALIGNNEncoder(nn.Module):
    """ALIGNN backbone. Input: a PyG batch with ``atomic_numbers [N]``, ``edge_index [2, E]``,
    ``edge_vectors [E, 3]``, ``line_edge_index [2, T]``, ``bond_cosines [T]``, ``batch [N]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim, norm = config.dim_hidden, config.norm
        self.readout = config.readout
        self.register_buffer("atom_feature_table", cgcnn_feature_table().nan_to_num(0.0), persistent=False)
        self.atom_embedding = MLPLayer(dim_in=DIM_ATOM_FEATURES, dim_out=dim, norm=norm)
        self.edge_embedding = nn.Sequential(
            RBFExpansion(vmin=0.0, vmax=8.0, num_bins=config.num_distance_bins),
            MLPLayer(dim_in=config.num_distance_bins, dim_out=config.dim_embedding, norm=norm),
            MLPLayer(dim_in=config.dim_embedding, dim_out=dim, norm=norm),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(vmin=-1.0, vmax=1.0, num_bins=config.num_angle_bins),
            MLPLayer(dim_in=config.num_angle_bins, dim_out=config.dim_embedding, norm=norm),
            MLPLayer(dim_in=config.dim_embedding, dim_out=dim, norm=norm),
        )
        self.alignn_layers = nn.ModuleList(ALIGNNConv(dim=dim, norm=norm) for _ in range(config.num_alignn_layers))
        self.gcn_layers = nn.ModuleList(EdgeGatedGraphConv(dim=dim, norm=norm) for _ in range(config.num_gcn_layers))
        self.dim_out = dim

    def forward(
        self, batch, after_alignn_layer: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    ) -> GraphEncoding:
        """Encode a batch; ``after_alignn_layer(index, x)`` may replace the node features ``[N, D]`` after
        each ALIGNN layer (used by middle fusion)."""
        x = self.atom_embedding(self.atom_feature_table.index_select(0, batch.atomic_numbers))
        y = self.edge_embedding(torch.linalg.vector_norm(batch.edge_vectors, dim=-1))
        z = self.angle_embedding(batch.bond_cosines)
        # The last layer of each stack skips the edge/triplet update that no later layer reads.
        last_alignn, last_gcn = len(self.alignn_layers) - 1, len(self.gcn_layers) - 1
        for index, layer in enumerate(self.alignn_layers):
            x, y, z = layer(x, batch.edge_index, y, batch.line_edge_index, z, update_triplets=index < last_alignn)
            if after_alignn_layer is not None:
                x = after_alignn_layer(index, x)
        for index, layer in enumerate(self.gcn_layers):
            x, y = layer(x, batch.edge_index, y, update_edges=index < last_gcn)
        graph = scatter(x, batch.batch, dim=0, dim_size=batch.num_graphs, reduce=self.readout)
        return GraphEncoding(nodes=x, graph=graph)
