"""Every registered fusion variant honours the contract in crysfuse.fusion.base."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

from crysfuse.fusion import FUSION
from crysfuse.models.crysfuse import CrysFuseModel
from tests.helpers import DIM_TEXT, crystal_batch, tiny_config

SUMMARY_SUFFIXES = ("_mean", "_std", "_min", "_max")
GATED = {"quality", "fusion", "effective"}
EXPECTED_GATES = {
    "graph_only": set(), "concat": set(), "cross_attention": set(),
    "gated": GATED, "quality": GATED, "balanced": GATED,
    "simplified": {"gate"}, "warmup": {"gate"},
}
EXPECTED_SCALARS = {"warmup": {"warmup_factor", "gate_strength"}, "quality": {"quality_threshold", "quality_mix"}}
VARIANTS = FUSION.names()


def _model(name: str, extra: list[str] | None = None) -> CrysFuseModel:
    torch.manual_seed(0)
    return CrysFuseModel(tiny_config(name, extra), dim_text=DIM_TEXT)


def test_every_documented_variant_is_registered():
    assert set(VARIANTS) == set(EXPECTED_GATES)


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_gates_and_diagnostic_keys(name):
    model = _model(name).eval()
    output = model(crystal_batch([5, 3, 7, 2]))
    assert output.prediction.shape == (4,)
    assert torch.isfinite(output.prediction).all()
    per_sample = {k: v for k, v in output.diagnostics.items() if v.dim() == 1}
    scalars = {k for k, v in output.diagnostics.items() if v.dim() == 0 and not k.endswith(SUMMARY_SUFFIXES)}
    assert set(per_sample) == EXPECTED_GATES[name]
    assert scalars == EXPECTED_SCALARS.get(name, set())
    for key, values in per_sample.items():
        assert values.shape == (4,), key
        assert ((values >= 0) & (values <= 1)).all(), key
        for suffix in SUMMARY_SUFFIXES:
            assert output.diagnostics[key + suffix].dim() == 0
        assert torch.isclose(output.diagnostics[f"{key}_mean"], values.mean())
        assert torch.isclose(output.diagnostics[f"{key}_min"], values.min())


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_graph_and_text(name):
    model = _model(name).train()
    model(crystal_batch([5, 3, 7, 2]), step=10_000).prediction.sum().backward()
    atom_grad = model.encoder.atom_embedding[0].weight.grad
    assert atom_grad is not None and atom_grad.abs().sum() > 0
    if model.uses_text:
        text_grad = model.text_projection.projection.weight.grad
        assert text_grad is not None and text_grad.abs().sum() > 0


@pytest.mark.parametrize("name", VARIANTS)
def test_empty_text_gives_finite_outputs(name):
    model = _model(name, ["fusion.middle_layers=[0]"]).eval()
    for lengths in ([0, 0, 0, 0], [4, 0, 2, 0]):
        output = model(crystal_batch(lengths))
        assert torch.isfinite(output.prediction).all()
        assert all(torch.isfinite(v).all() for v in output.diagnostics.values())


@pytest.mark.parametrize("name", [n for n in VARIANTS if FUSION.get(n).uses_text])
def test_text_changes_the_prediction(name):
    """The text really enters: different token embeddings give different predictions."""
    model = _model(name).train()
    model(crystal_batch([5, 3, 7, 2]), step=10_000)  # lets `warmup` finish its ramp
    model.eval()
    a = model(crystal_batch([5, 3, 7, 2], seed=0)).prediction
    b = model(crystal_batch([5, 3, 7, 2], seed=1)).prediction
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", VARIANTS)
def test_save_load_gives_identical_predictions(name):
    model = _model(name, ["fusion.middle_layers=[0]"]).eval()
    batch = crystal_batch([5, 3, 7, 2])
    expected = model(batch).prediction
    state = load(save({k: v.contiguous() for k, v in model.state_dict().items()}))
    torch.manual_seed(123)
    copy = CrysFuseModel(tiny_config(name, ["fusion.middle_layers=[0]"]), dim_text=DIM_TEXT)
    copy.load_state_dict(state, strict=True)
    assert torch.equal(copy.eval()(batch).prediction, expected)


@pytest.mark.parametrize("name", VARIANTS)
def test_middle_fusion_combines_with_every_variant(name):
    model = _model(name, ["fusion.middle_layers=[0]"]).train()
    output = model(crystal_batch([5, 3, 7, 2]), step=10)
    assert model.uses_text
    for key in ("middle0_gate", "middle0_gate_saturation"):
        assert output.diagnostics[key].shape == (4,)
    output.prediction.sum().backward()
    assert model.middle["0"].gate.weight.grad.abs().sum() > 0


def test_middle_layer_out_of_range_is_a_config_error():
    from crysfuse.config import ConfigError

    with pytest.raises(ConfigError, match="middle_layers"):
        _model("simplified", ["fusion.middle_layers=[5]"])


def test_attention_uses_many_tokens():
    """The simplified gate's attention is real: changing a later token changes only that crystal's output."""
    model = _model("simplified").eval()
    batch = crystal_batch([6, 6, 6, 6])
    before = model(batch).prediction
    batch.text_tokens[3] += 10.0  # a non-first token of crystal 0
    after = model(batch).prediction
    assert not torch.isclose(before[0], after[0])
    assert torch.allclose(before[1:], after[1:])


@pytest.mark.parametrize("name", ["cross_attention", "gated", "simplified"])
def test_attention_weights_and_entropy_on_request(name):
    model = _model(name, ["fusion.return_attention=true"]).eval()
    batch = crystal_batch([5, 3, 7, 0])
    fused = model(batch)
    entropy = fused.diagnostics["attention_entropy"]
    assert entropy.shape == (4,) and ((entropy >= 0) & (entropy <= 1)).all()
    assert entropy[3] == 0  # no tokens, no attention


def test_warmup_ramp_is_applied():
    model = _model("warmup", ["fusion.warmup_steps=100"]).train()
    batch = crystal_batch([5, 3, 7, 2])
    out0 = model(batch, step=0)
    assert float(out0.diagnostics["warmup_factor"]) == 0.0
    out50 = model(batch, step=50)
    assert float(out50.diagnostics["warmup_factor"]) == pytest.approx(0.5)
    model.eval()
    assert float(model(batch).diagnostics["warmup_factor"]) == pytest.approx(0.5)  # kept for inference


def test_gated_quality_norm_factor_is_saturated_as_in_the_seed():
    """The original quality gate's norm factor σ(‖t‖ − 3) is ≈ 1 because t leaves a LayerNorm."""
    model = _model("gated", ["model.dim_projection=64"]).eval()
    diag = model(crystal_batch([5, 0, 7, 2])).diagnostics
    learned_only = torch.sigmoid(model.fusion.quality_gate.score(torch.zeros(1, 64))).item()
    assert diag["quality_max"] <= 1.0 and learned_only > 0
    text = model.text_projection(torch.zeros(1, DIM_TEXT))
    assert torch.sigmoid(torch.linalg.vector_norm(text) - 3.0) > 0.99
