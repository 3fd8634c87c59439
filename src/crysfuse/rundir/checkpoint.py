"""Save and load trained models without pickle: ``model.safetensors`` + ``config.json`` + ``meta.json``, and
``text_encoder.safetensors`` when the text encoder was fine-tuned (``text.finetune``).

A fine-tuned encoder's weights are stored apart from the rest of the model and only as far as they were
trained (``last_k``: those layers; ``all``: every weight; ``lora``: the adapters only); the frozen rest is read
again from the encoder's own folder (``text.encoder``), whose fingerprint must match the one the run was
trained with (``meta.json``'s ``encoder_id``).

Loading never executes code from the run directory: weights come through safetensors, the config and
metadata through the JSON parser.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from crysfuse import __version__
from crysfuse.config import Config
from crysfuse.io import write_bytes_atomic, write_json_atomic
from crysfuse.models.crysfuse import CrysFuseModel
from crysfuse.rundir.layout import CONFIG_FILE, META_FILE, TEXT_ENCODER_FILE, WEIGHTS_FILE

SCHEMA_VERSION = 1


class CheckpointError(ValueError):
    """A run directory cannot be loaded as a model."""


@dataclass
class LoadedModel:
    """A model ready for inference, with the config and metadata of its run."""

    model: CrysFuseModel
    config: Config
    meta: dict[str, Any]


def save_config(run_dir: Path, config: Config) -> None:
    """``config.json``: the fully resolved config (the run is reproducible from it alone)."""
    config.save(Path(run_dir) / CONFIG_FILE)


# Settings whose default changed after the key was introduced: a run's config.json without the key was
# written before it existed, so that run used the old value (issue 18 moved both defaults to the reference's).
DEFAULTS_BEFORE_THE_KEY: dict[tuple[str, str], Any] = {("model", "norm"): "batch", ("train", "loss"): "mse"}


def run_config_from_dict(data: dict[str, Any]) -> Config:
    """A run's saved config as a :class:`Config`; keys it predates get the value the run trained with
    (:data:`DEFAULTS_BEFORE_THE_KEY`), not today's default."""
    data = {section: dict(values) if isinstance(values, dict) else values for section, values in data.items()}
    for (section, key), value in DEFAULTS_BEFORE_THE_KEY.items():
        if isinstance(data.setdefault(section, {}), dict):
            data[section].setdefault(key, value)
    return Config.from_dict(data)


def saved_config(run_dir: Path) -> Config | None:
    """The config a run directory was started with (``None`` when there is none yet)."""
    path = Path(run_dir) / CONFIG_FILE
    return run_config_from_dict(read_json_file(path)) if path.exists() else None


def weights_path(run_dir: Path) -> Path:
    """``run_dir/model.safetensors``."""
    return Path(run_dir) / WEIGHTS_FILE


TEXT_ENCODER_PREFIX = "text_encoder."
_TEXT_ENCODER_FORMAT = "crysfuse-text-encoder-v1"


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """Write the model's state dict (parameters and persistent buffers) to a safetensors file, atomically.

    A fine-tuned text encoder (``model.text_encoder``) is left out of ``path``; its trained tensors go to
    ``text_encoder.safetensors`` next to it (written first, so a finished ``path`` always has its encoder)."""
    encoder = getattr(model, "text_encoder", None)
    if encoder is not None:
        metadata = {"format": _TEXT_ENCODER_FORMAT, "finetune": encoder.mode, "encoder_id": encoder.model_id}
        write_bytes_atomic(Path(path).parent / TEXT_ENCODER_FILE, save(encoder.saved_state(), metadata=metadata))
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
               if not name.startswith(TEXT_ENCODER_PREFIX)}
    write_bytes_atomic(path, save(tensors))


def write_meta(run_dir: Path, *, dim_text: int, encoder_id: str | None, extra: dict[str, Any] | None = None) -> None:
    """``meta.json``: schema and package versions plus what is needed to rebuild the model."""
    meta = {
        "schema_version": SCHEMA_VERSION,
        "crysfuse_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dim_text": dim_text,
        "encoder_id": encoder_id,
    }
    meta.update(extra or {})
    write_json_atomic(run_dir / META_FILE, meta)


def read_json_file(path: Path) -> dict[str, Any]:
    """Read a JSON object, turning any problem into :class:`CheckpointError`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def load_run(run_dir: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model of a finished run directory and load its weights (no unpickling).

    Raises:
        CheckpointError: Missing or unreadable files, an unknown schema version, or weights that do not fit
            the model described by ``config.json``.
    """
    run_dir = Path(run_dir)
    for name in (WEIGHTS_FILE, CONFIG_FILE, META_FILE):
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir} is not a finished crysfuse run: {name} is missing")
    meta = read_json_file(run_dir / META_FILE)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{run_dir}: unsupported schema version {meta.get('schema_version')!r}")
    config = run_config_from_dict(read_json_file(run_dir / CONFIG_FILE))
    model = CrysFuseModel(config, dim_text=int(meta["dim_text"]))
    try:
        state = load_file(run_dir / WEIGHTS_FILE)
    except Exception as err:
        raise CheckpointError(f"{run_dir / WEIGHTS_FILE} is not a valid safetensors file: {err}") from err
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(TEXT_ENCODER_PREFIX)]
    if missing or unexpected:
        raise CheckpointError(
            f"{run_dir}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    if model.text_encoder is not None:
        _load_text_encoder(run_dir, model, meta)
    model.to(device).eval()
    return LoadedModel(model=model, config=config, meta=meta)


def _load_text_encoder(run_dir: Path, model: CrysFuseModel, meta: dict[str, Any]) -> None:
    """Load ``text_encoder.safetensors`` into the model's (freshly loaded) fine-tuned encoder."""
    path = run_dir / TEXT_ENCODER_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} fine-tuned its text encoder, but {TEXT_ENCODER_FILE} is missing")
    encoder = model.text_encoder
    if meta.get("encoder_id") not in (None, encoder.model_id):
        raise CheckpointError(
            f"{run_dir} was trained on the text encoder {meta['encoder_id']}, but text.encoder "
            f"({model.config.text.encoder}) is now {encoder.model_id}: the fine-tuned weights only fit the original"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("format") != _TEXT_ENCODER_FORMAT:
                raise ValueError("not a crysfuse text encoder file")
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (safetensors handle)
        encoder.load_saved_state(state)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be loaded into the text encoder: {err}") from err
