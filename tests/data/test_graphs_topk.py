"""``graph.neighbor_rule = "radius_topk"``: the reference ALIGNN's ``pure_torch`` graphs (docs/parity.md)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crysfuse.config import Config
from crysfuse.data.cache import GRAPH_CACHE_VERSION, graph_settings, structure_key
from crysfuse.data.graphs import GraphBuildError, GraphSettings, build_crystal_graph

TOPK = GraphSettings(neighbor_rule="radius_topk")
STRUCTURES = {
    "NaCl": Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "Si": Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "Ti": Structure(Lattice.hexagonal(2.95, 4.68), ["Ti", "Ti"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]),
    "LiFeO2": Structure(Lattice.from_parameters(4.1, 5.2, 6.3, 85, 95, 100), ["Li", "Fe", "O", "O"],
                        [[0, 0, 0], [0.5, 0.4, 0.5], [0.2, 0.7, 0.3], [0.8, 0.2, 0.8]]),
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_at_most_k_directed_edges_per_source_within_the_cutoff(name):
    graph = build_crystal_graph(STRUCTURES[name], TOPK)
    graph.validate()
    src = graph.edge_index[0].numpy()
    lengths = graph.edge_vectors.norm(dim=1).numpy()
    assert np.bincount(src, minlength=graph.num_nodes).max() <= 12
    assert lengths.max() <= 8.0 + 1e-6
    # The 12 kept per source are its 12 nearest periodic neighbours (brute force by pymatgen).
    for atom, neighbours in enumerate(STRUCTURES[name].get_all_neighbors(8.0)):
        nearest = np.sort([n.nn_distance for n in neighbours])[:12]
        assert np.allclose(np.sort(lengths[src == atom]), nearest, atol=1e-4)


def test_a_small_cutoff_is_not_grown():
    simple_cubic = Structure(Lattice.cubic(2.8), ["Po"], [[0, 0, 0]])
    graph = build_crystal_graph(simple_cubic, GraphSettings(cutoff=3.0, neighbor_rule="radius_topk"))
    # 6 self-images at 2.8 Å, the next shell (3.96 Å) is outside; the jarvis rule would grow the cutoff to 12.
    assert graph.num_edges == 6 and graph.edge_vectors.norm(dim=1).max() <= 3.0
    assert build_crystal_graph(simple_cubic, GraphSettings(cutoff=3.0)).num_edges > 12
    with pytest.raises(GraphBuildError, match="no neighbours"):  # CsCl-type cell: nearest pair at 4.9 Å
        build_crystal_graph(STRUCTURES["NaCl"], GraphSettings(cutoff=3.0, neighbor_rule="radius_topk"))


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_matches_the_reference_pure_torch_builder(name):
    builder = pytest.importorskip("alignn.torch_graph_builder")
    from jarvis.core.atoms import Atoms

    structure = STRUCTURES[name]
    atoms = Atoms(lattice_mat=structure.lattice.matrix, elements=[s.specie.symbol for s in structure],
                  coords=structure.frac_coords, cartesian=False)
    g, lg = builder.build_pure_torch_graph(atoms=atoms, two_body_cutoff=8.0, three_body_cutoff=8.0,
                                           max_neighbors=12)
    ours = build_crystal_graph(structure, TOPK)
    assert ours.num_edges == int(g.src.numel()) and ours.num_triplets == int(lg.src.numel())
    ref_lengths = g.edata["r"].detach().norm(dim=1).numpy()
    src = ours.edge_index[0].numpy()
    lengths = ours.edge_vectors.norm(dim=1).numpy()
    for atom in range(ours.num_nodes):
        assert np.allclose(np.sort(lengths[src == atom]), np.sort(ref_lengths[g.src.numpy() == atom]), atol=1e-4)
    if name == "LiFeO2":  # no tie at the 12th distance: the same edges, so the same angles
        assert np.allclose(np.sort(ours.bond_cosines.numpy()), np.sort(lg.edata["h"].detach().numpy()), atol=1e-4)


def test_default_rule_keeps_the_graph_cache_keys():
    structure = STRUCTURES["Si"]
    settings = GraphSettings()
    old = {k: v for k, v in asdict(settings).items() if k != "neighbor_rule"}
    digest = hashlib.sha256(f"graph-v{GRAPH_CACHE_VERSION}|{sorted(old.items())}".encode())
    digest.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    digest.update(np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    assert structure_key(structure, settings) == digest.hexdigest()
    assert structure_key(structure, TOPK) != digest.hexdigest()
    assert graph_settings(Config().replace({"graph.neighbor_rule": "radius_topk"})) == TOPK
