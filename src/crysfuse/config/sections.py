"""The sections of the config tree (one dataclass per section) and :class:`ConfigError`.

Split from :mod:`crysfuse.config` (which re-exports everything here) to keep each module small. Every field
carries a docstring right after it; ``crysfuse.config_reference`` reads them into docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A config file or override does not fit the config schema."""


def check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"'{where}' must be one of {list(choices)}, got {value!r}")


FINETUNE_MODES = ("none", "last_k", "all", "lora")
"""The values of ``text.finetune``."""


NORMS = ("batch", "layer")
READOUTS = ("mean", "sum")
HEADS = ("projection", "linear")
LOSSES = ("mse", "l1", "huber")
SCHEDULES = ("onecycle", "cosine", "constant")
SELECTIONS = ("best_val", "last")
TARGET_TRANSFORMS = ("none", "log1p", "asinh")
NEIGHBOR_RULES = ("jarvis", "radius_topk")


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
    standardize_target: bool = True
    """Train on ``(y - mean) / std`` of the training targets (``false``: on raw targets, as the reference
    ALIGNN does). Predictions are in target units either way."""
    target_transform: str = "none"
    """``none``, ``log1p`` (``log(1 + y)``, targets must be > -1, e.g. band gaps) or ``asinh``: the model
    learns the transformed target; predictions and every reported metric are in original units."""
    shuffle_texts: bool = False
    """Control experiment: every crystal gets another crystal's description, by fixed derangements seeded by
    ``split_seed``: the texts of ``text_file`` among all of its ids (the same assignment in training and in
    every later evaluation), the other texts (the records' own, described ones) among the records loaded. Text
    that then still helps is capacity, not information (docs/results.md, controls)."""

    def __post_init__(self) -> None:
        check_choice("data.target_transform", self.target_transform, TARGET_TRANSFORMS)


@dataclass
class GraphConfig:
    """Periodic neighbour graph (ALIGNN semantics)."""

    cutoff: float = 8.0
    """Initial neighbour cutoff in Å; grown (as in ALIGNN) when an atom has fewer than ``max_neighbors``."""
    max_neighbors: int = 12
    """Neighbours kept per atom: all within the ``max_neighbors``-th nearest distance (ties kept)."""
    max_atoms: int = 1000
    """Larger cells are rejected with a record (no out-of-memory crash)."""
    neighbor_rule: str = "jarvis"
    """``jarvis``: every neighbour up to the ``max_neighbors``-th distance (ties kept, cutoff grown), edges made
    undirected (ALIGNN's DGL graphs); ``radius_topk``: the ``max_neighbors`` nearest within ``cutoff`` per source
    atom, directed, no growth (the reference ALIGNN's ``pure_torch`` builder; see docs/parity.md)."""

    def __post_init__(self) -> None:
        check_choice("graph.neighbor_rule", self.neighbor_rule, NEIGHBOR_RULES)


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
    norm: str = "layer"
    """Normalisation in the encoder's embedding MLPs and edge-gated convolutions: ``layer`` (LayerNorm, as the
    reference's ``ALIGNNAtomWisePure``) or ``batch`` (BatchNorm, the published ALIGNN). ``layer`` by default:
    with BatchNorm crysfuse trailed the reference by 8 % on the formation-energy parity slice and LayerNorm
    closed that gap (docs/parity.md)."""
    readout: str = "mean"
    """Pooling of atom features into the graph vector: ``mean`` or ``sum``."""
    head: str = "projection"
    """``projection``: graph vector → projection head → fusion → MLP head; ``linear``: one linear layer on the
    pooled graph vector (the reference's ``fc``; ``graph_only`` without middle fusion only)."""

    def __post_init__(self) -> None:
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.readout", self.readout, READOUTS)
        check_choice("model.head", self.head, HEADS)


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
    """Peak learning rate of the schedule (AdamW)."""
    weight_decay: float = 1e-5
    """AdamW weight decay."""
    weight_decay_norms_biases: bool = True
    """Apply the weight decay to normalisation weights and biases too (``false``: only to the other weights, as
    the reference's ``group_decay``)."""
    loss: str = "l1"
    """``l1``, ``mse`` or ``huber`` (on the standardised, transformed target). ``l1`` by default: it trains
    for the metric the field reports (MAE), as the reference ALIGNN does, and beat ``mse`` in the parity
    ablation (docs/parity.md)."""
    huber_delta: float = 1.0
    """``huber`` loss: where it turns from quadratic to linear (standardised units)."""
    gradient_clip: float = 1.0
    """Gradient-norm clipping (0 disables it)."""
    schedule: str = "onecycle"
    """Learning-rate schedule, stepped per batch: ``onecycle`` (PyTorch's OneCycleLR), ``cosine`` (linear
    warm-up to the peak over ``pct_start`` of the steps, starting at peak / warm-up steps, then cosine decay
    to 0) or ``constant``."""
    pct_start: float = 0.3
    """Fraction of the steps spent warming up (``onecycle``, ``cosine``)."""
    drop_last: bool = False
    """Drop the last incomplete training batch of every epoch (the reference ALIGNN does)."""
    select: str = "best_val"
    """Weights the run keeps and tests: ``best_val`` (lowest validation MAE) or ``last`` (the last epoch's, as
    the reference ALIGNN reports)."""
    ema_decay: float = 0.0
    """Exponential moving average of the weights (0 disables it): validation, model selection, the saved
    weights and the test use the averaged weights. The decay warms up as ``min(ema_decay, (1+t)/(10+t))``."""
    init_from: str | None = None
    """Two-stage training: start the graph side (``encoder.*`` and ``graph_projection.*``) from the weights of
    this finished run directory (e.g. a ``graph_only`` run with the same ``model`` section); everything else
    starts fresh. In a comparison matrix ``{out}`` is replaced by the matrix's output folder and ``{seed}`` by
    the cell's seed."""
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
    """Lightning precision, e.g. ``32-true`` or ``bf16-mixed``. ``bf16-mixed`` is the fast setting on GPUs and on
    CPUs with AVX-512 BF16 or AMX; other CPUs emulate bfloat16, several times slower than ``32-true`` (a
    warning says so; docs/benchmarks.md)."""
    progress_bar: bool = True
    """Show Lightning's progress bar."""
    deterministic: bool = True
    """Ask PyTorch for deterministic algorithms (identical results on CPU; see docs/reliability.md)."""
    text_corruption: TextCorruptionConfig = field(default_factory=TextCorruptionConfig)

    def __post_init__(self) -> None:
        check_choice("train.loss", self.loss, LOSSES)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.select", self.select, SELECTIONS)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"'train.ema_decay' must be in [0, 1), got {self.ema_decay!r}")


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
    """``effective`` gates: a mean below this means the text is suppressed (a switch if the gate has two modes)."""
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
    """Jump fires when a gate's mean moves by more than this between two consecutive checks (under text augmentation:
    the mean over the samples with clean text)."""
    jump_augmented: float = 0.35
    """Jump threshold under text augmentation when the batches do not say which samples have clean text."""
    classes: str = "auto"
    """Gate means per target class: ``auto`` for band-gap targets only, ``on`` for any target, ``off``."""
    class_threshold: float = 0.01
    """Class rule: target ≤ this is the first class (a metal for band gaps), above it the second."""
    class_names: list[str] = field(default_factory=lambda: ["metal", "non-metal"])
    """Names of the two classes (target ≤ ``class_threshold``, above)."""


@dataclass
class ExperimentConfig:
    """Bookkeeping for the run."""

    run_dir: str = "runs/default"
    """Where the run directory is written."""
    name: str = ""
    """Label of the run in comparisons (default: the fusion key, ``+middle`` with middle fusion)."""
