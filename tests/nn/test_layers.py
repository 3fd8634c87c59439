"""The reusable layers of crysfuse.nn.layers on tiny hand-built graphs: shapes, repr, and the gradients of the
hand-written backward pass of the gated aggregation."""

from __future__ import annotations

import pytest
import torch

from crysfuse.nn.layers import (
    ALIGNNConv,
    EdgeGatedGraphConv,
    MLPLayer,
    ProjectionHead,
    RBFExpansion,
    _GatedAggregation,
    mlp,
)

# A 4-atom graph: 6 directed edges (atom 3 receives none, so its aggregate is empty) and a 5-triplet line graph.
SRC = torch.tensor([0, 1, 1, 2, 0, 3])
DST = torch.tensor([1, 0, 2, 1, 2, 0])
LINE_SRC = torch.tensor([0, 1, 2, 3, 4])
LINE_DST = torch.tensor([2, 4, 3, 0, 1])


def _reference_aggregation(m: torch.Tensor, u: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                           num_nodes: int) -> torch.Tensor:
    """The same formula through plain autograd: ``Σ σ(m)·u[src] / (Σ σ(m) + 1e-6)`` per destination."""
    sigma = torch.sigmoid(m)
    numerator = m.new_zeros(num_nodes, m.size(1)).index_add(0, dst, sigma * u[src])
    denominator = m.new_zeros(num_nodes, m.size(1)).index_add(0, dst, sigma) + 1e-6
    return numerator / denominator


def _inputs(dtype: torch.dtype, dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    m = torch.randn(len(SRC), dim, generator=generator, dtype=dtype, requires_grad=True)
    u = torch.randn(4, dim, generator=generator, dtype=dtype, requires_grad=True)
    return m, u


def test_gated_aggregation_passes_gradcheck_in_float64():
    m, u = _inputs(torch.float64)
    assert torch.autograd.gradcheck(_GatedAggregation.apply, (m, u, SRC, DST, 4), eps=1e-6, atol=1e-6)


def test_gated_aggregation_matches_plain_autograd():
    m, u = _inputs(torch.float64, dim=5, seed=1)
    h = _GatedAggregation.apply(m, u, SRC, DST, 4)
    m_ref, u_ref = m.detach().clone().requires_grad_(), u.detach().clone().requires_grad_()
    expected = _reference_aggregation(m_ref, u_ref, SRC, DST, 4)
    assert h.shape == (4, 5)
    torch.testing.assert_close(h, expected)
    assert torch.equal(h[3], torch.zeros(5, dtype=torch.float64))  # no incoming edge: empty aggregate
    weights = torch.randn(4, 5, dtype=torch.float64)
    (h * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(m.grad, m_ref.grad)
    torch.testing.assert_close(u.grad, u_ref.grad)


def test_gated_aggregation_gradient_only_for_what_needs_it():
    m, u = _inputs(torch.float64)
    u = u.detach()
    _GatedAggregation.apply(m, u, SRC, DST, 4).sum().backward()
    assert m.grad is not None and u.grad is None


def test_edge_gated_conv_shapes_and_gradcheck():
    torch.manual_seed(0)
    conv = EdgeGatedGraphConv(dim=3).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    e = torch.randn(len(SRC), 3, dtype=torch.float64, requires_grad=True)
    edge_index = torch.stack([SRC, DST])
    x_out, e_out = conv(x, edge_index, e)
    assert x_out.shape == (4, 3) and e_out.shape == (len(SRC), 3)
    assert torch.autograd.gradcheck(lambda a, b: conv(a, edge_index, b), (x, e), eps=1e-6, atol=1e-5)


def test_alignn_conv_updates_atoms_bonds_and_angles():
    torch.manual_seed(0)
    layer = ALIGNNConv(dim=8)
    x, y, z = torch.randn(4, 8), torch.randn(len(SRC), 8), torch.randn(len(LINE_SRC), 8)
    x_out, y_out, z_out = layer(x, torch.stack([SRC, DST]), y, torch.stack([LINE_SRC, LINE_DST]), z)
    assert (x_out.shape, y_out.shape, z_out.shape) == (x.shape, y.shape, z.shape)
    assert not torch.equal(x_out, x) and not torch.equal(y_out, y) and not torch.equal(z_out, z)
    (x_out.sum() + z_out.sum()).backward()
    assert all(p.grad is not None for p in layer.node_update.parameters())


def test_rbf_expansion_peaks_at_its_centres_and_has_a_repr():
    rbf = RBFExpansion(vmin=0.0, vmax=8.0, num_bins=80)
    values = rbf(torch.tensor([[0.0, 4.0], [8.0, 2.5]]))
    assert values.shape == (2, 2, 80)
    assert int(values[0, 0].argmax()) == 0 and int(values[1, 0].argmax()) == 79
    assert float(values.max()) == pytest.approx(1.0) and float(values.min()) >= 0.0
    assert "bins=80" in repr(rbf) and "range=(0.00, 8.00)" in repr(rbf)


@pytest.mark.parametrize("layer, dim_in, dim_out", [
    (MLPLayer(dim_in=7, dim_out=5), 7, 5),
    (ProjectionHead(dim_in=7, dim_out=5), 7, 5),
    (mlp(dim_in=7, dim_hidden=11, dim_out=1), 7, 1),
])
def test_dense_layers_map_the_last_dimension(layer, dim_in, dim_out):
    layer.eval()
    assert layer(torch.randn(6, dim_in)).shape == (6, dim_out)


def test_projection_head_ends_in_layer_norm():
    head = ProjectionHead(dim_in=7, dim_out=16).eval()
    out = head(torch.randn(5, 7) * 100)
    torch.testing.assert_close(out.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(-1, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)


def test_last_layer_skips_the_edge_update_without_changing_the_nodes() -> None:
    """``update_edges=False`` (the last layer of a stack) returns no edge features and the same nodes."""
    torch.manual_seed(0)
    conv = EdgeGatedGraphConv(dim=3)
    x, e = torch.randn(4, 3), torch.randn(len(SRC), 3)
    edge_index = torch.stack([SRC, DST])
    x_full, e_full = conv(x, edge_index, e)
    x_last, e_last = conv(x, edge_index, e, update_edges=False)
    assert e_full is not None and e_full.shape == e.shape and e_last is None
    assert torch.allclose(x_full, x_last, atol=1e-6)


def test_mlp_layer_folds_batchnorm_in_eval_mode() -> None:
    """In eval mode the BatchNorm is folded into the linear weights: the same function as the plain chain."""
    torch.manual_seed(0)
    layer = MLPLayer(dim_in=5, dim_out=4)
    layer.train()
    for _ in range(3):  # running statistics away from their initial values
        layer(torch.randn(16, 5) * 3 + 1)
    layer[1].weight.data.uniform_(0.5, 2.0)
    layer[1].bias.data.uniform_(-1.0, 1.0)
    layer.eval()
    x = torch.randn(7, 5)
    plain = torch.nn.functional.silu(layer[1](layer[0](x)))
    assert torch.allclose(layer(x), plain, atol=1e-5)


def test_rbf_expansion_is_the_gaussian_formula() -> None:
    rbf = RBFExpansion(vmin=-1.0, vmax=1.0, num_bins=40)
    values = torch.linspace(-1, 1, 11)
    expected = torch.exp(-rbf.gamma * (values.unsqueeze(-1) - rbf.centres) ** 2)
    assert torch.equal(rbf(values), expected)
    assert torch.equal(values, torch.linspace(-1, 1, 11))  # input untouched by the in-place passes


def test_bf16_autocast_keeps_the_edge_gate_in_bfloat16() -> None:
    """Under bf16 autocast no float32 [E, D] tensor appears (a float32 bias once promoted the gathered
    terms, costing two conversions over [E, D] forward and backward)."""
    torch.manual_seed(0)
    conv = EdgeGatedGraphConv(dim=8)
    x, e = torch.randn(4, 8), torch.randn(len(SRC), 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_out, e_out = conv(x, torch.stack([SRC, DST]), conv.edge_gate(e))
    assert e_out.dtype == torch.bfloat16 and x_out.dtype == torch.bfloat16
