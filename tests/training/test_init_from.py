"""Two-stage training (``train.init_from``): the graph side starts from a finished run, the rest fresh."""

from __future__ import annotations

import json

import pytest
import torch

from crysfuse.config import ConfigError
from crysfuse.models.crysfuse import CrysFuseModel
from crysfuse.rundir import load_run
from crysfuse.training.init_from import check_init_source, initialize_graph_side
from tests.helpers import DIM_TEXT, tiny_config


def test_the_graph_side_is_copied_and_nothing_else(train_tiny):
    source = train_tiny("graph_only")
    donor = load_run(source).model.state_dict()
    model = CrysFuseModel(load_run(source).config.replace({"fusion.name": "concat"}), dim_text=DIM_TEXT)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    copied = initialize_graph_side(model, source)
    state = model.state_dict()
    assert copied and all(k.startswith(("encoder.", "graph_projection.")) for k in copied)
    assert {k for k in state if k.startswith(("encoder.", "graph_projection."))} == set(copied)
    assert all(torch.equal(state[k], donor[k]) for k in copied)
    assert any(not torch.equal(fresh[k], donor[k]) for k in copied if donor[k].is_floating_point())
    others = [k for k in state if k not in copied]
    assert others and all(torch.equal(state[k], fresh[k]) for k in others)  # text, fusion, head: untouched


def test_a_different_model_section_or_an_unfinished_run_is_refused(train_tiny, tmp_path):
    source = train_tiny("graph_only")
    wider = CrysFuseModel(load_run(source).config.replace({"model.dim_hidden": 48}), dim_text=0)
    with pytest.raises(ConfigError, match="does not fit"):
        initialize_graph_side(wider, source)
    with pytest.raises(ConfigError, match="not a finished"):
        initialize_graph_side(CrysFuseModel(tiny_config("concat"), dim_text=DIM_TEXT), tmp_path)
    with pytest.raises(ConfigError, match="no graph encoder"):
        initialize_graph_side(CrysFuseModel(tiny_config("text_only"), dim_text=DIM_TEXT), source)


def test_a_two_stage_run_trains_end_to_end(train_tiny):
    source = train_tiny("graph_only")
    run_dir = train_tiny("concat", f"train.init_from={source}", epochs=1)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["init_from"] == str(source)
    assert summary["test_mae"] > 0


def test_the_source_is_checked_before_any_data_is_prepared(train_tiny, tmp_path):
    source = train_tiny("graph_only")
    assert check_init_source(source, fusion="concat") == source
    with pytest.raises(ConfigError, match="no graph encoder"):
        check_init_source(source, fusion="text_only")
    stripped = tmp_path / "committed"  # a committed study run: everything but the weights
    stripped.mkdir()
    for name in ("summary.json", "status.json", "config.json", "meta.json"):
        (stripped / name).write_bytes((source / name).read_bytes())
    with pytest.raises(ConfigError, match="has no weights"):
        check_init_source(stripped)
