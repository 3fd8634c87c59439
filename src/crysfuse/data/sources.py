"""Readers that turn crystal data into :class:`StructureRecord` objects.

Supported sources (see ``docs/data.md`` for each layout with an example):

* JARVIS-style JSON / JSON.gz: a list of records with an ``atoms`` dict in jarvis-tools'
  ``Atoms.to_dict()`` schema, an id under ``jid`` or ``id``, and target keys (``dft_3d``, ``megnet``,
  ``mp36k.json.gz``). An optional ``text``/``description`` field is used as the description.
* CGCNN-style folders: ``id_prop.csv`` (``id,value`` rows, optionally with a header naming columns) next to
  ``<id>.cif`` / ``<id>.vasp`` / ``<id>.poscar`` / ``POSCAR-<id>`` structure files (:mod:`crysfuse.data.cgcnn`).
* CrysMMNet folders: ``<root>/<property>/description.csv`` (``id, composition, target, description, ...``)
  next to ``cif/<id>.cif``; descriptions are cleaned with :func:`crysfuse.data.describe.clean_text`.
* Tables (CSV / JSONL / Parquet, optionally gzipped) with a CIF-string or pymatgen/jarvis-dict structure
  column (:mod:`crysfuse.data.tables`).
* ``jarvis:<dataset>`` through jarvis-tools' figshare downloader and cache (:mod:`crysfuse.data.jarvis_online`).
* In Python: :func:`crysfuse.data.objects.records_from_structures` on pymatgen ``Structure`` / jarvis ``Atoms`` / ASE ``Atoms``.

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
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from crysfuse.data.structures import (  # noqa: F401 - re-exported: readers elsewhere import them from here
    checked_structure,
    isolated_atom,
    read_structure_file,
    structure_from_jarvis_dict,
    structure_from_value,
)

logger = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".POSCAR", "")
CRYSMMNET_FILE = "description.csv"
JARVIS_PREFIX = "jarvis:"
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
    path: str | Path,
    target: str | None,
    *,
    limit: int | None = None,
    require_target: bool = True,
    ids: Collection[str] | None = None,
) -> LoadResult:
    """Read a data source into records.

    Args:
        path: JSON/JSON.gz file, CGCNN folder, CrysMMNet folder (or its ``description.csv``), table
            (``.csv``, ``.jsonl``, ``.parquet``, optionally ``.gz``), or ``jarvis:<dataset>``.
        target: Target key / column; ``None`` reads no target (prediction on unlabelled data). For a
            CrysMMNet root folder holding several ``<property>/`` folders, the property name.
        limit: Take only the first ``limit`` rows of the source (deterministic subset).
        require_target: Reject rows whose target is missing or not finite.
        ids: Keep only the records with these ids (``None``: all). JARVIS-style rows outside them are skipped
            before their structures are parsed; other sources are filtered after reading. Applied after
            ``limit``; rows left out this way are not rejections.

    Raises:
        DataSourceError: The source cannot be read at all.
    """
    from crysfuse.data.cgcnn import load_cgcnn_folder
    from crysfuse.data.crysmmnet import load_crysmmnet

    ids = None if ids is None else frozenset(ids)
    if isinstance(path, str) and path.startswith(JARVIS_PREFIX):
        from crysfuse.data.jarvis_online import load_jarvis_dataset

        result = load_jarvis_dataset(path[len(JARVIS_PREFIX):], target, limit=limit, require_target=require_target,
                                     ids=ids)
        return _finish(result, path, ids)
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"data path '{path}' does not exist")
    if path.is_dir():
        if (path / CRYSMMNET_FILE).is_file():
            result = load_crysmmnet(path, target, limit=limit, require_target=require_target)
        elif (path / "id_prop.csv").is_file():
            result = load_cgcnn_folder(path, target, limit=limit, require_target=require_target)
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
            result = load_crysmmnet(path / target, "target", limit=limit, require_target=require_target)
    elif path.name == CRYSMMNET_FILE:
        result = load_crysmmnet(path.parent, target, limit=limit, require_target=require_target)
    elif path.name.endswith((".json", ".json.gz")):
        result = _load_jarvis_json(path, target, limit=limit, require_target=require_target, ids=ids)
    else:
        from crysfuse.data.tables import TABLE_SUFFIXES, load_table

        if not path.name.endswith(TABLE_SUFFIXES):
            raise DataSourceError(
                f"'{path}': unsupported data source; expected a .json/.json.gz file, a table "
                f"({', '.join(TABLE_SUFFIXES)}), a folder with id_prop.csv or {CRYSMMNET_FILE}, or jarvis:<dataset>"
            )
        result = load_table(path, target, limit=limit, require_target=require_target)
    return _finish(result, path, ids)


def _finish(result: LoadResult, source: str | Path, ids: frozenset[str] | None = None) -> LoadResult:
    if ids is not None:  # readers that cannot skip rows early read everything; keep the wanted ids here
        result.records = [r for r in result.records if r.id in ids]
        result.rejections = [r for r in result.rejections if r.id in ids]
    _reject_duplicates(result)
    _reject_isolated_atoms(result)
    logger.info(
        "loaded %d records from %s (%d rejected)", len(result.records), source, len(result.rejections)
    )
    return result


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


def _load_jarvis_json(
    path: Path, target: str | None, *, limit: int | None, require_target: bool, ids: Collection[str] | None = None
) -> LoadResult:
    rows = read_json_any(path)
    if isinstance(rows, dict):
        rows = next((v for v in rows.values() if isinstance(v, list)), None)
    if not isinstance(rows, list):
        raise DataSourceError(f"'{path}': expected a JSON list of records with an 'atoms' dict")
    return records_from_jarvis_rows(rows, target, limit=limit, require_target=require_target, source=str(path),
                                    ids=ids)


def records_from_jarvis_rows(
    rows: list[Any], target: str | None, *, limit: int | None, require_target: bool, source: str,
    ids: Collection[str] | None = None,
) -> LoadResult:
    """JARVIS-style rows (dicts with ``atoms``, ``jid``/``id``, target keys, optional text) → records
    (only those with ``ids`` when given: other rows are skipped before their structures are parsed)."""
    if limit is not None:
        rows = rows[:limit]
    if ids is not None:
        wanted = frozenset(ids)
        rows = [r for r in rows if not isinstance(r, dict) or str(r.get("jid", r.get("id"))) in wanted]
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


def structure_for_id(folder: Path, record_id: str, result: LoadResult) -> Structure | None:
    """The parsed structure file of ``record_id`` in ``folder`` (or ``folder/cif``), or ``None`` after
    recording why it is missing or unreadable."""
    structure_path = find_structure_file(folder, record_id)
    if structure_path is None:
        result.reject(record_id, "structure", f"no structure file for '{record_id}' in {folder}")
        return None
    try:
        return read_structure_file(structure_path)
    except Exception as err:  # noqa: BLE001 - any parse failure becomes a recorded rejection
        result.reject(record_id, "structure", f"cannot parse {structure_path.name}: {err}")
        return None


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


# ------------------------------------------------------------------------------------------- Python API
