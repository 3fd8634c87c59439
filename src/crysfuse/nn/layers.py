"""Reusable layers of the ALIGNN graph encoder.

Equations follow Choudhary & DeCost, "Atomistic Line Graph Neural Network for improved materials property
predictions", npj Comput. Mater. 7, 185 (2021), §Methods ("Edge-gated graph convolution", "ALIGNN update"),
and the edge-gated graph convolution of Bresson & Laurent, "Residual Gated Graph ConvNets" (2017).
Message passing uses ``index_select`` / ``index_add_`` on explicit ``edge_index`` tensors (see
``docs/benchmarks.md`` for the measured choices).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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
        # In place after the first pass (values are data, nothing here needs a gradient): one [*, bins]
        # buffer instead of four; the same float operations as exp(-γ (d - μ)²).
        return (values.unsqueeze(-1) - self.centres).square_().mul_(-self.gamma).exp_()

    def extra_repr(self) -> str:
        return f"bins={self.centres.numel()}, range=({self.centres[0]:.2f}, {self.centres[-1]:.2f})"


NORM_LAYERS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}
"""``model.norm`` → the normalisation module of the encoder. Both have ``weight`` and ``bias`` parameters under
the same module names, so state-dict keys differ only by BatchNorm's running-statistics buffers."""


def norm_layer(kind: str, dim: int) -> nn.Module:
    """``BatchNorm1d(dim)`` (``batch``) or ``LayerNorm(dim)`` (``layer``). Shapes: ``[M, dim]`` → ``[M, dim]``."""
    return NORM_LAYERS[kind](dim)


class MLPLayer(nn.Sequential):
    """Linear → norm → SiLU (ALIGNN's embedding block; ``norm`` ``batch`` or ``layer``). Shapes: ``[M, dim_in]``
    → ``[M, dim_out]``.

    In evaluation mode a BatchNorm is an affine map with its running statistics, so it is folded into the
    linear layer's weights (``W' = s W``, ``b' = s (b - μ) + β`` with ``s = γ / sqrt(σ² + ε)``): one
    ``[M, dim_out]`` pass fewer per call, the same function up to float rounding. A LayerNorm is not folded.
    """

    def __init__(self, *, dim_in: int, dim_out: int, norm: str = "batch") -> None:
        super().__init__(nn.Linear(dim_in, dim_out), norm_layer(norm, dim_out), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear, norm, _ = self
        if (self.training or not isinstance(norm, nn.BatchNorm1d) or not norm.track_running_stats
                or norm.running_mean is None):
            return super().forward(x)
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        weight = linear.weight * scale.unsqueeze(1)
        bias = (linear.bias - norm.running_mean) * scale + norm.bias
        return F.silu(F.linear(x, weight, bias))


class EdgeGatedGraphConv(nn.Module):
    """Residual edge-gated graph convolution.

    For an edge i→j: ``m_ij = W_s x_i + W_d x_j + W_e e_ij``, ``σ_ij = sigmoid(m_ij)``;
    ``h_j = Σ_i σ_ij ⊙ W_B x_i / (Σ_i σ_ij + 1e-6)``;
    ``x'_j = x_j + SiLU(BN(W_A x_j + h_j))``, ``e'_ij = e_ij + SiLU(BN(m_ij))``; BN is a BatchNorm
    (``norm="batch"``) or a LayerNorm (``norm="layer"``, the reference's ``EdgeGatedGraphConvPure``).
    """

    def __init__(self, *, dim: int, norm: str = "batch") -> None:
        super().__init__()
        self.src_gate = nn.Linear(dim, dim)
        self.dst_gate = nn.Linear(dim, dim)
        self.edge_gate = nn.Linear(dim, dim)
        self.src_update = nn.Linear(dim, dim)
        self.dst_update = nn.Linear(dim, dim)
        self.bn_nodes = norm_layer(norm, dim)
        self.bn_edges = norm_layer(norm, dim)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor, *, update_edges: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args:
            x: Node features ``[N, D]``.
            edge_index: ``[2, E]`` (row 0 source i, row 1 destination j).
            e: Edge features ``[E, D]``.
            update_edges: ``False`` when no later layer reads the edge features (the last layer of a stack):
                ``e'`` is then not computed (``None``), which saves a BatchNorm, a SiLU and a residual pass
                over ``[E, D]`` and their backward. The node output is the same either way.

        Returns:
            Updated node features ``[N, D]`` and edge features ``[E, D]`` (``None`` without ``update_edges``).
        """
        src, dst = edge_index[0], edge_index[1]
        dim, num_nodes = x.size(1), x.size(0)
        # The four node-side linears as one matmul on weights concatenated at forward time (parameters and
        # state_dict keys unchanged): columns [src_gate | dst_gate | dst_update | src_update].
        weight = torch.cat(
            [self.src_gate.weight, self.dst_gate.weight, self.dst_update.weight, self.src_update.weight]
        )
        bias = torch.cat([self.src_gate.bias, self.dst_gate.bias, self.dst_update.bias, self.src_update.bias])
        node = F.linear(x, weight, bias)  # [N, 4D]
        gate_src, gate_dst = node[:, :dim], node[:, dim : 2 * dim]
        update_src, update_self = node[:, 2 * dim : 3 * dim], node[:, 3 * dim :]
        # m = W_s x_i + W_d x_j + W_e e_ij: the gathered node terms are the addmm accumulator (one pass less).
        # The edge-gate bias is added on the node side ([N, D]) instead of on the edges ([E, D]), in the
        # activations' dtype: under bf16 autocast a float32 bias would promote the gathered [E, D] terms to
        # float32 and cost two dtype conversions over [E, D] forward and backward.
        gate_dst = gate_dst + self.edge_gate.bias.to(gate_dst.dtype)
        gathered = gate_src.index_select(0, src).add_(gate_dst.index_select(0, dst))
        # In place: addmm would first copy the accumulator into a new [E, D] buffer. In-place ops are not
        # autocast, so the weight takes the activations' dtype explicitly.
        m = gathered.addmm_(e, self.edge_gate.weight.t().to(e.dtype))
        h = _GatedAggregation.apply(m, update_src, src, dst, num_nodes)
        x_out = F.silu(self.bn_nodes(update_self + h)).add_(x)
        e_out = F.silu(self.bn_edges(m)).add_(e) if update_edges else None
        return x_out, e_out


class _GatedAggregation(torch.autograd.Function):
    """``h = index_add(dst, sigmoid(m) * u[src]) / (index_add(dst, sigmoid(m)) + 1e-6)`` with a hand-written
    backward that saves only ``sigmoid(m)`` ``[E, D]`` and node-sized tensors (autograd would also keep the
    gathered ``u[src]`` ``[E, D]`` alive), and recomputes ``u[src]`` in the backward pass.

    Shapes: ``m [E, D]``, ``u [N, D]``, ``src``/``dst`` ``[E]`` → ``h [N, D]``.
    """

    @staticmethod
    def forward(ctx, m, u, src, dst, num_nodes):
        sigma = torch.sigmoid(m)
        messages = u.index_select(0, src).mul_(sigma)
        # index_add_ (row-wise) is several times faster on CPU than scatter with a broadcast index.
        sum_sigma_h = m.new_zeros(num_nodes, m.size(1)).index_add_(0, dst, messages)
        del messages
        denominator = m.new_zeros(num_nodes, m.size(1)).index_add_(0, dst, sigma).add_(1e-6)
        h = sum_sigma_h.div_(denominator)
        ctx.save_for_backward(sigma, u, src, dst, h, denominator)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        sigma, u, src, dst, h, denominator = ctx.saved_tensors
        grad_num = grad_h / denominator  # d h / d sum_sigma_h
        grad_den = (grad_num * h).neg_()  # d h / d sum_sigma
        grad_messages = grad_num.index_select(0, dst)  # [E, D]
        grad_u = None
        if ctx.needs_input_grad[1]:
            grad_u = torch.zeros_like(u).index_add_(0, src, grad_messages * sigma)
        # d/d sigma: grad_messages * u[src] + grad_den[dst]; then sigmoid': sigma (1 - sigma), in one fused
        # pass over [E, D] (aten's sigmoid_backward) instead of a temporary (1 - sigma) and two products.
        grad_sigma = grad_messages.mul_(u.index_select(0, src)).add_(grad_den.index_select(0, dst))
        grad_m = torch.ops.aten.sigmoid_backward(grad_sigma, sigma)
        return grad_m, grad_u, None, None, None


class ALIGNNConv(nn.Module):
    """One ALIGNN layer: an edge-gated convolution on the crystal graph (atoms, bonds), then one on the
    line graph (bonds, bond-angle triplets), where the bond features are the line graph's nodes."""

    def __init__(self, *, dim: int, norm: str = "batch") -> None:
        super().__init__()
        self.node_update = EdgeGatedGraphConv(dim=dim, norm=norm)
        self.edge_update = EdgeGatedGraphConv(dim=dim, norm=norm)

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor,
        line_edge_index: torch.Tensor,
        z: torch.Tensor,
        *,
        update_triplets: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Shapes: x ``[N, D]``, y ``[E, D]``, z ``[T, D]``; edge_index ``[2, E]``, line_edge_index ``[2, T]``.

        ``update_triplets=False`` (the last ALIGNN layer, whose triplet features nobody reads) skips the
        triplet update and returns ``None`` for it; x and y are unchanged by the flag."""
        x, m = self.node_update(x, edge_index, y)
        y, z = self.edge_update(m, line_edge_index, z, update_edges=update_triplets)
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
