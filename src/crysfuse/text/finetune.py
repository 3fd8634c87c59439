"""A Hugging Face text encoder that is trained with the model (``text.finetune`` other than ``none``).

:class:`TrainableTextEncoder` loads the configured encoder (resolved offline, as the frozen one) and decides
which of its weights train:

* ``last_k``: the last ``text.finetune_layers`` transformer layers; everything below stays frozen (and,
  because no input of those layers needs a gradient, autograd records nothing there);
* ``all``: every weight;
* ``lora``: low-rank adapters (``peft``) on the attention projections; the base weights stay frozen.

:meth:`TrainableTextEncoder.saved_state` is exactly the trained tensors (``last_k``: those layers; ``lora``: the
adapters only), which is what a run directory stores; the rest is re-read from the encoder's folder when the
run is loaded. Nothing is loaded at import time.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from crysfuse.config import FINETUNE_MODES, ConfigError, TextConfig
from crysfuse.text.encoder import EncoderSettings, EncoderUnavailableError, TextEncoder
from crysfuse.text.tokens import pad_token_ids

logger = logging.getLogger(__name__)

__all__ = ["TrainableTextEncoder", "check_finetune", "transformer_layers"]


def check_finetune(settings: TextConfig) -> None:
    """Raise :class:`ConfigError` for an unknown ``text.finetune`` or impossible settings."""
    if settings.finetune not in FINETUNE_MODES:
        raise ConfigError(f"text.finetune must be one of {', '.join(FINETUNE_MODES)}, got '{settings.finetune}'")
    if settings.finetune == "last_k" and settings.finetune_layers < 1:
        raise ConfigError(f"text.finetune_layers must be at least 1 for last_k, got {settings.finetune_layers}")
    if not 0.0 <= settings.finetune_warmup <= 1.0:
        raise ConfigError(f"text.finetune_warmup is a fraction of the steps, got {settings.finetune_warmup}")
    if settings.finetune_learning_rate <= 0:
        raise ConfigError("text.finetune_learning_rate must be positive")


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a Hugging Face model: the ``ModuleList`` of same-type blocks holding
    the most parameters (``encoder.layer`` of BERT/MiniLM, ``transformer.layer`` of DistilBERT, ...)."""
    best, best_size = None, 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = module, size
    if best is None:
        raise ConfigError(f"cannot find the transformer layers of {type(model).__name__} for text.finetune=last_k")
    return best


class TrainableTextEncoder(nn.Module):
    """The encoder as a module of the model.

    Attributes:
        mode: ``last_k``, ``all`` or ``lora``.
        model_id: the base encoder's id (label and fingerprint of its folder, as the embedding cache uses).
        dim: hidden size ``D``.
    """

    def __init__(self, settings: TextConfig) -> None:
        super().__init__()
        check_finetune(settings)
        if settings.finetune == "none":
            raise ConfigError("TrainableTextEncoder is for text.finetune other than none")
        self.mode = settings.finetune
        meta = TextEncoder(EncoderSettings(settings.encoder, settings.max_length, settings.batch_size), device="cpu")
        self.model_id, self.dim = meta.model_id, meta.dim
        self.model = _configure(_load_base(meta), settings)
        trained = sum(p.numel() for p in self.parameters() if p.requires_grad)
        logger.info("text encoder %s trained with the model (%s): %d of %d weights train", self.model_id,
                    self.mode, trained, sum(p.numel() for p in self.parameters()))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of tokenized texts.

        Args:
            ids: ``[sum L_i]`` token ids of the B texts one after the other.
            lengths: ``[B]`` tokens per text (0: no text; such a text never reaches the model).

        Returns:
            ``states`` ``[B, T, D]`` float32 last hidden states (zeros on padding) and ``mask`` ``[B, T]`` bool,
            ``T = max L_i``.
        """
        input_ids, attention = pad_token_ids(ids, lengths)
        batch, width = input_ids.shape
        states = torch.zeros(batch, width, self.dim, device=ids.device)
        present = (lengths > 0).nonzero().flatten().to(ids.device)
        if width and present.numel():
            hidden = self.model(input_ids=input_ids[present], attention_mask=attention[present]).last_hidden_state
            hidden = hidden.float() * attention[present].unsqueeze(-1).to(torch.float32)
            states = states.index_copy(0, present, hidden)
        return states, attention.bool()

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors (``requires_grad`` parameters) by name, on the CPU: what a run directory stores."""
        return {name: p.detach().cpu().contiguous() for name, p in self.named_parameters() if p.requires_grad}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`saved_state` output; the names must be exactly the trained parameters."""
        expected = {name for name, p in self.named_parameters() if p.requires_grad}
        if set(state) != expected:
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"saved text encoder does not fit text.finetune={self.mode} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        parameters = dict(self.named_parameters())
        with torch.no_grad():
            for name, tensor in state.items():
                parameters[name].copy_(tensor)


def _load_base(meta: TextEncoder) -> Any:
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(meta.path), local_files_only=True)
    except Exception as exc:
        raise EncoderUnavailableError(f"cannot load the model weights from {meta.path}: {exc}") from exc
    return model.float().train()  # from_pretrained returns it in eval mode; it follows the model's mode instead


def _configure(model: Any, settings: TextConfig) -> Any:
    """Freeze and unfreeze (``last_k``, ``all``) or wrap with LoRA adapters (``lora``)."""
    if settings.finetune == "all":
        model.requires_grad_(True)
        return model
    model.requires_grad_(False)
    if settings.finetune == "last_k":
        layers = transformer_layers(model)
        if settings.finetune_layers > len(layers):
            raise ConfigError(f"text.finetune_layers={settings.finetune_layers}, but the encoder has "
                              f"{len(layers)} layers")
        for layer in layers[len(layers) - settings.finetune_layers:]:
            layer.requires_grad_(True)
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ConfigError("text.finetune=lora needs the package peft: pip install 'crysfuse[finetune]'") from exc
    config = LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=list(settings.lora_targets) or None, bias="none")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # peft: no default targets for this model type, or targets not found
        raise ConfigError(f"LoRA adapters cannot be placed ({exc}); set text.lora_targets") from exc
