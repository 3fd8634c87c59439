"""Readers that turn crystal data on disk into :class:`StructureRecord` objects.

Supported sources:

* JARVIS-style JSON / JSON.gz: a list of records with an ``atoms`` dict in jarvis-tools'
  ``Atoms.to_dict()`` schema, an id under ``jid`` or ``id``, and target keys (``dft_3d``, ``megnet``,
  ``mp36k.json.gz``). An optional ``text``/``description`` field is used as the description.
* CGCNN-style folders: ``id_prop.csv`` (``id,value`` rows, optionally with a header naming columns) next to
  ``<id>.cif`` / ``<id>.vasp`` / ``<id>.poscar`` / ``POSCAR-<id>`` structure files.

Rows that cannot be used are never dropped silently: each becomes a :class:`Rejection` (id + reason).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pymatgen.core import Structure

logger = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".POSCAR", "")


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
        path: JSON/JSON.gz file or CGCNN folder.
        target: Target key; ``None`` reads no target (prediction on unlabelled data).
        limit: Take only the first ``limit`` rows of the source (deterministic subset).
        require_target: Reject rows whose target is missing or not finite.

    Raises:
        DataSourceError: The source cannot be read at all.
    """
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"data path '{path}' does not exist")
    if path.is_dir():
        result = _load_cgcnn_folder(path, target, limit=limit, require_target=require_target)
    elif path.name.endswith((".json", ".json.gz")):
        result = _load_jarvis_json(path, target, limit=limit, require_target=require_target)
    else:
        raise DataSourceError(
            f"'{path}': unsupported data source; expected a .json/.json.gz file or a folder with id_prop.csv"
        )
    _reject_duplicates(result)
    logger.info(
        "loaded %d records from %s (%d rejected)", len(result.records), path, len(result.rejections)
    )
    return result


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
    if limit is not None:
        rows = rows[:limit]
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
        result.records.append(StructureRecord(record_id, structure, value, text if isinstance(text, str) else None))
    return result


def structure_from_jarvis_dict(atoms: dict[str, Any]) -> Structure:
    """jarvis-tools ``Atoms.to_dict()`` → pymatgen ``Structure`` (parsed by jarvis-tools, then converted)."""
    from jarvis.core.atoms import Atoms

    return Atoms.from_dict(atoms).pymatgen_converter()


def _target_value(
    row: dict[str, Any], target: str | None, record_id: str, result: LoadResult, require_target: bool
) -> float | None:
    """Return the finite float target (``nan`` if not required), or ``None`` after recording a rejection."""
    if target is None:
        return math.nan
    raw = row.get(target)
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
    with open(id_prop, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r and any(cell.strip() for cell in r)]
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
            structure = Structure.from_file(structure_path)
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


def read_text_file(path: str | Path) -> dict[str, str]:
    """Descriptions joined by id: JSONL ``{"id", "text"}`` or CSV with ``id`` and ``text``/``description``.

    Raises:
        DataSourceError: The file is missing, truncated or has neither layout.
    """
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"text file '{path}' does not exist")
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
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
