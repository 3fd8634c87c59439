"""Every registered fusion variant honours the contract in crysfuse.fusion.base, and does what it declares.

Nothing here names a variant's gates or settings: they come from the class declarations in the registry, so a
new variant (one file and its registration) is tested without editing this file.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

from crysfuse.config import FusionConfig
from crysfuse.config_reference import VARIANT_TABLE_END, VARIANT_TABLE_START
from crysfuse.fusion import FUSION
from crysfuse.models.crysfuse import CrysFuseModel
from tests.helpers import DIM_TEXT, crystal_batch, tiny_config

SUMMARY_SUFFIXES = ("_mean", "_std", "_min", "_max")
VARIANTS = FUSION.names()
EXPECTED_GATES = {name: set(FUSION.get(name).gates) for name in VARIANTS}
EXPECTED_SCALARS = {name: set(FUSION.get(name).scalars) for name in VARIANTS}
FUSION_DOC = Path(__file__).resolve().parents[2] / "docs" / "fusion.md"
GRAPH_VARIANTS = [n for n in VARIANTS if FUSION.get(n).uses_graph]


def _middle(name: str) -> list[str]:
    """Middle fusion where the variant has a graph encoder to inject text into (else nothing)."""
    return ["fusion.middle_layers=[0]"] if FUSION.get(name).uses_graph else []


def _model(name: str, extra: list[str] | None = None) -> CrysFuseModel:
    torch.manual_seed(0)
    return CrysFuseModel(tiny_config(name, extra), dim_text=DIM_TEXT)


def _documented_variants() -> set[str]:
    text = FUSION_DOC.read_text(encoding="utf-8")
    table = text[text.index(VARIANT_TABLE_START):text.index(VARIANT_TABLE_END)]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))


def test_every_documented_variant_is_registered():
    assert set(VARIANTS) == _documented_variants()


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
    if not FUSION.get(name).uses_graph:  # text_only: no graph encoder is built at all
        assert model.encoder is None and model.graph_projection is None
    else:
        atom_grad = model.encoder.atom_embedding[0].weight.grad
        assert atom_grad is not None and atom_grad.abs().sum() > 0
    if model.uses_text:
        text_grad = model.text_projection.projection.weight.grad
        assert text_grad is not None and text_grad.abs().sum() > 0


@pytest.mark.parametrize("name", VARIANTS)
def test_empty_text_gives_finite_outputs(name):
    model = _model(name, _middle(name)).eval()
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
    model = _model(name, _middle(name)).eval()
    batch = crystal_batch([5, 3, 7, 2])
    expected = model(batch).prediction
    state = load(save({k: v.contiguous() for k, v in model.state_dict().items()}))
    torch.manual_seed(123)
    copy = CrysFuseModel(tiny_config(name, _middle(name)), dim_text=DIM_TEXT)
    copy.load_state_dict(state, strict=True)
    assert torch.equal(copy.eval()(batch).prediction, expected)


@pytest.mark.parametrize("name", GRAPH_VARIANTS)
def test_middle_fusion_combines_with_every_graph_variant(name):
    model = _model(name, ["fusion.middle_layers=[0]"]).train()
    output = model(crystal_batch([5, 3, 7, 2]), step=10)
    assert model.uses_text
    for key in ("middle0_gate", "middle0_gate_saturation"):
        assert output.diagnostics[key].shape == (4,)
    output.prediction.sum().backward()
    assert model.middle["0"].gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", [n for n in VARIANTS if not FUSION.get(n).uses_graph])
def test_middle_fusion_without_a_graph_encoder_is_a_config_error(name):
    from crysfuse.config import ConfigError

    with pytest.raises(ConfigError, match="middle_layers"):
        _model(name, ["fusion.middle_layers=[0]"])


@pytest.mark.parametrize("name", [n for n in VARIANTS if not FUSION.get(n).uses_graph])
def test_graph_free_variant_ignores_the_graph(name):
    """No graph encoder is built, and the prediction depends only on the text: the same tokens on other crystals
    give the same predictions."""
    model = _model(name).eval()
    assert model.encoder is None and not any(k.startswith(("encoder.", "graph_projection.")) for k in model.state_dict())
    a = model(crystal_batch([5, 3, 7, 2], seed=0)).prediction
    other = crystal_batch([5, 3, 7, 2], seed=0)
    other.edge_vectors = other.edge_vectors * 1.1  # other geometry, same text
    assert torch.equal(model(other).prediction, a)


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


@pytest.mark.parametrize("name", [n for n in VARIANTS if "attention_entropy" in FUSION.get(n).on_request])
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


FUSION_FIELDS = {f.name for f in dataclasses.fields(FusionConfig)} - {"name"}
# A changed value for each setting a variant might read (num_heads must divide model.dim_projection = 16).
CHANGED = {"num_heads": 4, "dim_hidden": 16, "dropout": 0.5, "quality_threshold": 1.0, "warmup_steps": 7,
           "return_attention": True}


@pytest.mark.parametrize("name", VARIANTS)
def test_declared_hyperparameters_are_fusion_settings(name):
    assert set(FUSION.get(name).hyperparameters) <= FUSION_FIELDS
    assert set(CHANGED) | {"middle_layers", "middle_dim_hidden"} == FUSION_FIELDS  # the test below covers all


@pytest.mark.parametrize("name", VARIANTS)
def test_settings_a_variant_does_not_declare_change_nothing(name):
    """The declarations are complete: a fusion setting the variant does not declare leaves its parameters and
    its outputs (training mode, same dropout draws) exactly as they were."""
    undeclared = sorted(set(CHANGED) - set(FUSION.get(name).hyperparameters))
    batch = crystal_batch([5, 3, 7, 2])

    def run(extra: list[str]) -> tuple[dict, torch.Tensor, set[str]]:
        model = _model(name, extra).train()
        torch.manual_seed(1)
        output = model(batch, step=3)
        return model.state_dict(), output.prediction, set(output.diagnostics)

    state, prediction, keys = run([])
    for setting in undeclared:
        other_state, other_prediction, other_keys = run([f"fusion.{setting}={str(CHANGED[setting]).lower()}"])
        assert other_state.keys() == state.keys(), setting
        assert all(torch.equal(other_state[k], state[k]) for k in state), setting
        assert torch.equal(other_prediction, prediction), setting
        assert other_keys == keys, setting



ATTENTION_VARIANTS = [n for n in VARIANTS if FUSION.get(n).attention_maps]


def test_attention_variants_declare_token_attention():
    """At least the cross-attention family declares maps, and every declared map reads tokens or atoms."""
    assert "cross_attention" in ATTENTION_VARIANTS
    kinds = {"atoms", "tokens", "graph", "text"}
    for name in ATTENTION_VARIANTS:
        for query, key in FUSION.get(name).attention_maps.values():
            assert query in kinds and key in kinds, name


@pytest.mark.parametrize("name", ATTENTION_VARIANTS)
def test_declared_attention_maps_are_returned_per_call(name):
    """``return_attention=True`` on one call returns exactly the declared maps, ``[B, Q, K]`` rows that sum to
    1 over the valid keys (0 for a crystal without text), spread over many tokens (not one key)."""
    model = _model(name).eval()
    lengths = [5, 3, 7, 0]
    batch = crystal_batch(lengths)
    assert model(batch).attention == {}  # off by default
    output = model(batch, return_attention=True)
    declared = FUSION.get(name).attention_maps
    assert set(output.attention) == set(declared)
    atoms = torch.bincount(batch.batch, minlength=4)
    for map_name, weights in output.attention.items():
        query, key = declared[map_name]
        assert weights.dim() == 3 and weights.size(0) == 4
        if query in ("graph", "text"):
            assert weights.size(1) == 1, map_name
        for i in range(4):
            valid_keys = lengths[i] if key == "tokens" else int(atoms[i])
            valid_queries = int(atoms[i]) if query == "atoms" else 1
            rows = weights[i, :valid_queries, :valid_keys]
            if key == "tokens" and lengths[i] == 0:
                assert torch.all(weights[i] == 0), map_name
                continue
            assert torch.allclose(rows.sum(-1), torch.ones(valid_queries), atol=1e-5), map_name
            assert torch.all(weights[i, :, valid_keys:] == 0), map_name  # padding gets nothing
            if valid_keys > 1:
                assert (rows > 1e-4).sum(-1).min() > 1, map_name  # real multi-key attention


def test_middle_fusion_returns_its_gate_per_atom():
    model = _model("concat", ["fusion.middle_layers=[0]"]).eval()
    batch = crystal_batch([5, 3, 7, 2])
    output = model(batch, return_attention=True)
    per_atom = output.atom_gates["middle0"]
    assert per_atom.shape == (batch.num_nodes,)
    means = torch.zeros(4).index_add_(0, batch.batch, per_atom) / torch.bincount(batch.batch, minlength=4)
    assert torch.allclose(means, output.diagnostics["middle0_gate"], atol=1e-6)
