"""One typed configuration tree for a crysfuse run.

Every run saves its fully resolved config as ``config.json``; a run is reproducible from that file alone.
Configs load from YAML or JSON (safe loaders only), accept dotted overrides (``train.epochs=5``) and reject
unknown keys, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crysfuse.config.sections import (
    FINETUNE_MODES,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    FusionConfig,
    GraphConfig,
    ModelConfig,
    MonitorConfig,
    TextConfig,
    TextCorruptionConfig,
    TrainConfig,
)
from crysfuse.io import write_json_atomic

__all__ = [
    "FINETUNE_MODES", "PRESETS", "TRAIN_FLAGS", "Config", "ConfigError", "DataConfig", "ExperimentConfig", "FusionConfig",
    "GraphConfig", "ModelConfig", "MonitorConfig", "Preset", "TextConfig", "TextCorruptionConfig", "TrainConfig",
]

TRAIN_FLAGS = {
    "data": "data.path", "target": "data.target", "limit": "data.limit", "split_file": "data.split_file",
    "text_file": "data.text_file", "cache_dir": "data.cache_dir", "fusion": "fusion.name",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "seed": "train.seed",
    "run_dir": "experiment.run_dir",
}
"""The flags of ``crysfuse train`` (argparse dest → dotted config key); a flag left unset keeps the config
file's (or the default) value. The CLI builds its parser from it and the configuration reference lists it."""


@dataclass(frozen=True)
class Preset:
    """A named model and training size (``crysfuse train --preset NAME``): typed settings for :meth:`Config.replace`."""

    description: str
    settings: dict[str, Any]


_SIZE_KEYS = ("model.num_alignn_layers", "model.num_gcn_layers", "model.dim_hidden", "fusion.num_heads",
              "fusion.dim_hidden", "train.epochs", "train.batch_size", "train.learning_rate", "train.patience")

PRESETS: dict[str, Preset] = {
    "alignn": Preset("ALIGNN's published size (4 ALIGNN + 4 edge-gated layers, hidden 256, 100 epochs): the "
                     "defaults; hours per epoch on a laptop CPU with real data", {}),
    "cpu-small": Preset("a quarter of the width for a laptop or 2-core CPU (2 + 2 layers, hidden 64, 30 epochs, "
                        "early stop after 8), as configs/cpu_small.yaml",
                        {"model.num_alignn_layers": 2, "model.num_gcn_layers": 2, "model.dim_hidden": 64,
                         "fusion.num_heads": 4, "fusion.dim_hidden": 128, "train.epochs": 30,
                         "train.batch_size": 32, "train.learning_rate": 0.002, "train.patience": 8}),
}
"""The named presets. Each sets every key of ``_SIZE_KEYS`` (a key a preset leaves out gets its default), so
a preset replaces the size of a config file it is applied to."""


@dataclass
class Config:
    """The root config of a crysfuse run."""

    data: DataConfig = field(default_factory=DataConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a (possibly partial) nested dict; unknown keys raise :class:`ConfigError`."""
        return _build(cls, data, prefix="")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Load a YAML (``.yaml``/``.yml``) or JSON config file with safe loaders."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write as indented JSON (atomically)."""
        write_json_atomic(Path(path), self.to_dict())

    def replace(self, changes: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Config:
        """Return a copy with dotted keys set to typed values, in order (``{"train.epochs": 5}``).

        The values are Python values, checked like those of a config file (an ``int`` where a ``float`` is
        expected is converted, anything else of the wrong type is a :class:`ConfigError`); nothing is parsed
        from strings. This is how the library and the CLI's flags change a config.
        """
        data = self.to_dict()
        for dotted, value in changes.items() if isinstance(changes, Mapping) else changes:
            keys = dotted.strip().split(".")
            node = data
            for key in keys[:-1]:
                if not isinstance(node.get(key), dict):
                    raise ConfigError(f"override '{dotted}': '{key}' is not a config section")
                node = node[key]
            if keys[-1] not in node:
                raise ConfigError(f"override '{dotted}': unknown key '{keys[-1]}'; known: {sorted(node)}")
            node[keys[-1]] = value
        return Config.from_dict(data)

    def with_preset(self, name: str) -> Config:
        """A copy with the model and training size of the preset ``name`` (see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset '{name}'; known: {', '.join(PRESETS)}")
        defaults = Config().to_dict()
        size = {key: _lookup(defaults, key) for key in _SIZE_KEYS}
        return self.replace({**size, **PRESETS[name].settings})

    def with_overrides(self, overrides: list[str]) -> Config:
        """Return a copy with ``section.key=value`` overrides applied (the ``--set`` syntax of the CLI); values
        are parsed as YAML scalars, then applied with :meth:`replace`."""
        changes = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form section.key=value")
            dotted, raw = item.split("=", 1)
            changes.append((dotted, yaml.safe_load(raw)))
        return self.replace(changes)


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        data = data[key]
    return data


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix or 'config'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in '{prefix or 'config'}'; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        where = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, where)
        else:
            kwargs[name] = _coerce(hint, value, where)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint, converting ints to floats and lists to tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"'{where}' must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        return [_coerce(args[0], v, where) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"'{where}' must be true/false, got {value!r}")
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"'{where}' must be a number, got {value!r}")
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"'{where}' must be {hint.__name__}, got {value!r}")
    return value
