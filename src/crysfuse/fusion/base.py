"""The contract every fusion variant follows.

A fusion module receives both modalities in one :class:`FusionInputs` and returns a :class:`FusionOutput`:
the fused vector ``[B, dim_out]`` plus ``diagnostics``, a dict of per-sample gate tensors ``[B]`` (not
detached) and their summaries under stable keys (``<gate>_mean``, ``_std``, ``_min``, ``_max``, detached
scalars). The trainer, CLI, monitor and diagnosis read only these keys; they never branch on the variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from crysfuse.config import FusionConfig
from crysfuse.registry import Registry

FUSION: Registry[type[FusionModule]] = Registry("fusion variant")


@dataclass
class FusionInputs:
    """Both modalities for a batch of B crystals.

    Attributes:
        graph: Projected graph vector ``[B, P]``.
        nodes: Node (atom) features from the graph encoder ``[N, H]``.
        node_batch: Crystal index of every atom ``[N]``.
        tokens: Projected text token embeddings ``[B, L, P]`` (L may be 0).
        token_mask: ``[B, L]`` bool, True for real tokens; a row of all False is a crystal without text.
        text: Projected pooled text vector ``[B, P]``.
        text_norm: L2 norm of the encoder's pooled text before projection ``[B]`` (0 without text).
        step: Global training step (for schedules such as gate warm-up); -1 outside training.
        return_attention: Return the attention weights (and ``attention_entropy``) for this call, as
            ``fusion.return_attention`` does for every call (``crysfuse explain`` asks per call).
    """

    graph: torch.Tensor
    nodes: torch.Tensor
    node_batch: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor
    text: torch.Tensor
    text_norm: torch.Tensor
    step: int = -1
    return_attention: bool = False


@dataclass
class FusionOutput:
    """Fused vector ``[B, dim_out]``, diagnostics (see module docstring) and, on request, attention weights
    (``[B, Q, L]`` per attention, by name)."""

    fused: torch.Tensor
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)


class FusionModule(nn.Module):
    """Base class. A variant declares what it is as class attributes, sets ``dim_out`` and implements
    ``forward``; the registry entry is all the rest of crysfuse needs (``crysfuse models``, the configuration
    reference, the variant table in ``docs/fusion.md`` and the tests read these declarations).

    Attributes:
        uses_text: Whether the variant reads the text at all (``graph_only`` does not).
        uses_graph: Whether the variant reads the graph at all (``text_only`` does not: the model then builds no
            graph encoder, and ``graph``/``nodes`` of :class:`FusionInputs` are zeros).
        description: One line for ``crysfuse models``.
        equation: The variant's equations, as written in the docs' variant table.
        gates: The per-sample gate diagnostics it always returns (keys of ``[B]`` tensors in ``diagnostics``).
        scalars: The extra 0-dim diagnostics it returns (besides the gates' ``_mean``/``_std``/... summaries).
        on_request: Per-sample diagnostics returned only when ``fusion.return_attention`` is set.
        attention_maps: The attention weights returned on request (``FusionOutput.attention``), by name, with
            what their queries and keys are: ``"atoms"`` (``[Nmax]`` padded per crystal), ``"tokens"``
            (``[L]`` text tokens), ``"graph"`` (the pooled graph vector, one query) or ``"text"`` (the pooled
            text vector, one query). Each map is ``[B, Q, K]`` with rows summing to 1 over the valid keys.
        hyperparameters: The :class:`~crysfuse.config.FusionConfig` fields it reads (``name`` aside).
    """

    uses_text: bool = True
    uses_graph: bool = True
    description: str = ""
    equation: str = ""
    gates: tuple[str, ...] = ()
    scalars: tuple[str, ...] = ()
    on_request: tuple[str, ...] = ()
    attention_maps: ClassVar[dict[str, tuple[str, str]]] = {}
    hyperparameters: tuple[str, ...] = ()

    def __init__(self, *, dim: int, dim_nodes: int, config: FusionConfig) -> None:
        super().__init__()
        self.dim = dim
        self.dim_nodes = dim_nodes
        self.dim_out = dim

    def forward(self, inputs: FusionInputs) -> FusionOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def wants_attention(self, inputs: FusionInputs) -> bool:
        """Whether this call returns its attention maps (``fusion.return_attention`` or the call's flag)."""
        return bool(getattr(self, "return_attention", False) or inputs.return_attention)


def gate_diagnostics(name: str, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample gate ``values`` ``[B]`` under ``name`` plus ``name_{mean,std,min,max}`` (detached)."""
    detached = values.detach()
    std = detached.std(unbiased=False) if detached.numel() > 1 else detached.new_zeros(())
    return {
        name: values,
        f"{name}_mean": detached.mean(),
        f"{name}_std": std,
        f"{name}_min": detached.min(),
        f"{name}_max": detached.max(),
    }


def masked_attention(
    attention: nn.MultiheadAttention, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head attention of ``query`` over many ``keys``, honouring ``key_mask``.

    Rows without any valid key (no text, or L = 0) get a zero context instead of NaN.

    Args:
        attention: ``nn.MultiheadAttention`` built with ``batch_first=True``.
        query: ``[B, Q, D]``.
        keys: ``[B, L, D]`` (used as keys and values).
        key_mask: ``[B, L]`` bool, True for valid keys.

    Returns:
        Context ``[B, Q, D]`` and head-averaged weights ``[B, Q, L]``.
    """
    batch, num_queries, dim = query.shape
    if keys.size(1) == 0:
        return query.new_zeros(batch, num_queries, dim), query.new_zeros(batch, num_queries, 0)
    has_key = key_mask.any(dim=1)
    safe_mask = key_mask.clone()
    safe_mask[~has_key, 0] = True
    context, weights = attention(query, keys, keys, key_padding_mask=~safe_mask, need_weights=True)
    keep = has_key.to(context.dtype).view(batch, 1, 1)
    return context * keep, weights * keep
