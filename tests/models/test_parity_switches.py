"""The model-side switches of the parity ablation (docs/parity.md): ``model.norm``, ``model.readout``,
``model.head``, ``data.target_transform`` and ``data.standardize_target``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from crysfuse.config import Config, ConfigError
from crysfuse.models.alignn import ALIGNNEncoder
from crysfuse.models.crysfuse import CrysFuseModel
from crysfuse.models.targets import inverse_target, transform_target, transformed_targets
from crysfuse.training.run import target_scaling
from tests.helpers import crystal_batch, tiny_config


def _norms(module: nn.Module) -> list[type]:
    return [type(m) for m in module.modules() if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm))]


def test_defaults_are_unchanged():
    config = Config()
    assert (config.model.norm, config.model.readout, config.model.head) == ("layer", "mean", "projection")
    assert (config.data.target_transform, config.data.standardize_target) == ("none", True)
    assert config.graph.neighbor_rule == "jarvis"
    assert set(_norms(ALIGNNEncoder(config.model))) == {nn.LayerNorm}


def test_layer_norm_replaces_every_encoder_batch_norm_with_the_same_parameter_names():
    batch_norm = ALIGNNEncoder(tiny_config("graph_only", ["model.norm=batch"]).model)
    layer_norm = ALIGNNEncoder(tiny_config("graph_only", ["model.norm=layer"]).model)
    assert set(_norms(batch_norm)) == {nn.BatchNorm1d}
    assert set(_norms(layer_norm)) == {nn.LayerNorm}
    assert len(_norms(layer_norm)) == len(_norms(batch_norm))
    assert [n for n, _ in layer_norm.named_parameters()] == [n for n, _ in batch_norm.named_parameters()]
    # The default backbone keeps the reference's parameter count with either norm.
    assert sum(p.numel() for p in ALIGNNEncoder(Config().replace({"model.norm": "layer"}).model).parameters()) \
        == 4_026_496


def test_layer_norm_makes_each_crystal_independent_of_its_batch_even_in_training_mode():
    torch.manual_seed(0)
    layer = ALIGNNEncoder(tiny_config("graph_only", ["model.norm=layer"]).model).train()
    batch = ALIGNNEncoder(tiny_config("graph_only", ["model.norm=batch"]).model).train()
    together, alone = crystal_batch([1, 1, 1]), crystal_batch([1])
    assert torch.allclose(layer(together).graph[0], layer(alone).graph[0], atol=1e-5)
    assert not torch.allclose(batch(together).graph[0], batch(alone).graph[0], atol=1e-3)


def test_layer_norm_model_runs_in_eval_mode_and_loads_its_own_weights():
    config = tiny_config("graph_only", ["model.norm=layer"])
    model = CrysFuseModel(config, dim_text=0).eval()
    other = CrysFuseModel(config, dim_text=0)
    other.load_state_dict(model.state_dict())
    batch = crystal_batch([1, 1])
    assert torch.equal(model(batch).prediction, other.eval()(batch).prediction)


def test_sum_readout_is_the_mean_times_the_atom_count():
    torch.manual_seed(0)
    mean = ALIGNNEncoder(tiny_config("graph_only").model).eval()
    total = ALIGNNEncoder(tiny_config("graph_only", ["model.readout=sum"]).model).eval()
    total.load_state_dict(mean.state_dict())
    batch = crystal_batch([1, 1, 1])
    counts = torch.bincount(batch.batch).float().unsqueeze(1)
    assert torch.allclose(total(batch).graph, mean(batch).graph * counts, atol=1e-5)


def test_linear_head_is_one_linear_layer_on_the_pooled_graph_vector():
    torch.manual_seed(0)
    model = CrysFuseModel(tiny_config("graph_only", ["model.head=linear"]), dim_text=0).eval()
    assert model.graph_projection is None and isinstance(model.head, nn.Linear)
    assert model.head.in_features == 32 and model.head.out_features == 1
    encoder_params = sum(p.numel() for p in model.encoder.parameters())
    assert model.num_parameters() == encoder_params + 33
    assert model.num_fusion_parameters() == 0
    batch = crystal_batch([1, 1])
    expected = model.head(model.encoder(batch).graph).squeeze(-1)
    assert torch.allclose(model.forward_normalized(batch).prediction, expected)


@pytest.mark.parametrize("extra", [["fusion.name=concat"], ["fusion.middle_layers=[0]"]])
def test_linear_head_refuses_text_fusion(extra):
    config = tiny_config("graph_only", ["model.head=linear"]).with_overrides(extra)
    with pytest.raises(ConfigError, match="linear"):
        CrysFuseModel(config, dim_text=12)


@pytest.mark.parametrize("key,value", [("model.norm", "group"), ("model.readout", "max"), ("model.head", "deep"),
                                       ("data.target_transform", "log"), ("graph.neighbor_rule", "knn")])
def test_unknown_choices_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=key):
        Config().replace({key: value})


@pytest.mark.parametrize("name", ["none", "log1p", "asinh"])
def test_target_transforms_round_trip(name):
    y = torch.tensor([0.0, 0.0, 0.3, 1.7, 6.2], dtype=torch.float64)
    if name == "asinh":
        y = torch.cat([y, torch.tensor([-13.6, -2.0])])
    assert torch.allclose(inverse_target(name, transform_target(name, y)), y, atol=1e-12)


def test_log1p_refuses_targets_at_or_below_minus_one():
    assert np.allclose(transformed_targets("log1p", np.array([0.0, 1.0])), [0.0, math.log(2.0)])
    with pytest.raises(ConfigError, match="asinh"):
        transformed_targets("log1p", np.array([0.5, -1.0, -3.0]))


def test_predictions_are_in_original_units_with_a_transform():
    torch.manual_seed(0)
    model = CrysFuseModel(tiny_config("graph_only", ["data.target_transform=log1p"]), dim_text=0).eval()
    model.set_target_scaling(0.4, 0.7)
    batch = crystal_batch([1, 1, 1])
    normalized = model.forward_normalized(batch).prediction
    assert torch.allclose(model(batch).prediction, torch.expm1(normalized * 0.7 + 0.4))
    y = torch.tensor([0.0, 1.5, 4.0])
    assert torch.allclose(model.to_target_units(model.normalize_target(y)), y, atol=1e-6)
    assert torch.allclose(model.normalize_target(y), (torch.log1p(y) - 0.4) / 0.7)


def test_target_scaling_follows_the_transform_and_can_be_switched_off():
    targets = [0.0, 0.0, 1.0, 3.0]
    assert target_scaling(tiny_config("graph_only"), targets) == pytest.approx((1.0, np.std(targets)))
    logs = np.log1p(targets)
    config = tiny_config("graph_only", ["data.target_transform=log1p"])
    assert target_scaling(config, targets) == pytest.approx((logs.mean(), logs.std()))
    assert target_scaling(tiny_config("graph_only", ["data.standardize_target=false"]), targets) == (0.0, 1.0)
    with pytest.raises(ConfigError):  # the domain is checked even without standardisation
        target_scaling(tiny_config("graph_only", ["data.standardize_target=false", "data.target_transform=log1p"]),
                       [-2.0, 1.0])


def test_a_run_directory_from_before_the_switches_still_loads(tmp_path):
    """config.json files written before the parity switches lack their keys; they load with the values those
    runs trained with (BatchNorm, MSE: the defaults of that time) or today's defaults where those did not
    change, and the saved weights fit the rebuilt model."""
    import json

    from crysfuse.rundir import load_run, save_weights, write_meta

    config = tiny_config("graph_only", ["model.norm=batch"])  # what every run before the key used
    model = CrysFuseModel(config, dim_text=0)
    old = config.to_dict()
    for section, key in [("model", "norm"), ("model", "readout"), ("model", "head"), ("data", "target_transform"),
                         ("data", "standardize_target"), ("graph", "neighbor_rule"), ("train", "ema_decay"),
                         ("train", "select"), ("train", "drop_last"), ("train", "schedule"), ("train", "huber_delta"),
                         ("train", "weight_decay_norms_biases"), ("train", "loss")]:
        del old[section][key]
    (tmp_path / "config.json").write_text(json.dumps(old))
    write_meta(tmp_path, dim_text=0, encoder_id=None)
    save_weights(tmp_path / "model.safetensors", model)
    loaded = load_run(tmp_path)
    assert loaded.config.model.norm == "batch" and loaded.config.train.loss == "mse"
    assert loaded.config.train.ema_decay == 0.0 and loaded.config.model.head == "projection"
    batch = crystal_batch([1, 1])
    assert torch.equal(loaded.model(batch).prediction, model.eval()(batch).prediction)


def test_variant_table_works_from_a_linear_head_config():
    from crysfuse.models.crysfuse import variant_parameter_counts

    rows = {name: total for name, _, total, _ in
            variant_parameter_counts(tiny_config("graph_only", ["model.head=linear"]), dim_text=12)}
    assert rows["graph_only"] == CrysFuseModel(tiny_config("graph_only", ["model.head=linear"]), dim_text=0) \
        .num_parameters()
    assert rows["concat"] == CrysFuseModel(tiny_config("concat"), dim_text=12).num_parameters()
