"""The embedded offline demo data set: ordered fcc/bcc/hcp alloy cells with EMT formation energies.

Cells of Al, Cu, Ag, Au, Ni, Pd and Pt (the metals of ASE's effective-medium-theory potential) are built
with ASE, species are assigned at random, each cell's volume is relaxed isotropically under EMT, and the
formation energy per atom is taken against the relaxed fcc elements. Physics is real (EMT, Jacobsen et al.,
Surf. Sci. 366, 394 (1996)); nothing is downloaded. Records are written in the JARVIS-style JSON schema so
the demo exercises the same loader as real data.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import numpy as np

from crysfuse.io import write_json_atomic

logger = logging.getLogger(__name__)

METALS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
FCC_LATTICE_CONSTANT = {"Al": 4.05, "Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92}
PROTOTYPES = (("fcc", (1, 1, 1)), ("bcc", (1, 1, 2)), ("hcp", (1, 1, 2)), ("fcc", (1, 1, 2)))
SCALE_GRID = np.linspace(0.92, 1.08, 9)


def _relaxed_energy_per_atom(atoms) -> tuple[float, float]:
    """Isotropic volume relaxation under EMT: quadratic fit of E(scale) on a grid; (energy/atom, scale)."""
    from ase.calculators.emt import EMT

    base_cell = atoms.get_cell().copy()
    energies = []
    for scale in SCALE_GRID:
        trial = atoms.copy()
        trial.set_cell(base_cell * scale, scale_atoms=True)
        trial.calc = EMT()
        energies.append(trial.get_potential_energy() / len(trial))
    a, b, c = np.polyfit(SCALE_GRID, energies, 2)
    scale = float(np.clip(-b / (2 * a), SCALE_GRID[0], SCALE_GRID[-1])) if a > 0 else float(
        SCALE_GRID[int(np.argmin(energies))])
    return float(np.polyval([a, b, c], scale)), scale


@cache
def _reference_energy(element: str) -> float:
    from ase.build import bulk

    return _relaxed_energy_per_atom(bulk(element, "fcc", a=FCC_LATTICE_CONSTANT[element], cubic=True))[0]


def _random_cell(rng: np.random.Generator):
    from ase.build import bulk

    lattice, repeat = PROTOTYPES[rng.integers(len(PROTOTYPES))]
    elements = list(rng.choice(METALS, size=int(rng.integers(1, 4)), replace=False))
    host = elements[0]
    volume_fcc = FCC_LATTICE_CONSTANT[host] ** 3 / 4
    if lattice == "fcc":
        atoms = bulk(host, "fcc", a=FCC_LATTICE_CONSTANT[host], cubic=True)
    elif lattice == "bcc":
        atoms = bulk(host, "bcc", a=(2 * volume_fcc) ** (1 / 3), cubic=True)
    else:
        a = (np.sqrt(2) * volume_fcc) ** (1 / 3)
        atoms = bulk(host, "hcp", a=a, c=a * np.sqrt(8 / 3))
    atoms = atoms.repeat(repeat)
    symbols = [str(s) for s in rng.choice(elements, size=len(atoms))]
    atoms.set_chemical_symbols(symbols)
    # Vegard's law on atomic volumes, so the relaxation grid brackets the minimum.
    target_volume = np.mean([FCC_LATTICE_CONSTANT[s] ** 3 / 4 for s in symbols]) * len(atoms)
    atoms.set_cell(atoms.get_cell() * (target_volume / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    return atoms


def build_demo_records(num_structures: int = 300, *, seed: int = 0) -> list[dict]:
    """``num_structures`` JARVIS-style records ``{"id", "atoms", "e_form"}`` (formation energy, eV/atom)."""
    from jarvis.core.atoms import Atoms as JarvisAtoms

    rng = np.random.default_rng(seed)
    records = []
    for index in range(num_structures):
        atoms = _random_cell(rng)
        energy, scale = _relaxed_energy_per_atom(atoms)
        symbols = atoms.get_chemical_symbols()
        formation = energy - np.mean([_reference_energy(s) for s in symbols])
        atoms.set_cell(atoms.get_cell() * scale, scale_atoms=True)
        jarvis_atoms = JarvisAtoms(
            lattice_mat=atoms.get_cell().array, coords=atoms.get_scaled_positions(), elements=symbols,
            cartesian=False,
        )
        records.append({"id": f"emt-{index:04d}", "atoms": jarvis_atoms.to_dict(), "e_form": float(formation)})
    logger.info("built %d EMT demo structures", len(records))
    return records


def write_demo_dataset(path: Path, num_structures: int = 300, *, seed: int = 0) -> Path:
    """Build the demo records and write them as a JARVIS-style JSON file."""
    records = build_demo_records(num_structures, seed=seed)
    write_json_atomic(Path(path), records)
    return Path(path)
