"""``cross_attention``: plain bidirectional token-level cross-attention, no gate (the seed's baseline)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch_geometric.utils import scatter

from crysfuse.config import FusionConfig
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput, gate_diagnostics
from crysfuse.fusion.blocks import AtomProjection, ResidualCrossAttention, normalized_entropy


@FUSION.register("cross_attention")
class CrossAttentionFusion(FusionModule):
    """Atoms attend over the text tokens, and so does the pooled graph vector.

    ``A = W_a·nodes`` (padded per crystal), ``Â = LN(A + MHA(A, tokens))``,
    ``ĝ = LN(g + MHA(g, tokens))``; ``fused = [ĝ; mean_atoms(Â)]`` (``[B, 2P]``).
    No gate: this is the plain cross-modal fusion the seed compared its gate against.
    On request (``fusion.return_attention``): attention weights and ``attention_entropy`` ``[B]``.
    """

    description = "atoms and graph vector attend over text tokens; fused = [ĝ; mean(Â)], no gate"
    equation = ("Â = LN(A + MHA(A, T)); ĝ = LN(g + MHA(g, T)); fused = [ĝ; mean_atoms(Â)] — no gate (the seed's "
                "\"plain cross-modal\" baseline)")
    on_request = ("attention_entropy",)
    attention_maps: ClassVar[dict[str, tuple[str, str]]] = {"atoms_to_text": ("atoms", "tokens"), "graph_to_text": ("graph", "tokens")}
    hyperparameters = ("num_heads", "dropout", "return_attention")

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__(dim=dim, dim_nodes=dim_nodes, config=config)
        self.atoms = AtomProjection(dim_nodes=dim_nodes, dim=dim)
        self.atoms_to_text = ResidualCrossAttention(dim=dim, config=config)
        self.graph_to_text = ResidualCrossAttention(dim=dim, config=config)
        self.dim_out = 2 * dim
        self.return_attention = config.return_attention

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        atoms, atom_mask = self.atoms(inputs)
        atoms_hat, w_atoms = self.atoms_to_text(atoms, inputs.tokens, inputs.token_mask)
        g_hat, w_graph = self.graph_to_text(inputs.graph.unsqueeze(1), inputs.tokens, inputs.token_mask)
        atom_mean = scatter(atoms_hat[atom_mask], inputs.node_batch, dim=0, dim_size=atoms.size(0), reduce="mean")
        output = FusionOutput(fused=torch.cat([g_hat.squeeze(1), atom_mean], dim=-1))
        if self.wants_attention(inputs):
            output.attention = {"graph_to_text": w_graph, "atoms_to_text": w_atoms}
            entropy = normalized_entropy(w_graph, inputs.token_mask)
            output.diagnostics.update(gate_diagnostics("attention_entropy", entropy))
        return output
