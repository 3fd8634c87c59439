"""The reference ALIGNN's ``pure_torch`` neighbour rule (``graph.neighbor_rule = "radius_topk"``).

``alignn.torch_graph_builder.build_pure_torch_graph`` (alignn 2026.8.11, the builder of
``neighbor_strategy="pure_torch"``) takes every periodic neighbour within ``cutoff`` (no growth when an atom has
fewer), keeps the ``max_neighbors`` nearest per *source* atom (``_topk_per_source``: strict, no ties kept)
and uses those edges as they are: directed ``i → j``, not made symmetric. The line graph (pairs of edges
``(e1, e2)`` with ``dst(e1) == src(e2)``, backtracking included) and the bond cosines are built the same way
as for the jarvis rule. Pure numpy; :func:`crysfuse.data.graphs.build_crystal_graph` calls it.

Tie-breaking differs: alignn keeps whichever equidistant neighbours ``torch.argsort`` puts first; here ties
are broken by neighbour index, then periodic shift (deterministic). Only the choice among equidistant
neighbours can differ; every kept bond length is the same.
"""

from __future__ import annotations

import numpy as np

CUTOFF_TOLERANCE = 1e-8
"""Å. A neighbour at ``d <= cutoff + CUTOFF_TOLERANCE`` is inside the cutoff (alignn: ``d² <= cutoff²``)."""


def radius_topk_edges(i: np.ndarray, j: np.ndarray, shifts: np.ndarray, d: np.ndarray, *, frac: np.ndarray,
                      cart_lattice: np.ndarray, cutoff: float, max_neighbors: int,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed edges of the radius + top-k rule.

    Args:
        i, j, shifts, d: a full periodic neighbour list (``[P]``, ``[P]``, ``[P, 3]`` int cell shifts of
            ``j``, ``[P]`` distances in Å) that holds at least every pair within ``cutoff``.
        frac: ``[N, 3]`` fractional coordinates; cart_lattice ``[3, 3]`` the lattice for Cartesian vectors.
        cutoff: Å; pairs farther apart are dropped.
        max_neighbors: k; at most this many (the nearest) edges leave each atom.

    Returns:
        ``src [E]``, ``dst [E]`` (int64) and ``vec [E, 3]`` (float64, ``x_dst + shift - x_src``), unsorted.
    """
    inside = d <= cutoff + CUTOFF_TOLERANCE
    i, j, shifts, d = i[inside], j[inside], shifts[inside], d[inside]
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, d, i))
    i, j, shifts = i[order], j[order], shifts[order]
    counts = np.bincount(i, minlength=frac.shape[0])
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(i.shape[0]) - first[i]
    keep = rank < max_neighbors
    src, dst, shifts = i[keep], j[keep], shifts[keep]
    vec = (frac[dst] + shifts - frac[src]) @ cart_lattice
    return src.astype(np.int64), dst.astype(np.int64), vec
