"""Readers that turn crystal data into :class:`StructureRecord` objects.

Supported sources (see ``docs/data.md`` for each layout with an example):

* JARVIS-style JSON / JSON.gz: a list of records with an ``atoms`` dict in jarvis-tools'
  ``Atoms.to_dict()`` schema, an id under ``jid`` or ``id``, and target keys (``dft_3d``, ``megnet``,
  ``mp36k.json.gz``). An optional ``text``/``description`` field is used as the description.
* CGCNN-style folders: ``id_prop.csv`` (``id,value`` rows, optionally with a header naming columns) next to
  ``<id>.cif`` / ``<id>.vasp`` / ``<id>.poscar`` / ``POSCAR-<id>`` structure files.
* CrysMMNet folders: ``<root>/<property>/description.csv`` (``id, composition, target, description, ...``)
  next to ``cif/<id>.cif``; descriptions are cleaned with :func:`crysfuse.data.describe.clean_text`.
* Tables (CSV / JSONL / Parquet, optionally gzipped) with a CIF-string or pymatgen/jarvis-dict structure
  column (:mod:`crysfuse.data.tables`).
* ``jarvis:<dataset>`` through jarvis-tools' figshare downloader and cache (:mod:`crysfuse.data.jarvis_online`).
* In Python: :func:`records_from_structures` on pymatgen ``Structure`` / jarvis ``Atoms`` / ASE ``Atoms``.

Rows that cannot be used are never dropped silently: each becomes a :class:`Rejection` (id + reason).
Empty or whitespace-only descriptions count as missing (``text=None``), so a describer can fill them in.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

logger = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".POSCAR", "")
CRYSMMNET_FILE = "description.csv"
JARVIS_PREFIX = "jarvis:"
MAX_NEIGHBOR_DISTANCE = 8.0
"""Å. An atom with no other atom (periodic images included) this close is isolated: its graph edges would span
empty space. The largest nearest-neighbour distance in mp36k is 5.65 Å; ALIGNN's cutoff is 8 Å."""


class DataSourceError(ValueError):
    """The source as a whole cannot be read (missing path, wrong schema, truncated file)."""


@dataclass
class StructureRecord:
    """One crystal: id, structure, target value (``nan`` when unknown, e.g. for prediction) and text."""

    id: str
    structure: Structure
    target: float = math.nan
    text: str | None = None


@dataclass
class Rejection:
    """A row that could not be used, with the stage that rejected it and why."""

    id: str
    stage: str
    reason: str


@dataclass
class LoadResult:
    """Records that loaded, and the rows that did not."""

    records: list[StructureRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, record_id: str, stage: str, reason: str) -> None:
        self.rejections.append(Rejection(str(record_id), stage, reason))


def load_records(
    path: str | Path, target: str | None, *, limit: int | None = None, require_target: bool = True
) -> LoadResult:
    """Read a data source into records.

    Args:
        path: JSON/JSON.gz file, CGCNN folder, CrysMMNet folder (or its ``description.csv``), table
            (``.csv``, ``.jsonl``, ``.parquet``, optionally ``.gz``), or ``jarvis:<dataset>``.
        target: Target key / column; ``None`` reads no target (prediction on unlabelled data). For a
            CrysMMNet root folder holding several ``<property>/`` folders, the property name.
        limit: Take only the first ``limit`` rows of the source (deterministic subset).
        require_target: Reject rows whose target is missing or not finite.

    Raises:
        DataSourceError: The source cannot be read at all.
    """
    if isinstance(path, str) and path.startswith(JARVIS_PREFIX):
        from crysfuse.data.jarvis_online import load_jarvis_dataset

        result = load_jarvis_dataset(path[len(JARVIS_PREFIX):], target, limit=limit, require_target=require_target)
        return _finish(result, path)
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"data path '{path}' does not exist")
    if path.is_dir():
        if (path / CRYSMMNET_FILE).is_file():
            result = _load_crysmmnet(path, target, limit=limit, require_target=require_target)
        elif (path / "id_prop.csv").is_file():
            result = _load_cgcnn_folder(path, target, limit=limit, require_target=require_target)
        else:
            properties = sorted(p.name for p in path.iterdir() if (p / CRYSMMNET_FILE).is_file())
            if not properties:
                raise DataSourceError(
                    f"folder '{path}' is neither a CGCNN folder (id_prop.csv + structure files) nor a CrysMMNet "
                    f"folder ({CRYSMMNET_FILE} + cif/)"
                )
            if target not in properties:
                raise DataSourceError(
                    f"'{path}' is a CrysMMNet root with the properties {properties}; pass one of them as the "
                    f"target, or the property folder itself as the data path (e.g. '{path / properties[0]}' "
                    "with target 'target')"
                )
            result = _load_crysmmnet(path / target, "target", limit=limit, require_target=require_target)
    elif path.name == CRYSMMNET_FILE:
        result = _load_crysmmnet(path.parent, target, limit=limit, require_target=require_target)
    elif path.name.endswith((".json", ".json.gz")):
        result = _load_jarvis_json(path, target, limit=limit, require_target=require_target)
    else:
        from crysfuse.data.tables import TABLE_SUFFIXES, load_table

        if not path.name.endswith(TABLE_SUFFIXES):
            raise DataSourceError(
                f"'{path}': unsupported data source; expected a .json/.json.gz file, a table "
                f"({', '.join(TABLE_SUFFIXES)}), a folder with id_prop.csv or {CRYSMMNET_FILE}, or jarvis:<dataset>"
            )
        result = load_table(path, target, limit=limit, require_target=require_target)
    return _finish(result, path)


def _finish(result: LoadResult, source: str | Path) -> LoadResult:
    _reject_duplicates(result)
    _reject_isolated_atoms(result)
    logger.info(
        "loaded %d records from %s (%d rejected)", len(result.records), source, len(result.rejections)
    )
    return result


def isolated_atom(structure: Structure, max_distance: float = MAX_NEIGHBOR_DISTANCE) -> str | None:
    """Why ``structure`` has an atom without any neighbour within ``max_distance`` Å, or ``None``.

    Periodic images count as neighbours. Structures the check cannot handle (non-finite coordinates, a
    singular cell) are left to the graph builder, which rejects them with its own reason.
    """
    import numpy as np
    import vesin

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


def _reject_isolated_atoms(result: LoadResult) -> None:
    kept = []
    for record in result.records:
        reason = isolated_atom(record.structure)
        if reason is not None:
            result.reject(record.id, "structure", reason)
        else:
            kept.append(record)
    result.records = kept


def read_json_any(path: Path) -> Any:
    """Read JSON from a plain or gzipped file, turning truncation/garbage into :class:`DataSourceError`."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataSourceError(f"'{path}' cannot be read as JSON: {err}") from err


def _load_jarvis_json(path: Path, target: str | None, *, limit: int | None, require_target: bool) -> LoadResult:
    rows = read_json_any(path)
    if isinstance(rows, dict):
        rows = next((v for v in rows.values() if isinstance(v, list)), None)
    if not isinstance(rows, list):
        raise DataSourceError(f"'{path}': expected a JSON list of records with an 'atoms' dict")
    return records_from_jarvis_rows(rows, target, limit=limit, require_target=require_target, source=str(path))


def records_from_jarvis_rows(
    rows: list[Any], target: str | None, *, limit: int | None, require_target: bool, source: str
) -> LoadResult:
    """JARVIS-style rows (dicts with ``atoms``, ``jid``/``id``, target keys, optional text) → records."""
    if limit is not None:
        rows = rows[:limit]
    if target is not None and require_target and rows:
        _check_target_present(rows, target, source)
    result = LoadResult()
    for position, row in enumerate(rows):
        if not isinstance(row, dict):
            result.reject(f"#{position}", "load", f"record is {type(row).__name__}, not an object")
            continue
        record_id = str(row.get("jid", row.get("id", f"#{position}")))
        if "atoms" not in row:
            result.reject(record_id, "load", "record has no 'atoms' field")
            continue
        try:
            structure = structure_from_jarvis_dict(row["atoms"])
        except Exception as err:  # noqa: BLE001 - any parse failure becomes a recorded rejection
            result.reject(record_id, "structure", f"unparseable atoms dict: {err}")
            continue
        value = _target_value(row, target, record_id, result, require_target)
        if value is None:
            continue
        text = row.get("text", row.get("description"))
        result.records.append(StructureRecord(record_id, structure, value, _text_or_none(text)))
    return result


def _check_target_present(rows: list[Any], target: str, source: str) -> None:
    """A target key that no row has is a misspelt target, not a data problem: say so once."""
    dicts = [r for r in rows if isinstance(r, dict)]
    if dicts and not any(target in r for r in dicts):
        keys = sorted({k for r in dicts[:100] for k in r if k != "atoms"})
        raise DataSourceError(f"'{source}': no record has the target '{target}'; keys found: {keys}")


def _text_or_none(text: Any, clean: bool = False) -> str | None:
    """A usable description, or ``None`` for missing / non-string / empty / whitespace-only text."""
    if not isinstance(text, str):
        return None
    if clean:
        from crysfuse.data.describe import clean_text

        text = clean_text(text)
    return text if text.strip() else None


def structure_from_jarvis_dict(atoms: dict[str, Any]) -> Structure:
    """jarvis-tools ``Atoms.to_dict()`` → pymatgen ``Structure`` (parsed by jarvis-tools, then converted)."""
    from jarvis.core.atoms import Atoms

    elements, coords = atoms.get("elements"), atoms.get("coords")
    if isinstance(elements, list) and isinstance(coords, list) and len(elements) != len(coords):
        raise ValueError(f"{len(elements)} elements for {len(coords)} coordinates")
    return checked_structure(Atoms.from_dict(atoms).pymatgen_converter())


def checked_structure(structure: Any) -> Structure:
    """``structure`` if it is a usable pymatgen ``Structure``; else ``ValueError`` saying why.

    Usable: at least one atom, only real elements (no dummy species such as ``Xx``), ordered (no partial
    occupancies: graphs and describers need one element per site).
    """
    from pymatgen.core.periodic_table import Element

    if not isinstance(structure, Structure):
        raise ValueError(f"parsing gave a {type(structure).__name__}, not a structure")
    if len(structure) == 0:
        raise ValueError("structure has no atoms")
    unknown = sorted({str(sp) for sp in structure.composition.elements if not isinstance(sp, Element)})
    if unknown:
        raise ValueError(f"unknown element(s) {unknown}")
    if not structure.is_ordered:
        raise ValueError("structure is disordered (partial occupancies); one element per site is needed")
    return structure


def _target_value(
    row: dict[str, Any], target: str | None, record_id: str, result: LoadResult, require_target: bool
) -> float | None:
    """Return the finite float target (``nan`` if not required), or ``None`` after recording a rejection."""
    if target is None:
        return math.nan
    raw = row.get(target)
    if isinstance(raw, str) and not raw.strip():
        raw = None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
        reason = f"target '{target}' is missing" if raw is None else f"target '{target}' is not a number: {raw!r}"
    else:
        reason = f"target '{target}' is not finite: {raw!r}"
    if math.isfinite(value) or not require_target:
        return value
    result.reject(record_id, "target", reason)
    return None


def _load_cgcnn_folder(
    folder: Path, target: str | None, *, limit: int | None, require_target: bool
) -> LoadResult:
    id_prop = folder / "id_prop.csv"
    if not id_prop.exists():
        raise DataSourceError(f"folder '{folder}' has no id_prop.csv (CGCNN layout: id_prop.csv + <id>.cif)")
    rows = [r for r in csv.reader(io.StringIO(read_source_text(id_prop), newline=""))
            if r and any(cell.strip() for cell in r)]
    if not rows:
        raise DataSourceError(f"'{id_prop}' is empty")
    header = _csv_header(rows[0])
    if header is not None:
        rows = rows[1:]
    column = _target_column(header, target, id_prop)
    if limit is not None:
        rows = rows[:limit]
    result = LoadResult()
    for row in rows:
        record_id = row[0].strip()
        structure_path = find_structure_file(folder, record_id)
        if structure_path is None:
            result.reject(record_id, "structure", f"no structure file for '{record_id}' in {folder}")
            continue
        try:
            structure = read_structure_file(structure_path)
        except Exception as err:  # noqa: BLE001
            result.reject(record_id, "structure", f"cannot parse {structure_path.name}: {err}")
            continue
        values = {"target": row[column] if column is not None and column < len(row) else None}
        value = _target_value(values, "target" if target is not None else None, record_id, result, require_target)
        if value is not None:
            result.records.append(StructureRecord(record_id, structure, value))
    return result


def _csv_header(first_row: list[str]) -> list[str] | None:
    """A first row whose second cell is not numeric is a header."""
    if len(first_row) < 2:
        return None
    try:
        float(first_row[1])
    except ValueError:
        return [cell.strip() for cell in first_row]
    return None


def _target_column(header: list[str] | None, target: str | None, id_prop: Path) -> int | None:
    if target is None:
        return None
    if header is None:
        return 1
    if target in header:
        return header.index(target)
    if target == "target":
        return 1
    raise DataSourceError(f"'{id_prop}' has no column '{target}'; columns: {header}")


def find_structure_file(folder: Path, record_id: str) -> Path | None:
    """The structure file for ``record_id`` in ``folder`` (``<id>.cif``, ``<id>.vasp``, ``POSCAR-<id>``...)."""
    for base in (folder, folder / "cif"):
        for suffix in STRUCTURE_SUFFIXES:
            candidate = base / f"{record_id}{suffix}"
            if candidate.is_file():
                return candidate
        candidate = base / f"POSCAR-{record_id}"
        if candidate.is_file():
            return candidate
    return None


def _reject_duplicates(result: LoadResult) -> None:
    seen: set[str] = set()
    kept = []
    for record in result.records:
        if record.id in seen:
            result.reject(record.id, "load", "duplicate id (the first occurrence is kept)")
            continue
        seen.add(record.id)
        kept.append(record)
    result.records = kept


# ------------------------------------------------------------------------------------------ file helpers


def read_source_text(path: Path) -> str:
    """The whole text of a (possibly gzipped) UTF-8 file; truncation and bad encodings are clear errors.

    A UTF-8 byte-order mark is dropped. A decoding error names the line and the offending byte.
    """
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataSourceError(f"'{path}' cannot be read (truncated or not a gzip file?): {err}") from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataSourceError(
            f"'{path}' is not valid UTF-8: byte 0x{data[err.start]:02x} on line {line}; save the file as UTF-8"
        ) from err


def csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file (a header row is required)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # CIF strings in a cell can be long
    try:
        reader = csv.DictReader(io.StringIO(read_source_text(path), newline=""))
        rows = list(reader)
    except csv.Error as err:
        raise DataSourceError(f"'{path}' is not a valid CSV file: {err}") from err
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise DataSourceError(f"'{path}' is empty (expected a header row)")
    if len(set(header)) != len(header):
        raise DataSourceError(f"'{path}': duplicate column names in the header {header}")
    rows = [{(k or "").strip(): v for k, v in row.items()} for row in rows]
    return header, rows


# -------------------------------------------------------------------------------------------- CrysMMNet


def _load_crysmmnet(folder: Path, target: str | None, *, limit: int | None, require_target: bool) -> LoadResult:
    """``<folder>/description.csv`` (``id, composition, target, description, ...``) + ``cif/<id>.cif``.

    ``target`` is a column of the CSV (CrysMMNet's own column is ``target``); the folder name (the property,
    e.g. ``shear_modulus``) also selects the ``target`` column. Descriptions are cleaned (numpy reprs such as
    ``np.int64(0)``, doubled words, whitespace).
    """
    table = folder / CRYSMMNET_FILE
    header, rows = csv_rows(table)
    if "id" not in header:
        raise DataSourceError(f"'{table}' has no 'id' column (CrysMMNet layout: id, composition, target, description)")
    if target is not None and target not in header:
        if target == folder.name and "target" in header:
            target = "target"
        elif require_target:
            raise DataSourceError(f"'{table}' has no column '{target}'; columns: {header} (CrysMMNet: 'target')")
    text_column = next((c for c in ("description", "text") if c in header), None)
    if limit is not None:
        rows = rows[:limit]
    result = LoadResult()
    for position, row in enumerate(rows):
        record_id = (row.get("id") or "").strip() or f"#{position}"
        structure_path = find_structure_file(folder, record_id)
        if structure_path is None:
            result.reject(record_id, "structure", f"no structure file for '{record_id}' in {folder / 'cif'}")
            continue
        try:
            structure = read_structure_file(structure_path)
        except Exception as err:  # noqa: BLE001 - any parse failure becomes a recorded rejection
            result.reject(record_id, "structure", f"cannot parse {structure_path.name}: {err}")
            continue
        value = _target_value(row, target, record_id, result, require_target)
        if value is None:
            continue
        text = _text_or_none(row.get(text_column) if text_column else None, clean=True)
        result.records.append(StructureRecord(record_id, structure, value, text))
    return result


def read_structure_file(path: Path) -> Structure:
    """A structure file (CIF, POSCAR, ...) that must hold at least one atom."""
    import warnings

    with warnings.catch_warnings():
        # pymatgen's notes on the CIF 'primitive' default and on rounded coordinates; parse errors still raise
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        structure = Structure.from_file(path)
    return checked_structure(structure)


# ------------------------------------------------------------------------------------------- Python API


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
    if isinstance(value, os.PathLike) or (isinstance(value, str) and "\n" not in value and Path(value).is_file()):
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


def _is_ase_atoms(value: Any) -> bool:
    try:
        from ase import Atoms as AseAtoms
    except ImportError:  # pragma: no cover - ase is a dependency
        return False
    return isinstance(value, AseAtoms)


def records_from_structures(
    structures: Sequence[Any],
    targets: Sequence[float] | None = None,
    ids: Sequence[str] | None = None,
    texts: Sequence[str | None] | None = None,
    *,
    require_target: bool | None = None,
) -> LoadResult:
    """Records from Python objects (pymatgen ``Structure``, jarvis ``Atoms``, ASE ``Atoms`` or dicts).

    Args:
        structures: one crystal per entry (anything :func:`structure_from_value` accepts).
        targets: one value per structure; ``None`` for unlabelled data (targets are ``nan``).
        ids: one id per structure; default ``"0"``, ``"1"``, ...
        texts: optional descriptions (``None`` / empty = describe it later).
        require_target: reject rows with a missing or non-finite target; default: when targets are given.

    Returns:
        A :class:`LoadResult`; unusable entries are rejections, duplicates included. Save it with
        :func:`save_records` to train on it with ``crysfuse train``.
    """
    n = len(structures)
    for name, values in (("targets", targets), ("ids", ids), ("texts", texts)):
        if values is not None and len(values) != n:
            raise DataSourceError(f"{name} has {len(values)} entries for {n} structures")
    if require_target is None:
        require_target = targets is not None
    result = LoadResult()
    for position, value in enumerate(structures):
        record_id = str(ids[position]) if ids is not None else str(position)
        try:
            structure = structure_from_value(value)
        except Exception as err:  # noqa: BLE001
            result.reject(record_id, "structure", f"unusable structure: {err}")
            continue
        row = {"target": targets[position]} if targets is not None else {}
        target_value = _target_value(row, "target" if targets is not None else None, record_id, result,
                                     require_target)
        if target_value is None:
            continue
        text = _text_or_none(texts[position]) if texts is not None else None
        result.records.append(StructureRecord(record_id, structure, target_value, text))
    return _finish(result, "Python objects")


def save_records(records: Iterable[StructureRecord], path: str | Path, target: str = "target") -> Path:
    """Write records as JARVIS-style JSON (``.json`` or ``.json.gz``) that :func:`load_records` reads back.

    Targets go under the key ``target``; texts under ``text`` (when present).
    """
    path = Path(path)
    rows = []
    for record in records:
        s = record.structure
        row: dict[str, Any] = {
            "id": record.id,
            "atoms": {
                "lattice_mat": s.lattice.matrix.tolist(),
                "coords": s.frac_coords.tolist(),
                "elements": [site.specie.symbol for site in s],
                "abc": list(s.lattice.abc),
                "angles": list(s.lattice.angles),
                "cartesian": False,
                "props": [""] * len(s),
            },
            target: None if math.isnan(record.target) else record.target,
        }
        if record.text is not None:
            row["text"] = record.text
        rows.append(row)
    payload = json.dumps(rows).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def read_text_file(path: str | Path) -> dict[str, str]:
    """Descriptions joined by id: JSONL ``{"id", "text"}`` or CSV with ``id`` and ``text``/``description``.

    Raises:
        DataSourceError: The file is missing, truncated or has neither layout.
    """
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"text file '{path}' does not exist")
    name = path.name.removesuffix(".gz")
    opener = gzip.open if path.name.endswith(".gz") else open
    texts: dict[str, str] = {}
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            if name.endswith(".csv"):
                reader = csv.DictReader(handle)
                column = next((c for c in ("text", "description") if c in (reader.fieldnames or [])), None)
                if "id" not in (reader.fieldnames or []) or column is None:
                    raise DataSourceError(f"'{path}': CSV needs 'id' and 'text' (or 'description') columns")
                for row in reader:
                    texts[str(row["id"])] = row[column]
            else:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if not isinstance(item, dict) or "id" not in item or "text" not in item:
                        raise DataSourceError(f"'{path}' line {number}: expected {{\"id\", \"text\"}}")
                    texts[str(item["id"])] = item["text"]
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataSourceError(f"'{path}' cannot be read: {err}") from err
    return texts


def iter_ids(records: Iterable[StructureRecord]) -> list[str]:
    """The ids of ``records`` in order."""
    return [r.id for r in records]
