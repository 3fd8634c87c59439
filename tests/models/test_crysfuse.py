"""CrysFuseModel as a whole: what ``forward`` returns under reduced precision; the parameter-matched control."""

import torch

from crysfuse.models.crysfuse import CrysFuseModel
from tests.helpers import DIM_TEXT, crystal_batch, tiny_config


def test_the_head_runs_in_float32_under_bf16_autocast():
    """A bfloat16 prediction would keep 8 significant bits (steps of 0.03 at a target of 5): the head and the
    target scaling must stay float32 while the encoder runs in bfloat16."""
    model = CrysFuseModel(tiny_config("graph_only"), dim_text=0).eval()
    model.set_target_scaling(5.0, 0.37)
    batch = crystal_batch([0, 1, 0, 1])
    seen: dict[str, torch.dtype] = {}
    model.head.register_forward_hook(lambda module, args, out: seen.update(inputs=args[0].dtype, out=out.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = model(batch).prediction
        encoded = model.encoder(batch).graph
    assert encoded.dtype == torch.bfloat16  # autocast really reached the encoder
    assert seen == {"inputs": torch.float32, "out": torch.float32}
    assert prediction.dtype == torch.float32
    # Not on bfloat16's grid at 5: steps there are 2**-5 = 0.03125.
    assert not torch.equal(prediction, prediction.to(torch.bfloat16).float())


def test_the_linear_head_runs_in_float32_under_bf16_autocast():
    model = CrysFuseModel(tiny_config("graph_only").replace({"model.head": "linear"}), dim_text=0).eval()
    batch = crystal_batch([0, 1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = model(batch).prediction
    assert prediction.dtype == torch.float32


def test_the_parameter_matched_graph_only_has_the_variants_parameter_count():
    from crysfuse.models.crysfuse import matched_head_width

    config = tiny_config("graph_only")
    for variant in ("concat", "cross_attention", "gated"):
        width, params, target = matched_head_width(config, variant, dim_text=DIM_TEXT)
        fused = CrysFuseModel(config.replace({"fusion.name": variant}), dim_text=DIM_TEXT).num_parameters()
        matched = CrysFuseModel(config.replace({"model.dim_head": width}), dim_text=0).num_parameters()
        assert target == fused and params == matched
        per_unit = config.model.dim_projection + 2  # one hidden unit of the head: weights in and out, a bias
        assert abs(matched - fused) <= per_unit / 2 + 1 and width > config.model.dim_head
