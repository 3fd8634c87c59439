import torch

from crysfuse.config import Config
from crysfuse.models.alignn import ALIGNNEncoder
from crysfuse.models.crysfuse import CrysFuseModel
from tests.helpers import crystal_batch, tiny_config


def test_default_backbone_matches_the_reference_parameter_count():
    encoder = ALIGNNEncoder(Config().model)
    assert sum(p.numel() for p in encoder.parameters()) == 4_026_496


def test_encoder_shapes_and_permutation_of_batch():
    torch.manual_seed(0)
    config = tiny_config("graph_only")
    encoder = ALIGNNEncoder(config.model).eval()
    batch = crystal_batch([1, 1, 1])
    encoding = encoder(batch)
    assert encoding.nodes.shape == (batch.num_nodes, 32)
    assert encoding.graph.shape == (3, 32)
    single = encoder(crystal_batch([1]))
    assert torch.allclose(single.graph[0], encoding.graph[0], atol=1e-5)


def test_target_scaling_is_applied_and_saved():
    model = CrysFuseModel(tiny_config("graph_only"), dim_text=0).eval()
    batch = crystal_batch([1, 1])
    raw = model.forward_normalized(batch).prediction
    model.set_target_scaling(2.0, 3.0)
    assert torch.allclose(model(batch).prediction, raw * 3.0 + 2.0)
    assert {"target_mean", "target_std"} <= set(model.state_dict())


def test_fusion_parameter_count_is_zero_for_graph_only():
    assert CrysFuseModel(tiny_config("graph_only"), dim_text=12).num_fusion_parameters() == 0
    full = CrysFuseModel(tiny_config("concat"), dim_text=12)
    base = CrysFuseModel(tiny_config("graph_only"), dim_text=12)
    assert full.num_fusion_parameters() == full.num_parameters() - base.num_parameters()
