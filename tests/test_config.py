from __future__ import annotations

import json

import pytest

from crysfuse.config import Config, ConfigError


def test_round_trip_through_json(tmp_path):
    config = Config().with_overrides(["train.epochs=3", "data.target='gap pbe'", "data.split_fractions=[0.7,0.2,0.1]"])
    config.save(tmp_path / "config.json")
    loaded = Config.load(tmp_path / "config.json")
    assert loaded == config
    assert loaded.data.split_fractions == (0.7, 0.2, 0.1)


def test_yaml_partial_config_fills_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("fusion:\n  name: concat\ntrain:\n  learning_rate: 1\n")
    config = Config.load(tmp_path / "c.yaml")
    assert config.fusion.name == "concat"
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.model.dim_hidden == 256


@pytest.mark.parametrize(
    "overrides",
    [["train.epoch=3"], ["nosection.x=1"], ["train.epochs=three"], ["train.deterministic=1"], ["epochs"]],
)
def test_bad_overrides_are_errors(overrides):
    with pytest.raises(ConfigError):
        Config().with_overrides(overrides)


def test_unknown_key_in_file_is_an_error(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"train": {"epochs": 2, "lr": 0.1}}))
    with pytest.raises(ConfigError, match="lr"):
        Config.load(tmp_path / "c.json")


def test_null_override_for_optional():
    assert Config().with_overrides(["train.patience=null"]).train.patience is None
