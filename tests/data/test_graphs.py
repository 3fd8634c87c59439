"""Tests for the ALIGNN crystal-graph builder and the CGCNN atom feature table."""

from __future__ import annotations

import gzip
import json
import sys
import types
from collections import Counter

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crysfuse.chemistry import (
    DIM_ATOM_FEATURES,
    UnknownElementError,
    cgcnn_feature_table,
    check_elements,
)
from crysfuse.data.graphs import CrystalGraph, GraphBuildError, GraphSettings, build_crystal_graph
from tests.conftest import SHARED_DATA, require_shared

MP36K = SHARED_DATA / "mp36k.json.gz"
EXACT = GraphSettings(round_lattice_decimals=None)


# ----------------------------------------------------------------------------------------- structures
def si_conventional(a: float = 5.431) -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]])


def si_primitive(a: float = 5.431) -> Structure:
    lat = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lat, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def nacl_conventional(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def nacl_primitive(a: float = 5.64) -> Structure:
    lat = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Structure(lat, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl(a: float = 4.12) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# ----------------------------------------------------------------------------------------- helpers
def lengths(g: CrystalGraph) -> np.ndarray:
    return np.linalg.norm(g.edge_vectors.double().numpy(), axis=1)


def out_degree(g: CrystalGraph) -> np.ndarray:
    return np.bincount(g.edge_index[0].numpy(), minlength=g.num_nodes)


def neighbour_signature(g: CrystalGraph) -> dict[tuple, float]:
    """Fraction of atoms per (Z, sorted unique neighbour distances): invariant to cell choice and pose.

    Unique per atom, because periodic self-image edges are duplicated (ALIGNN quirk) only when the
    neighbour is an image of the atom itself, which depends on the cell.
    """
    src = g.edge_index[0].numpy()
    z = g.atomic_numbers.numpy()
    vec = g.edge_vectors.double().numpy()
    sig = []
    for atom in range(g.num_nodes):
        _, first = np.unique(np.round(vec[src == atom], 3), axis=0, return_index=True)
        dist = np.sort(np.linalg.norm(vec[src == atom][first], axis=1))
        sig.append((int(z[atom]), tuple(np.round(dist, 3).tolist())))
    return {key: count / len(sig) for key, count in Counter(sig).items()}


def edge_multiset(src: np.ndarray, dst: np.ndarray, vec: np.ndarray) -> Counter:
    return Counter(zip(src.tolist(), dst.tolist(), map(tuple, np.round(vec, 4).tolist())))


def random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ----------------------------------------------------------------------------------------- basic shells
@pytest.mark.parametrize(
    ("structure", "first_shell", "first_count", "degree"),
    [
        (si_conventional(), 5.431 * np.sqrt(3) / 4, 4, 16),  # 4 + 12 second-shell ties
        (nacl_conventional(), 5.64 / 2, 6, 18),  # 6 + 12
        (cscl(), 4.12 * np.sqrt(3) / 2, 8, 20),  # 8 + 6 self images, each twice (quirk)
        (si_primitive(), 5.431 * np.sqrt(3) / 4, 4, 28),  # 4 + 12 self images, each twice (quirk)
    ],
)
def test_shells(structure: Structure, first_shell: float, first_count: int, degree: int) -> None:
    g = build_crystal_graph(structure)
    assert g.num_nodes == len(structure)
    assert (out_degree(g) == degree).all()
    src, d = g.edge_index[0].numpy(), lengths(g)
    for atom in range(g.num_nodes):
        mine = np.sort(d[src == atom])
        assert mine[0] == pytest.approx(first_shell, abs=1e-4)
        assert np.sum(np.abs(mine - first_shell) < 1e-4) == first_count
    assert g.num_triplets == int((np.bincount(g.edge_index[1].numpy()) * out_degree(g)).sum())


def test_self_image_edges_are_doubled() -> None:
    """CsCl primitive: the 6 Cs-Cs neighbours are images of atom 0; jarvis stores each directed vector twice."""
    g = build_crystal_graph(cscl())
    src, dst = g.edge_index.numpy()
    self_edges = edge_multiset(src[src == dst], dst[src == dst], g.edge_vectors.double().numpy()[src == dst])
    assert len(self_edges) == 12 and set(self_edges.values()) == {2}


def test_cosines_and_undirected() -> None:
    for s in (si_conventional(), nacl_primitive(), cscl()):
        g = build_crystal_graph(s)
        assert g.edge_index.dtype == torch.int64 and g.edge_vectors.dtype == torch.float32
        assert g.bond_cosines.dtype == torch.float32
        assert float(g.bond_cosines.min()) >= -1.0 and float(g.bond_cosines.max()) <= 1.0
        src, dst = g.edge_index.numpy()
        vec = g.edge_vectors.double().numpy()
        assert edge_multiset(src, dst, vec) == edge_multiset(dst, src, -vec)


def test_line_graph_brute_force() -> None:
    g = build_crystal_graph(nacl_primitive())
    src, dst = g.edge_index.numpy()
    expected = {(a, b) for a in range(g.num_edges) for b in range(g.num_edges) if dst[a] == src[b]}
    got = list(map(tuple, g.line_edge_index.T.tolist()))
    assert len(got) == len(set(got)) == len(expected) and set(got) == expected
    v = g.edge_vectors.double()
    e1, e2 = g.line_edge_index
    cos = torch.nn.functional.cosine_similarity(-v[e1], v[e2], dim=1)
    assert torch.allclose(g.bond_cosines.double(), cos, atol=1e-6)
    backtrack = (src[e1] == dst[e2]) & np.all(np.isclose(-v[e1].numpy(), v[e2].numpy()), axis=1)
    assert np.allclose(g.bond_cosines.numpy()[backtrack], 1.0)
    # ordered by the aggregation target e2, then e1 (rows summed in order: docs/graphs.md)
    assert got == sorted(got, key=lambda pair: (pair[1], pair[0]))


# ----------------------------------------------------------------------------------------- invariance
@pytest.mark.parametrize("make", [si_conventional, nacl_primitive, cscl])
def test_invariance(make) -> None:
    s = make()
    ref = neighbour_signature(build_crystal_graph(s))
    # translation (atoms leave the home cell: coordinates are not wrapped)
    moved = Structure(
        s.lattice, s.species, s.cart_coords + np.array([1.37, -2.2, 9.1]), coords_are_cartesian=True
    )
    assert neighbour_signature(build_crystal_graph(moved)) == ref
    # supercell
    assert neighbour_signature(build_crystal_graph(s * (2, 1, 2))) == ref
    # rotation (exact lattice: the jarvis 5-decimal rounding is not rotation invariant in tie shells)
    rot = random_rotation(7)
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    assert neighbour_signature(build_crystal_graph(rotated, EXACT)) == neighbour_signature(
        build_crystal_graph(s, EXACT)
    )


def test_primitive_vs_conventional_cell() -> None:
    assert neighbour_signature(build_crystal_graph(si_primitive())) == neighbour_signature(
        build_crystal_graph(si_conventional())
    )
    assert neighbour_signature(build_crystal_graph(nacl_primitive())) == neighbour_signature(
        build_crystal_graph(nacl_conventional())
    )


def test_cutoff_growth_and_small_cutoff() -> None:
    """The result does not depend on the initial cutoff (jarvis grows it until k neighbours are found)."""
    s = nacl_conventional()
    a, b = build_crystal_graph(s), build_crystal_graph(s, GraphSettings(cutoff=1.0))
    assert torch.equal(a.edge_index, b.edge_index) and torch.allclose(a.edge_vectors, b.edge_vectors)
    sparse = Structure(Lattice.cubic(15.0), ["Ar"], [[0, 0, 0]])  # first neighbours at 15 Å > 8 Å
    d = np.sort(lengths(build_crystal_graph(sparse)))  # 6 + 12 self images, each directed vector twice
    assert np.allclose(d[:12], 15.0) and np.allclose(d[12:], 15.0 * np.sqrt(2)) and len(d) == 36


# ----------------------------------------------------------------------------------------- jarvis agreement
@pytest.fixture(scope="module")
def jarvis_graph_fns():
    stub = types.ModuleType("dgl")
    stub.DGLGraph = type("DGLGraph", (), {})
    inserted = sys.modules.setdefault("dgl", stub) is stub
    had_graphs = "jarvis.core.graphs" in sys.modules
    try:
        from jarvis.core.atoms import Atoms
        from jarvis.core.graphs import build_undirected_edgedata, nearest_neighbor_edges
    finally:
        if inserted:
            sys.modules.pop("dgl", None)
            if not had_graphs:
                sys.modules.pop("jarvis.core.graphs", None)
    return Atoms, nearest_neighbor_edges, build_undirected_edgedata


@pytest.fixture(scope="module")
def mp_sample() -> list[dict]:
    with gzip.open(require_shared(MP36K), "rt") as fh:
        records = json.load(fh)
    rng = np.random.default_rng(0)
    picked = [records[i] for i in rng.permutation(len(records)) if len(records[i]["atoms"]["elements"]) <= 24]
    return picked[:24]


def test_agreement_with_jarvis(jarvis_graph_fns, mp_sample) -> None:
    """Same directed edge multiset (src, dst, vector) as jarvis, except float-noise ties that jarvis splits."""
    atoms_cls, nearest_neighbor_edges, build_undirected_edgedata = jarvis_graph_fns
    exact = 0
    for record in mp_sample:
        a = record["atoms"]
        jat = atoms_cls.from_dict(a)
        u, v, r = build_undirected_edgedata(
            jat, nearest_neighbor_edges(atoms=jat, cutoff=8, max_neighbors=12)
        )
        ref = edge_multiset(u.numpy(), v.numpy(), r.double().numpy())
        g = build_crystal_graph(Structure(a["lattice_mat"], a["elements"], a["coords"]))
        src, dst = g.edge_index.numpy()
        ours = edge_multiset(src, dst, g.edge_vectors.double().numpy())
        if ours == ref:
            exact += 1
            continue
        assert not (ref - ours), f"{record['id']}: jarvis edges missing"
        kept = {
            atom: np.array([np.linalg.norm(k[2]) for k in ref if k[0] == atom]) for atom in range(g.num_nodes)
        }
        for s_, d_, vec in ours - ref:  # each extra edge must tie (1e-4 Å) with a bond jarvis kept
            length = np.linalg.norm(vec)
            assert any(np.abs(kept[x] - length).min() < 1e-4 for x in (s_, d_)), f"{record['id']}: extra edge"
    assert exact >= 0.75 * len(mp_sample), f"only {exact}/{len(mp_sample)} exact matches"


# ----------------------------------------------------------------------------------------- errors
def test_overlapping_atoms() -> None:
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])
    with pytest.raises(GraphBuildError, match="overlapping"):
        build_crystal_graph(s)
    with pytest.raises(GraphBuildError, match="own periodic image"):
        build_crystal_graph(Structure(Lattice.orthorhombic(0.3, 4, 4), ["Na"], [[0, 0, 0]]))


def test_degenerate_cell_and_bad_input() -> None:
    flat = Structure([[4, 0, 0], [0, 4, 0], [4, 4, 0]], ["Na"], [[0, 0, 0]])
    with pytest.raises(GraphBuildError, match="degenerate cell"):
        build_crystal_graph(flat)
    with pytest.raises(GraphBuildError, match="non-finite"):
        build_crystal_graph(Structure(Lattice.cubic(4.0), ["Na"], [[np.nan, 0, 0]]))
    with pytest.raises(GraphBuildError, match="max_atoms"):
        build_crystal_graph(nacl_conventional(), GraphSettings(max_atoms=4))
    with pytest.raises(ValueError):
        GraphSettings(max_neighbors=0)


def test_unknown_element() -> None:
    with pytest.raises(UnknownElementError, match="Md"):
        check_elements([11, 101])
    with pytest.raises(UnknownElementError, match="Md"):
        build_crystal_graph(Structure(Lattice.cubic(4.0), ["Md"], [[0, 0, 0]]))
    check_elements(torch.tensor([1, 14, 100]))


def test_cgcnn_table_matches_jarvis() -> None:
    from jarvis.core.specie import get_node_attributes

    table = cgcnn_feature_table()
    assert table.shape == (101, DIM_ATOM_FEATURES) and table.dtype == torch.float32
    assert torch.isnan(table[0]).all() and not torch.isnan(table[1:]).any()
    for symbol, z in (("H", 1), ("Si", 14), ("Fm", 100)):
        assert torch.equal(table[z], torch.tensor(get_node_attributes(symbol, "cgcnn"), dtype=torch.float32))


# ----------------------------------------------------------------------------------------- serialisation
def test_tensor_round_trip() -> None:
    from safetensors.torch import load, save

    g = build_crystal_graph(nacl_primitive())
    back = CrystalGraph.from_tensors(load(save(g.to_tensors())))
    for key, t in g.to_tensors().items():
        assert torch.equal(getattr(back, key), t)
    assert (back.num_nodes, back.num_edges, back.num_triplets) == (g.num_nodes, g.num_edges, g.num_triplets)


def _corruptions(t: dict[str, torch.Tensor]):
    yield {k: v for k, v in t.items() if k != "bond_cosines"}
    yield {**t, "edge_vectors": t["edge_vectors"].double()}
    yield {**t, "edge_vectors": t["edge_vectors"][:-1]}
    yield {**t, "atomic_numbers": t["atomic_numbers"][:1]}  # edge_index out of range
    yield {**t, "line_edge_index": t["line_edge_index"][:, :-1], "bond_cosines": t["bond_cosines"][:-1]}
    yield {**t, "line_edge_index": t["line_edge_index"].flip(1)}  # pairs no longer share an atom
    yield {**t, "bond_cosines": -t["bond_cosines"]}
    yield {**t, "edge_vectors": torch.full_like(t["edge_vectors"], float("nan"))}
    yield {**t, "edge_index": t["edge_index"].T.contiguous()}


def test_from_tensors_rejects_inconsistent() -> None:
    tensors = build_crystal_graph(cscl()).to_tensors()
    for i, bad in enumerate(_corruptions(tensors)):
        with pytest.raises(ValueError):
            CrystalGraph.from_tensors(bad)
        assert i >= 0
