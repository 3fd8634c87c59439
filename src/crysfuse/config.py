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

from crysfuse.io import write_json_atomic

TRAIN_FLAGS = {
    "data": "data.path", "target": "data.target", "limit": "data.limit", "split_file": "data.split_file",
    "text_file": "data.text_file", "cache_dir": "data.cache_dir", "fusion": "fusion.name",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "seed": "train.seed",
    "run_dir": "experiment.run_dir",
}
"""The flags of ``crysfuse train`` (argparse dest → dotted config key); a flag left unset keeps the config
file's (or the default) value. The CLI builds its parser from it and the configuration reference lists it."""


class ConfigError(ValueError):
    """A config file or override does not fit the config schema."""


FINETUNE_MODES = ("none", "last_k", "all", "lora")
"""The values of ``text.finetune``."""


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
class DataConfig:
    """Where the records come from and how they are split."""

    path: str = ""
    """Data source: JARVIS-style JSON/JSON.gz, a CGCNN folder (``id_prop.csv`` + structure files), a CrysMMNet
    folder (``description.csv`` + ``cif/``), a table (CSV/JSONL/Parquet with a structure column) or
    ``jarvis:<dataset>`` (see docs/data.md)."""
    target: str = ""
    """Target key (JSON field or the ``id_prop.csv`` value column name, ``target`` for CGCNN folders)."""
    limit: int | None = None
    """Deterministic subset: the first ``limit`` rows of the source (rejected rows among them are reported)."""
    split_file: str | None = None
    """JSON ``{"train": [ids], "val": [...], "test": [...]}``; ids missing from the data are reported."""
    split_seed: int = 0
    """Seed of the train/val/test split when no ``split_file`` is given (independent of ``train.seed``)."""
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train/val/test fractions of the seeded split."""
    train_subset: int | None = None
    """Train on a fixed, seeded subset of this many training ids (seeded by ``split_seed``, the same for every
    ``train.seed``). With a ``split_file``, only the records the split uses are read."""
    val_subset: int | None = None
    """Select models on a fixed, seeded subset of this many validation ids (the test split always stays whole)."""
    text_file: str | None = None
    """Descriptions joined by id: JSONL ``{"id", "text"}`` or CSV ``id,text`` (optionally gzipped)."""
    cache_dir: str | None = None
    """On-disk cache of graphs, descriptions and embeddings; default ``$CRYSFUSE_CACHE``, else
    ``~/.cache/crysfuse``."""


@dataclass
class GraphConfig:
    """Periodic neighbour graph (ALIGNN semantics)."""

    cutoff: float = 8.0
    """Initial neighbour cutoff in Å; grown (as in ALIGNN) when an atom has fewer than ``max_neighbors``."""
    max_neighbors: int = 12
    """Neighbours kept per atom: all within the ``max_neighbors``-th nearest distance (ties kept)."""
    max_atoms: int = 1000
    """Larger cells are rejected with a record (no out-of-memory crash)."""


@dataclass
class TextConfig:
    """Descriptions, their encoder, and whether the encoder is trained with the model."""

    describer: str = "jarvis"
    """Describes records that have no text (no text field, not in ``data.text_file``); ``""`` disables it."""
    encoder: str = "minilm"
    """Hugging Face model: ``minilm`` (offline default), a hub name, or a local folder (e.g. MatSciBERT)."""
    max_length: int = 512
    """Tokens per text; longer texts are truncated and counted (``text_truncated`` in ``summary.json``)."""
    batch_size: int = 32
    """Texts per encoder batch when embeddings are computed (once; they are cached)."""
    finetune: str = "none"
    """Train the encoder with the model: ``none`` (frozen; embeddings computed once and cached), ``last_k`` (its
    last ``finetune_layers`` transformer layers), ``all``, or ``lora`` (low-rank adapters, needs ``peft``).
    Trained encoders run inside every training step on cached token ids (docs/text.md)."""
    finetune_layers: int = 2
    """``last_k``: how many of the encoder's last transformer layers are trained (the rest stay frozen)."""
    finetune_learning_rate: float = 5e-5
    """Peak learning rate of the encoder's own parameter group (the rest of the model uses ``train.learning_rate``)."""
    finetune_warmup: float = 0.1
    """Fraction of the training steps over which the encoder's learning rate rises linearly from 0 to its peak;
    it then falls linearly to 0 at the last step."""
    lora_rank: int = 8
    """``lora``: rank r of the adapters."""
    lora_alpha: float = 16.0
    """``lora``: scaling α of the adapters (their update is scaled by α / r)."""
    lora_dropout: float = 0.1
    """``lora``: dropout on the adapters' input."""
    lora_targets: list[str] = field(default_factory=list)
    """``lora``: names of the linear layers that get adapters (e.g. ``[query, value]``); empty: ``peft``'s default
    for the model type (BERT-like models: ``query`` and ``value``)."""


@dataclass
class ModelConfig:
    """ALIGNN graph encoder and prediction head (defaults follow ALIGNN's published configuration)."""

    num_alignn_layers: int = 4
    """ALIGNN layers (edge-gated convolution on the crystal graph, then on the line graph)."""
    num_gcn_layers: int = 4
    """Edge-gated convolutions on the crystal graph after the ALIGNN layers."""
    dim_hidden: int = 256
    """Width of atom, bond and angle features in the graph encoder."""
    dim_embedding: int = 64
    """Width of the intermediate bond/angle embedding (RBF → dim_embedding → dim_hidden)."""
    num_distance_bins: int = 80
    """Gaussian RBF bins for bond lengths over 0–8 Å."""
    num_angle_bins: int = 40
    """Gaussian RBF bins for bond-angle cosines over [-1, 1]."""
    dim_projection: int = 64
    """Size of the graph vector and the projected text fed to fusion."""
    dim_head: int = 64
    """Hidden width of the prediction head (fused vector → dim_head → 1)."""


@dataclass
class FusionConfig:
    """Which fusion variant, and its sizes."""

    name: str = "simplified"
    """Fusion variant (registry key; see ``crysfuse models`` and docs/fusion.md)."""
    num_heads: int = 4
    """Attention heads of the cross-attention blocks (must divide ``model.dim_projection``)."""
    dim_hidden: int = 256
    """Hidden width of the gate MLPs."""
    dropout: float = 0.1
    """Dropout in attention and gate MLPs."""
    quality_threshold: float = 3.0
    """Initial text-norm threshold of the quality gates (fixed in ``gated``, learnable in ``quality``)."""
    warmup_steps: int = 500
    """``warmup``: training steps over which the text contribution ramps from 0 to 1."""
    middle_layers: list[int] = field(default_factory=list)
    """Node-level text injection after these ALIGNN layers (0-based); combinable with any variant."""
    middle_dim_hidden: int = 128
    """Hidden width of the middle-fusion text transform."""
    return_attention: bool = False
    """Attention variants also return attention weights and their normalised entropy."""


@dataclass
class TextCorruptionConfig:
    """Training augmentation: with ``probability`` a training crystal is shown a corrupted text instead.

    ``variants`` corrupted versions per training record are drawn once (strategy, mode and ratio uniformly
    from the lists, seeded by record id), encoded once and cached; each epoch picks among them.
    """

    probability: float = 0.0
    """Chance that a training crystal is shown a corrupted text in an epoch (0 switches augmentation off)."""
    strategies: list[str] = field(default_factory=lambda: ["random_word", "sentence"])
    """Corruption strategies to draw from (random_token, random_word, sentence, keep_keywords)."""
    modes: list[str] = field(default_factory=lambda: ["mask", "delete"])
    """Corruption modes to draw from (mask, delete)."""
    ratios: list[float] = field(default_factory=lambda: [0.5, 1.0])
    """Corruption ratios to draw from (1 with delete = no text)."""
    variants: int = 2
    """Corrupted versions prepared per training record."""


@dataclass
class TrainConfig:
    """Optimisation, model selection (validation only) and hardware."""

    epochs: int = 100
    """Maximum epochs (early stopping may end sooner)."""
    batch_size: int = 32
    """Crystals per batch (per process under DDP)."""
    learning_rate: float = 1e-3
    """Peak learning rate of the one-cycle schedule (AdamW)."""
    weight_decay: float = 1e-5
    """AdamW weight decay."""
    loss: str = "mse"
    """``mse`` or ``l1``."""
    gradient_clip: float = 1.0
    """Gradient-norm clipping (0 disables it)."""
    pct_start: float = 0.3
    """Fraction of the one-cycle schedule spent warming up."""
    patience: int | None = 20
    """Early stopping on validation MAE; ``None`` disables it."""
    seed: int = 0
    """Seed of weights, shuffling, dropout and augmentation."""
    num_workers: int = 0
    """DataLoader worker processes (0: load in the training process; items are small and cached)."""
    accelerator: str = "auto"
    """Lightning accelerator: ``auto``, ``cpu``, ``gpu``, ..."""
    devices: int | str = "auto"
    """Devices per node: a count, "auto", or a list spec such as "0,1"."""
    strategy: str = "auto"
    """Lightning strategy: ``auto``, ``ddp`` (multi-process; see docs/distributed.md), ..."""
    num_nodes: int = 1
    """Machines for multi-node DDP."""
    precision: str = "32-true"
    """Lightning precision, e.g. ``32-true`` or ``bf16-mixed``."""
    progress_bar: bool = True
    """Show Lightning's progress bar."""
    deterministic: bool = True
    """Ask PyTorch for deterministic algorithms (identical results on CPU; see docs/reliability.md)."""
    text_corruption: TextCorruptionConfig = field(default_factory=TextCorruptionConfig)


@dataclass
class MonitorConfig:
    """Gate monitoring during training (``crysfuse.training.monitor.GateMonitor``) and the thresholds of its anomaly
    rules; ``crysfuse diagnose`` reads the same thresholds from the run's config."""

    enabled: bool = True
    """Attach the gate monitor to ``crysfuse train`` (TensorBoard tags, ``gate_statistics.json``, plots)."""
    log_interval: int = 10
    """Log every gate's batch mean/std/min/max to TensorBoard every this many training steps."""
    check_interval: int = 50
    """Run the anomaly rules every this many training steps (and at the end of every epoch)."""
    effective_low: float = 0.3
    """``effective`` gates: a mean below this means the text is suppressed."""
    quality_low: float = 0.5
    """``quality`` gates: a mean below this means the text is judged useless."""
    gate_low: float = 0.3
    """``gate`` gates (``gate``, ``middle<k>_gate``): a mean below this means the text is hardly used."""
    gate_high: float = 0.9
    """``gate`` gates: a mean above this means over-reliance on the text."""
    saturation_low: float = 0.05
    """A sample's gate below this counts as saturated (closed)."""
    saturation_high: float = 0.95
    """A sample's gate above this counts as saturated (open)."""
    saturation_fraction: float = 0.95
    """Saturation fires when more than this fraction of samples is saturated."""
    collapse_std: float = 1e-3
    """Collapse fires when the std of a gate across samples is below this (every crystal gets the same value)."""
    jump: float = 0.2
    """Jump fires when a gate's mean moves by more than this between two consecutive checks."""


@dataclass
class ExperimentConfig:
    """Bookkeeping for the run."""

    run_dir: str = "runs/default"
    """Where the run directory is written."""
    name: str = ""
    """Label of the run in comparisons (default: the fusion key, ``+middle`` with middle fusion)."""


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
