"""Crystal graphs with ALIGNN semantics (atom graph + line graph of bond pairs).

Reproduces ``jarvis.core.graphs.nearest_neighbor_edges(use_canonize=True)`` followed by
``build_undirected_edgedata`` and DGL's ``g.line_graph(shared=True)`` + ``compute_bond_cosines``, vectorised
with the ``vesin`` neighbour list. See ``docs/graphs.md`` for the semantics and the ALIGNN quirks kept on
purpose (notably: each directed periodic self-image edge appears twice).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from crysfuse.chemistry import check_elements
from crysfuse.data.graphs_topk import radius_topk_edges

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["CrystalGraph", "GraphBuildError", "GraphSettings", "build_crystal_graph"]

logger = logging.getLogger(__name__)

MIN_INTERATOMIC_DISTANCE = 0.5
"""Å. Pairs closer than this (periodic images included) are treated as overlapping atoms. The shortest pair
in mp36k is 0.746 Å (H2); jarvis itself silently drops partners closer than 0.15 Å."""
MIN_CELL_VOLUME = 1e-3
"""Å^3. Smaller ``|det(lattice)|`` is a singular cell."""
MIN_NORMALISED_VOLUME = 1e-4
"""``|det| / (a b c)``: below this the lattice vectors are (nearly) coplanar."""
TIE_TOLERANCE = 1e-12
"""Å. A neighbour is kept when ``d <= d_k + TIE_TOLERANCE`` (jarvis: ``d <= d_k`` exactly), so neighbours that
are symmetry-equivalent up to float rounding are never split. See docs/graphs.md for the measurement."""
MAX_CUTOFF_EXTENSIONS = 30
MAX_PAIRS_ESTIMATE = 20_000_000
"""Refuse a neighbour search expected to return more pairs than this (guards against OOM)."""

_KEYS = ("atomic_numbers", "edge_index", "edge_vectors", "line_edge_index", "bond_cosines")


class GraphBuildError(ValueError):
    """The structure cannot be turned into a graph (degenerate cell, overlapping atoms, too large, ...)."""


@dataclass(frozen=True)
class GraphSettings:
    """Neighbour selection settings (ALIGNN defaults).

    Attributes:
        cutoff: initial neighbour cutoff in Å; grown as jarvis does until every atom has ``max_neighbors``
            neighbours inside it. The resulting graph does not depend on it (only the cost does).
        max_neighbors: k; every neighbour up to the k-th nearest distance (ties kept) becomes an edge.
        max_atoms: cells with more atoms raise :class:`GraphBuildError`.
        round_lattice_decimals: jarvis quirk. ``jarvis.core.lattice.Lattice`` rounds the lattice matrix to 5
            decimals (Å); jarvis then uses the rounded lattice for Cartesian positions and bond vectors but the
            exact lattice for periodic image offsets. The default 5 reproduces ALIGNN graphs edge for edge;
            ``None`` uses the exact lattice everywhere (rotation-invariant tie shells, see docs/graphs.md).
        neighbor_rule: ``jarvis`` (the above) or ``radius_topk`` (the reference's ``pure_torch`` builder:
            the ``max_neighbors`` nearest within ``cutoff`` per source atom, directed; :mod:`.graphs_topk`).
    """

    cutoff: float = 8.0
    max_neighbors: int = 12
    max_atoms: int = 1000
    round_lattice_decimals: int | None = 5
    neighbor_rule: str = "jarvis"

    def __post_init__(self) -> None:
        if self.neighbor_rule not in ("jarvis", "radius_topk"):
            raise ValueError(f"neighbor_rule must be 'jarvis' or 'radius_topk', got {self.neighbor_rule!r}")
        if not (math.isfinite(self.cutoff) and self.cutoff > 0):
            raise ValueError(f"cutoff must be a positive finite number of Å, got {self.cutoff!r}")
        if self.max_neighbors < 1:
            raise ValueError(f"max_neighbors must be >= 1, got {self.max_neighbors!r}")
        if self.max_atoms < 1:
            raise ValueError(f"max_atoms must be >= 1, got {self.max_atoms!r}")


@dataclass
class CrystalGraph:
    """An ALIGNN crystal graph and its line graph.

    Attributes:
        atomic_numbers: ``[N]`` int64.
        edge_index: ``[2, E]`` int64; row 0 = source atom i, row 1 = destination atom j. Edges are sorted by
            source, then length.
        edge_vectors: ``[E, 3]`` float32; Cartesian ``r_ij = x_j + image_shift - x_i`` in Å.
        line_edge_index: ``[2, T]`` int64; pairs ``(e1, e2)`` of edge ids with ``dst(e1) == src(e2)``,
            backtracking pairs included (DGL ``line_graph(shared=True)``). Sorted by e2, then e1.
        bond_cosines: ``[T]`` float32; cosine between ``-r_e1`` and ``r_e2``, clamped to ``[-1, 1]``.
    """

    atomic_numbers: torch.Tensor
    edge_index: torch.Tensor
    edge_vectors: torch.Tensor
    line_edge_index: torch.Tensor
    bond_cosines: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_triplets(self) -> int:
        return int(self.line_edge_index.shape[1])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat dict of contiguous tensors (keys as the attribute names), e.g. for ``safetensors``."""
        return {key: getattr(self, key).contiguous() for key in _KEYS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> CrystalGraph:
        """Rebuild a graph from :meth:`to_tensors` output, checking it thoroughly.

        Extra keys are ignored. Raises:
            ValueError: missing key, wrong dtype/shape, out-of-range index, line graph inconsistent with the
                edges, non-finite values or cosines that disagree with the edge vectors.
        """
        missing = [key for key in _KEYS if key not in tensors]
        if missing:
            raise ValueError(f"graph tensors lack key(s) {missing}")
        graph = cls(**{key: tensors[key] for key in _KEYS})
        graph.validate()
        return graph

    def validate(self) -> None:
        """Check shapes, dtypes and internal consistency; raise ``ValueError`` on any problem."""
        z, ei, vec, lei, cos = (getattr(self, key) for key in _KEYS)
        for key, t, dtype, ndim in zip(
            _KEYS,
            (z, ei, vec, lei, cos),
            (torch.int64, torch.int64, torch.float32, torch.int64, torch.float32),
            (1, 2, 2, 2, 1),
        ):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{key}: expected a torch.Tensor, got {type(t).__name__}")  # noqa: TRY004 (corrupt cache)
            if t.dtype != dtype or t.ndim != ndim:
                raise ValueError(f"{key}: expected {ndim}-d {dtype}, got {t.ndim}-d {t.dtype}")
        n, e, t_ = z.shape[0], ei.shape[1] if ei.shape[0] == 2 else -1, lei.shape[1]
        if ei.shape[0] != 2 or lei.shape[0] != 2:
            raise ValueError(
                f"edge_index / line_edge_index must have 2 rows, got {tuple(ei.shape)}, {tuple(lei.shape)}"
            )
        if vec.shape != (e, 3):
            raise ValueError(f"edge_vectors: expected shape ({e}, 3), got {tuple(vec.shape)}")
        if cos.shape != (t_,):
            raise ValueError(f"bond_cosines: expected shape ({t_},), got {tuple(cos.shape)}")
        if n == 0 or e == 0:
            raise ValueError(f"empty graph ({n} nodes, {e} edges)")
        if int(z.min()) < 1:
            raise ValueError("atomic_numbers must be >= 1")
        if int(ei.min()) < 0 or int(ei.max()) >= n:
            raise ValueError(f"edge_index out of range for {n} nodes")
        if not bool(torch.isfinite(vec).all()) or not bool((vec.norm(dim=1) > 0).all()):
            raise ValueError("edge_vectors must be finite and non-zero")
        if t_ > 0 and (int(lei.min()) < 0 or int(lei.max()) >= e):
            raise ValueError(f"line_edge_index out of range for {e} edges")
        if not bool((ei[1, lei[0]] == ei[0, lei[1]]).all()):
            raise ValueError("line_edge_index pairs edges that do not share an atom (dst(e1) != src(e2))")
        in_deg = torch.bincount(ei[1], minlength=n)
        out_deg = torch.bincount(ei[0], minlength=n)
        if t_ != int((in_deg * out_deg).sum()):
            raise ValueError(
                f"line graph has {t_} pairs, expected sum(in_deg * out_deg) = {int((in_deg * out_deg).sum())}"
            )
        if t_ > 0:
            if not bool(torch.isfinite(cos).all()) or float(cos.abs().max()) > 1.0:
                raise ValueError("bond_cosines must be finite and within [-1, 1]")
            expected = torch.from_numpy(_bond_cosines(vec.double().numpy(), lei.numpy())).float()
            if not torch.allclose(cos, expected, atol=1e-4, rtol=0.0):
                raise ValueError("bond_cosines disagree with edge_vectors / line_edge_index")


def _bond_cosines(vectors: np.ndarray, line_edge_index: np.ndarray) -> np.ndarray:
    """ALIGNN ``compute_bond_cosines``: cos between ``-r_e1`` and ``r_e2``.

    Args:
        vectors: ``[E, 3]`` float64 bond vectors.
        line_edge_index: ``[2, T]`` int64.

    Returns:
        ``[T]`` float64 cosines clamped to ``[-1, 1]``.
    """
    norms = np.linalg.norm(vectors, axis=1)
    e1, e2 = line_edge_index
    dots = -np.einsum("ij,ij->i", vectors[e1], vectors[e2])
    return np.clip(dots / (norms[e1] * norms[e2]), -1.0, 1.0)


def _line_graph(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    """Vectorised DGL ``line_graph(shared=True)``, ordered by the aggregation target.

    Args:
        src, dst: ``[E]`` int64 edge endpoints.
        num_nodes: N.

    Returns:
        ``[2, T]`` int64 pairs ``(e1, e2)`` with ``dst[e1] == src[e2]``, sorted by e2 then e1. Line-graph
        convolutions sum messages into ``e2``; with ``e2`` sorted, that ``index_add_`` writes rows in order,
        3–5x faster on CPU than in random order (docs/benchmarks.md).
    """
    in_deg = np.bincount(dst, minlength=num_nodes)
    in_start = np.concatenate(([0], np.cumsum(in_deg)[:-1]))
    in_edges = np.argsort(dst, kind="stable")  # edge ids grouped by destination atom, ascending within
    counts = in_deg[src]  # [E] number of predecessors e1 of each edge e2
    e2 = np.repeat(np.arange(src.shape[0], dtype=np.int64), counts)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    offset = np.arange(e2.shape[0], dtype=np.int64) - np.repeat(first, counts)
    e1 = in_edges[in_start[src[e2]] + offset]
    return np.stack([e1, e2]).astype(np.int64, copy=False)


def _validate_cell(lattice: np.ndarray, frac: np.ndarray) -> float:
    """Raise :class:`GraphBuildError` for non-finite input or a singular cell; return ``|det|``."""
    if not np.isfinite(lattice).all():
        raise GraphBuildError("lattice matrix contains non-finite values")
    if not np.isfinite(frac).all():
        raise GraphBuildError("atomic coordinates contain non-finite values")
    volume = abs(float(np.linalg.det(lattice)))
    lengths = np.linalg.norm(lattice, axis=1)
    if volume < MIN_CELL_VOLUME or volume < MIN_NORMALISED_VOLUME * float(np.prod(lengths)):
        raise GraphBuildError(
            f"degenerate cell: volume {volume:.3g} Å^3 with lattice vector lengths {np.round(lengths, 4).tolist()} "
            "(singular or nearly coplanar lattice)"
        )
    return volume


# Over 60 lines on purpose: one vectorised neighbour search and its radius-growth loop; split, the same arrays
# would travel between helpers on the hottest path of graph building.
def _neighbor_pairs(
    cart: np.ndarray, lattice: np.ndarray, volume: float, settings: GraphSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full periodic neighbour list grown until every atom has ``max_neighbors`` neighbours (jarvis rule).

    Returns:
        ``i [P]``, ``j [P]``, ``shifts [P, 3]`` (int64 cell shifts of j), ``d [P]`` (Å, float64).
    """
    import vesin

    n, k = cart.shape[0], settings.max_neighbors
    max_len = float(np.linalg.norm(lattice, axis=1).max())
    cutoff = float(settings.cutoff)
    # Performance only: search a smaller radius first, sized for ~2k neighbours at the cell's mean density,
    # and widen it (x1.5) until every atom has k neighbours inside it, then fall back to the jarvis cutoff
    # rule. The graph only depends on every atom's k-th distance lying inside the searched radius (see
    # docs/graphs.md, "Cutoff growth"), so the result is identical; a dense 8 Å search costs ~10x more.
    radius = max(1.0, (3.0 * 2 * k * volume / (4.0 * math.pi * n)) ** (1.0 / 3.0) + 0.5)
    attempt = 0
    while True:
        if radius < cutoff:
            probe = radius
        else:
            if attempt >= MAX_CUTOFF_EXTENSIONS:
                break
            probe, attempt = cutoff, attempt + 1
        search = probe + 10 * TIE_TOLERANCE
        expected_pairs = n * n * 4.0 / 3.0 * math.pi * search**3 / volume
        if expected_pairs > MAX_PAIRS_ESTIMATE:
            raise GraphBuildError(
                f"neighbour search at cutoff {probe:.3g} Å would return ~{expected_pairs:.3g} pairs "
                f"({n} atoms, volume {volume:.4g} Å^3); refusing (too sparse a cell or too many atoms)"
            )
        nl = vesin.NeighborList(cutoff=search, full_list=True)
        i, j, shifts, d = nl.compute(cart, lattice, True, quantities="ijSd")
        i, j = i.astype(np.int64, copy=False), j.astype(np.int64, copy=False)
        if d.size and float(d.min()) < MIN_INTERATOMIC_DISTANCE:
            p = int(np.argmin(d))
            what = "its own periodic image" if i[p] == j[p] else f"atom {int(j[p])}"
            raise GraphBuildError(
                f"overlapping atoms: atom {int(i[p])} is {float(d[p]):.4f} Å from {what} "
                f"(minimum allowed {MIN_INTERATOMIC_DISTANCE} Å)"
            )
        counts = np.bincount(i[d <= probe], minlength=n)
        if counts.min() >= k:
            return i, j, shifts.astype(np.int64, copy=False), d
        if radius < cutoff:
            radius *= 1.5
            continue
        new_cutoff = max_len if cutoff < max_len else 2.0 * cutoff
        logger.debug(
            "attempt %d: an atom has %d < %d neighbours within %.3f Å; extending cutoff to %.3f Å",
            attempt,
            int(counts.min()),
            k,
            cutoff,
            new_cutoff,
        )
        cutoff = new_cutoff
    raise GraphBuildError(
        f"no {k} neighbours found within {cutoff:.3g} Å after {MAX_CUTOFF_EXTENSIONS} extensions"
    )


# Over 60 lines on purpose: the ALIGNN graph recipe in order (checks, neighbours, k-th distance cut, canonical
# edges, both directions, line graph), each step a few numpy lines on the arrays of the step before.
def build_crystal_graph(structure: Structure, settings: GraphSettings | None = None) -> CrystalGraph:
    """Build the ALIGNN atom graph and line graph of a periodic structure.

    Args:
        structure: an ordered ``pymatgen.core.Structure`` (N sites).
        settings: neighbour settings; ALIGNN defaults when ``None``.

    Returns:
        :class:`CrystalGraph` with N nodes, E directed edges and T bond pairs.

    Raises:
        GraphBuildError: empty, disordered or too large structure; non-finite coordinates; singular cell;
            overlapping atoms; neighbour search out of bounds.
        UnknownElementError: an element without CGCNN features.
    """
    settings = settings or GraphSettings()
    n = len(structure)
    if n == 0:
        raise GraphBuildError("structure has no atoms")
    if n > settings.max_atoms:
        raise GraphBuildError(f"structure has {n} atoms, more than max_atoms={settings.max_atoms}")
    try:  # one pass over the sites (``specie`` raises AttributeError on a disordered site)
        atomic_numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    except AttributeError:
        atomic_numbers = None
    if atomic_numbers is None:
        raise GraphBuildError(
            "structure is disordered (partial occupancies); graphs need an ordered structure"
        )
    check_elements(atomic_numbers)
    lattice = np.array(structure.lattice.matrix, dtype=np.float64)
    frac = np.array(structure.frac_coords, dtype=np.float64).reshape(n, 3)
    volume = _validate_cell(lattice, frac)
    # jarvis: positions and bond vectors from the rounded lattice, image offsets from the exact one.
    rounded = (
        lattice
        if settings.round_lattice_decimals is None
        else np.around(lattice, settings.round_lattice_decimals)
    )
    cart = frac @ rounded

    i, j, shifts, d = _neighbor_pairs(cart, lattice, volume, settings)

    if settings.neighbor_rule == "radius_topk":
        src, dst, vec = radius_topk_edges(i, j, shifts, d, frac=frac, cart_lattice=rounded, cutoff=settings.cutoff,
                                          max_neighbors=settings.max_neighbors)
        if src.size == 0:
            raise GraphBuildError(f"no neighbours within the cutoff of {settings.cutoff:g} Å (radius_topk)")
    else:
        # k-th nearest distance per atom; keep every neighbour up to it (ties kept, with a rounding tolerance).
        order = np.lexsort((d, i))
        i, j, shifts, d = i[order], j[order], shifts[order], d[order]
        start = np.concatenate(([0], np.cumsum(np.bincount(i, minlength=n))[:-1]))
        kth = d[start + settings.max_neighbors - 1]
        keep = d <= kth[i] + TIE_TOLERANCE
        i, j, shifts = i[keep], j[keep], shifts[keep]

        # Canonize (a <= b, source in the home cell) and take the union over both endpoints' lists.
        swap = j < i
        a, b = np.where(swap, j, i), np.where(swap, i, j)
        s = np.where(swap[:, None], -shifts, shifts)
        # np.unique over one int64 key per row (same lexicographic order as unique(axis=0), several times faster)
        lo = s.min(axis=0) if s.size else np.zeros(3, dtype=np.int64)
        span = (s.max(axis=0) - lo + 1) if s.size else np.ones(3, dtype=np.int64)
        if float(n) * n * float(np.prod(span)) < 2.0**62:
            key = ((a * n + b) * span[0] + (s[:, 0] - lo[0])) * span[1] + (s[:, 1] - lo[1])
            key = key * span[2] + (s[:, 2] - lo[2])
            _, first = np.unique(key, return_index=True)
            a, b, s = a[first], b[first], s[first]
        else:
            keys = np.unique(np.column_stack([a, b, s]), axis=0)
            a, b, s = keys[:, 0], keys[:, 1], keys[:, 2:]
        vec = (frac[b] + s - frac[a]) @ rounded

        # Both directions of every canonical edge (self-image edges thus appear twice per direction, as in jarvis).
        src = np.concatenate([a, b])
        dst = np.concatenate([b, a])
        vec = np.concatenate([vec, -vec])
    length = np.linalg.norm(vec, axis=1)
    order = np.lexsort((dst, length, src))
    src, dst, vec = src[order], dst[order], vec[order]

    line = _line_graph(src, dst, n)
    graph = CrystalGraph(
        atomic_numbers=torch.from_numpy(atomic_numbers),
        edge_index=torch.from_numpy(np.stack([src, dst]).astype(np.int64)),
        edge_vectors=torch.from_numpy(vec.astype(np.float32)),
        line_edge_index=torch.from_numpy(line),
        bond_cosines=torch.from_numpy(_bond_cosines(vec, line).astype(np.float32)),
    )
    logger.debug(
        "graph: %d nodes, %d edges, %d triplets", graph.num_nodes, graph.num_edges, graph.num_triplets
    )
    return graph
