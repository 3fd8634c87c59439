"""Small builders shared by model and fusion tests."""

from __future__ import annotations

import torch
from pymatgen.core import Lattice, Structure

from crysfuse.config import Config
from crysfuse.data.dataset import make_crystal_data, make_loader
from crysfuse.data.graphs import build_crystal_graph
from tests.conftest import TINY_MODEL

DIM_TEXT = 12


def tiny_config(fusion: str = "simplified", extra: list[str] | None = None) -> Config:
    return Config().with_overrides(TINY_MODEL + [f"fusion.name={fusion}"] + (extra or []))


def crystal_batch(num_tokens: list[int], seed: int = 0):
    """A batch of small real crystals with random token embeddings (``num_tokens[i]`` tokens each)."""
    generator = torch.Generator().manual_seed(seed)
    structures = [
        Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.hexagonal(2.95, 4.68), ["Ti", "Ti"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]),
    ]
    items = []
    for index, length in enumerate(num_tokens):
        graph = build_crystal_graph(structures[index % len(structures)])
        tokens = torch.randn(length, DIM_TEXT, generator=generator).half()
        pooled = tokens.float().mean(0).half() if length else torch.zeros(DIM_TEXT, dtype=torch.float16)
        items.append(make_crystal_data(graph, tokens=tokens, pooled=pooled, target=float(index), index=index))
    return next(iter(make_loader(items, batch_size=len(items), shuffle=False)))
