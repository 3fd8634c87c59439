"""Parsing and checking single crystal structures, whatever form they come in (files, CIF/POSCAR strings,
pymatgen / jarvis-tools / ASE objects, structure dicts)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import vesin
from pymatgen.core import Structure
from pymatgen.core.periodic_table import Element

MAX_NEIGHBOR_DISTANCE = 8.0


def isolated_atom(structure: Structure, max_distance: float = MAX_NEIGHBOR_DISTANCE) -> str | None:
    """Why ``structure`` has an atom without any neighbour within ``max_distance`` Å, or ``None``.

    Periodic images count as neighbours. Structures the check cannot handle (non-finite coordinates, a
    singular cell) are left to the graph builder, which rejects them with its own reason.
    """
    try:
        lattice = np.asarray(structure.lattice.matrix, dtype=np.float64)
        cart = np.asarray(structure.cart_coords, dtype=np.float64).reshape(-1, 3)
        if not (np.isfinite(lattice).all() and np.isfinite(cart).all()) or abs(np.linalg.det(lattice)) < 1e-3:
            return None
        (i,) = vesin.NeighborList(cutoff=max_distance, full_list=True).compute(cart, lattice, True, quantities="i")
    except Exception:  # noqa: BLE001 - the graph builder reports such cells
        return None
    has_neighbor = np.bincount(np.asarray(i, dtype=np.int64), minlength=len(cart)) > 0
    if has_neighbor.all():
        return None
    atom = int(np.argmin(has_neighbor))
    return (f"atom {atom} ({structure[atom].species_string}) has no neighbour within {max_distance:g} Å "
            f"({int((~has_neighbor).sum())} such atoms): isolated atoms make meaningless graphs")


def structure_from_jarvis_dict(atoms: dict[str, Any]) -> Structure:
    """jarvis-tools ``Atoms.to_dict()`` → pymatgen ``Structure`` (parsed by jarvis-tools, then converted)."""
    from jarvis.core.atoms import Atoms

    missing = [key for key in ("lattice_mat", "elements", "coords") if key not in atoms]
    if missing:
        raise ValueError(f"the atoms dict has no {', '.join(repr(k) for k in missing)} "
                         "(needed: 'lattice_mat', 'elements', 'coords')")
    elements, coords = atoms["elements"], atoms["coords"]
    if isinstance(elements, list) and isinstance(coords, list) and len(elements) != len(coords):
        raise ValueError(f"{len(elements)} elements for {len(coords)} coordinates")
    # 'props' (per-site labels) and 'cartesian' are optional: JARVIS files in the wild leave them out
    props = atoms.get("props") or [""] * (len(elements) if isinstance(elements, list) else 0)
    built = Atoms(lattice_mat=atoms["lattice_mat"], elements=elements, coords=coords, props=props,
                  cartesian=bool(atoms.get("cartesian", False)))
    return checked_structure(built.pymatgen_converter())


def checked_structure(structure: Any) -> Structure:
    """``structure`` if it is a usable pymatgen ``Structure``; else ``ValueError`` saying why.

    Usable: at least one atom, only real elements (no dummy species such as ``Xx``), ordered (no partial
    occupancies: graphs and describers need one element per site).
    """
    if not isinstance(structure, Structure):
        raise ValueError(f"parsing gave a {type(structure).__name__}, not a structure")  # noqa: TRY004
    if len(structure) == 0:
        raise ValueError("structure has no atoms")
    unknown = sorted({str(sp) for sp in structure.composition.elements if not isinstance(sp, Element)})
    if unknown:
        raise ValueError(f"unknown element(s) {unknown}")
    if not structure.is_ordered:
        raise ValueError("structure is disordered (partial occupancies); one element per site is needed")
    return structure


def read_structure_file(path: Path) -> Structure:
    """A structure file (CIF, POSCAR, ...) that must hold at least one atom."""
    with warnings.catch_warnings():
        # pymatgen's notes on the CIF 'primitive' default and on rounded coordinates; parse errors still raise
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        structure = Structure.from_file(path)
    return checked_structure(structure)


def structure_from_value(value: Any) -> Structure:
    """Anything that describes one crystal → pymatgen ``Structure``.

    The result passes :func:`checked_structure`. Accepts a path to a structure file (CIF, POSCAR, ...), a
    pymatgen ``Structure``, a jarvis-tools ``Atoms``, an ASE ``Atoms`` (periodic), a pymatgen
    ``Structure.as_dict()`` dict, a jarvis ``Atoms.to_dict()`` dict, or a string holding a CIF, a POSCAR or
    either dict as JSON.

    Raises:
        ValueError: the value is empty or cannot be parsed (the message says why).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("no structure (empty cell)")
    if isinstance(value, os.PathLike) or _is_file_path(value):
        return read_structure_file(Path(value))
    if isinstance(value, Structure):
        structure = value
    elif type(value).__module__.startswith("jarvis.") and hasattr(value, "pymatgen_converter"):
        structure = value.pymatgen_converter()
    elif _is_ase_atoms(value):
        from pymatgen.io.ase import AseAtomsAdaptor

        if not all(value.get_pbc()):
            raise ValueError("ASE Atoms is not periodic in all three directions (set pbc=True and a cell)")
        structure = AseAtomsAdaptor.get_structure(value)
    elif isinstance(value, dict):
        if "lattice_mat" in value:
            structure = structure_from_jarvis_dict(value)
        elif "lattice" in value and "sites" in value:
            structure = Structure.from_dict(value)
        else:
            raise ValueError(
                f"dict with keys {sorted(value)[:8]} is neither a pymatgen Structure dict ('lattice', 'sites') "
                "nor a jarvis Atoms dict ('lattice_mat', 'coords', 'elements')"
            )
    elif isinstance(value, (str, bytes)):
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        text = text.strip()
        if not text:
            raise ValueError("no structure (empty cell)")
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"structure text looks like JSON but does not parse: {err}") from None
            return structure_from_value(parsed)
        fmt = "cif" if ("_cell_length_a" in text or text.startswith("data_")) else "poscar"
        structure = Structure.from_str(text, fmt=fmt)
    else:
        raise ValueError(f"cannot make a structure from a {type(value).__name__}")
    return checked_structure(structure)


def _is_file_path(value: Any) -> bool:
    """A one-line string naming an existing file (not CIF/POSCAR/JSON text)."""
    if not isinstance(value, str) or "\n" in value or len(value) > 4096 or value.lstrip().startswith("{"):
        return False
    try:
        return Path(value).is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def _is_ase_atoms(value: Any) -> bool:
    try:
        from ase import Atoms as AseAtoms
    except ImportError:  # pragma: no cover - ase is a dependency
        return False
    return isinstance(value, AseAtoms)


def jarvis_atoms_dict(structure: Structure) -> dict[str, Any]:
    """pymatgen ``Structure`` → the ``atoms`` dict of JARVIS-style JSON (jarvis-tools ``Atoms.to_dict()``)."""
    return {
        "lattice_mat": structure.lattice.matrix.tolist(),
        "coords": structure.frac_coords.tolist(),
        "elements": [site.specie.symbol for site in structure],
        "abc": list(structure.lattice.abc),
        "angles": list(structure.lattice.angles),
        "cartesian": False,
        "props": [""] * len(structure),
    }
