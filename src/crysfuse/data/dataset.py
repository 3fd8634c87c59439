"""PyTorch Geometric data objects for a crystal with its line graph and cached text embeddings, and the loader
(with its epoch-seeded sampler) that batches them."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from crysfuse.data.graphs import CrystalGraph
from crysfuse.text.encoder import EncodedText
from crysfuse.text.tokens import TokenIds

FOLLOW_BATCH = ["text_tokens", "text_ids"]


class CrystalData(Data):
    """One crystal.

    Attributes:
        atomic_numbers: ``[N]`` int64.
        edge_index: ``[2, E]``; edge_vectors ``[E, 3]``.
        line_edge_index: ``[2, T]`` indices into the edges (incremented by E when batched).
        bond_cosines: ``[T]``.
        text_tokens: ``[L, D_t]`` float16 token embeddings (L = 0 without text).
        text_pooled: ``[1, D_t]`` float16.
        text_ids: ``[L]`` int32 token ids, only when the text encoder is trained with the model
            (``text.finetune``); then ``text_tokens`` is ``[0, 1]`` and the model encodes the ids itself.
        y: ``[1]`` target (nan when unknown); sample_index ``[1]`` position in the dataset.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "line_edge_index":
            return self.edge_index.size(1)
        return super().__inc__(key, value, *args, **kwargs)


def make_crystal_data(
    graph: CrystalGraph,
    *,
    tokens: torch.Tensor,
    pooled: torch.Tensor,
    target: float,
    index: int,
) -> CrystalData:
    """Bundle a graph, text embeddings (``tokens [L, D_t]``, ``pooled [D_t]``) and the target."""
    return CrystalData(
        atomic_numbers=graph.atomic_numbers,
        edge_index=graph.edge_index,
        edge_vectors=graph.edge_vectors,
        line_edge_index=graph.line_edge_index,
        bond_cosines=graph.bond_cosines,
        text_tokens=tokens,
        text_pooled=pooled.reshape(1, -1),
        y=torch.tensor([target], dtype=torch.float32),
        sample_index=torch.tensor([index], dtype=torch.long),
        num_nodes=graph.num_nodes,
    )


def with_text(item: CrystalData, encoded: EncodedText | TokenIds) -> CrystalData:
    """A shallow copy of ``item`` (graph tensors shared) carrying another text: frozen embeddings
    (:class:`EncodedText`), or token ids (:class:`TokenIds`) for a model that runs its encoder itself."""
    other = copy.copy(item)
    if isinstance(encoded, TokenIds):
        other.text_ids = encoded.ids
        other.text_tokens = torch.zeros(0, 1, dtype=torch.float16)
        other.text_pooled = torch.zeros(1, 1, dtype=torch.float16)
        return other
    if "text_ids" in other:  # embeddings replace the text: stale ids must not be read instead
        del other.text_ids
    other.text_tokens = encoded.tokens
    other.text_pooled = encoded.pooled.reshape(1, -1)
    return other


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch, seeded by ``(seed, epoch)``; Lightning calls :meth:`set_epoch`.

    The shuffle order of epoch k depends only on (seed, k), so a resumed run sees the same batches as an
    uninterrupted one.
    """

    def __init__(self, num_items: int, seed: int, dataset: Any = None) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        """Also tells the dataset (e.g. text augmentation draws per epoch)."""
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_items


def make_loader(
    items: Sequence[CrystalData] | Dataset, *, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A PyG loader that also batches the variable-length text tokens (``text_tokens_batch``); ``drop_last``
    drops the last incomplete batch.

    Shuffling uses :class:`EpochSeededSampler`: the order of epoch k depends only on (seed, k), so interrupted
    and resumed runs see the same batches.
    """
    dataset = items if isinstance(items, Dataset) else list(items)
    sampler = EpochSeededSampler(len(dataset), seed, dataset) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        follow_batch=FOLLOW_BATCH,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )
