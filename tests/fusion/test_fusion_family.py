"""Every registered fusion variant honours the contract in crysfuse.fusion.base."""

from __future__ import annotations

import pytest
import torch

from crysfuse.fusion import FUSION
from crysfuse.models.crysfuse import CrysFuseModel
from tests.helpers import DIM_TEXT, crystal_batch, tiny_config

SUMMARY_SUFFIXES = ("_mean", "_std", "_min", "_max")


def _model(name: str) -> CrysFuseModel:
    torch.manual_seed(0)
    return CrysFuseModel(tiny_config(name), dim_text=DIM_TEXT)


@pytest.mark.parametrize("name", FUSION.names())
def test_shapes_gates_and_diagnostic_keys(name):
    model = _model(name).eval()
    batch = crystal_batch([5, 3, 7, 2])
    output = model(batch)
    assert output.prediction.shape == (4,)
    assert torch.isfinite(output.prediction).all()
    per_sample = {k: v for k, v in output.diagnostics.items() if not k.endswith(SUMMARY_SUFFIXES)}
    for key, values in per_sample.items():
        assert values.shape == (4,), key
        assert ((values >= 0) & (values <= 1)).all(), key
        for suffix in SUMMARY_SUFFIXES:
            assert output.diagnostics[key + suffix].dim() == 0
        assert torch.isclose(output.diagnostics[f"{key}_mean"], values.mean())
    if FUSION.get(name).uses_text and name != "concat":
        assert per_sample, f"{name} reports no gate"


@pytest.mark.parametrize("name", FUSION.names())
def test_gradients_reach_graph_and_text(name):
    model = _model(name).train()
    batch = crystal_batch([5, 3, 7, 2])
    model(batch).prediction.sum().backward()
    atom_grad = model.encoder.atom_embedding[0].weight.grad
    assert atom_grad is not None and atom_grad.abs().sum() > 0
    if model.uses_text:
        text_grad = model.text_projection.projection.weight.grad
        assert text_grad is not None and text_grad.abs().sum() > 0


@pytest.mark.parametrize("name", FUSION.names())
def test_empty_text_gives_finite_outputs(name):
    model = _model(name).eval()
    for lengths in ([0, 0, 0, 0], [4, 0, 2, 0]):
        output = model(crystal_batch(lengths))
        assert torch.isfinite(output.prediction).all()
        assert all(torch.isfinite(v).all() for v in output.diagnostics.values())


@pytest.mark.parametrize("name", [n for n in FUSION.names() if FUSION.get(n).uses_text])
def test_text_changes_the_prediction(name):
    """The text really enters: different token embeddings give different predictions."""
    model = _model(name).eval()
    a = model(crystal_batch([5, 3, 7, 2], seed=0)).prediction
    b = model(crystal_batch([5, 3, 7, 2], seed=1)).prediction
    assert not torch.allclose(a, b)


def test_attention_uses_many_tokens():
    """The simplified gate's attention is real: masking a later token changes the output."""
    model = _model("simplified").eval()
    batch = crystal_batch([6, 6, 6, 6])
    before = model(batch).prediction
    batch.text_tokens[3] += 10.0  # a non-first token of crystal 0
    after = model(batch).prediction
    assert not torch.isclose(before[0], after[0])
    assert torch.allclose(before[1:], after[1:])
