"""Text-corruption augmentation: the gates only learn what bad text looks like if training shows some."""

from __future__ import annotations

import copy
import hashlib
import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from crysfuse.config import TextCorruptionConfig
from crysfuse.data.corruption import Corruption, corrupt_text
from crysfuse.data.dataset import CrystalData, with_text
from crysfuse.data.texts import TextSide

logger = logging.getLogger(__name__)


def draw_corruptions(record_id: str, settings: TextCorruptionConfig, seed: int) -> list[Corruption]:
    """``settings.variants`` corruption settings for one record, drawn reproducibly from its id."""
    key = hashlib.sha256(f"augment|{seed}|{record_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    return [
        Corruption(
            str(rng.choice(settings.strategies)), str(rng.choice(settings.modes)), float(rng.choice(settings.ratios))
        )
        for _ in range(settings.variants)
    ]


def corrupted_alternatives(
    ids: list[str],
    items: dict[str, CrystalData],
    texts: dict[str, str | None],
    text_side: TextSide,
    settings: TextCorruptionConfig,
    seed: int,
) -> list[list[CrystalData]]:
    """For each id, ``settings.variants`` copies of its item with corrupted text (encoded once, cached)."""
    tokenizer = text_side.encoder.tokenizer if "random_token" in settings.strategies else None
    mask_token = text_side.encoder.mask_token
    plans = [draw_corruptions(i, settings, seed) for i in ids]
    corrupted = [
        corrupt_text(texts[i], c, record_id=i, seed=seed, mask_token=mask_token, tokenizer=tokenizer)
        for i, plan in zip(ids, plans)
        for c in plan
    ]
    encoded = text_side.text_inputs(corrupted)
    per_record = settings.variants
    logger.info("text augmentation: %d corrupted texts for %d training records (p=%.2f)",
                len(corrupted), len(ids), settings.probability)
    return [
        [with_text(items[i], e) for e in encoded[n * per_record:(n + 1) * per_record]]
        for n, i in enumerate(ids)
    ]


class TextCorruptionDataset(Dataset):
    """Training items; with ``probability`` an item is replaced by one of its corrupted alternatives.

    The draw for item i in epoch e depends only on (seed, e, i), so a resumed run sees the same texts. Every
    item returned carries ``text_corrupted`` (``[1]`` bool), so a batch says which of its texts were corrupted.
    """

    def __init__(
        self, items: list[CrystalData], alternatives: list[list[CrystalData]], probability: float, seed: int
    ) -> None:
        self.items = items
        self.alternatives = alternatives
        self.probability = probability
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> CrystalData:
        options = self.alternatives[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        corrupted = bool(options) and rng.random() < self.probability
        item = copy.copy(options[int(rng.integers(len(options)))] if corrupted else self.items[index])
        item.text_corrupted = torch.tensor([corrupted])  # batched to [B]: the gate monitor's jump rule reads it
        return item
