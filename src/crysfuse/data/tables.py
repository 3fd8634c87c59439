"""Tables of crystals: CSV / JSONL / Parquet (CSV and JSONL optionally gzipped).

One row per crystal. Columns (first match wins, names are case-sensitive):

* structure: ``structure``, ``cif``, ``atoms``, ``poscar``, ``pymatgen_structure`` — a CIF string, a POSCAR
  string, or a pymatgen ``Structure.as_dict()`` / jarvis ``Atoms.to_dict()`` dict (a JSON string in CSV);
* id: ``id``, ``jid``, ``material_id``, ``mp_id``, ``name`` (else the row number, ``#0``, ``#1``, ...);
* text (optional): ``text``, ``description``;
* the target: the column named by ``--target``.

Parquet needs pyarrow (``pip install 'crysfuse[tables]'``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from pathlib import Path
from typing import Any

from crysfuse.data.records import (
    DataSourceError,
    LoadResult,
    add_record,
    csv_rows,
    parse_structure,
    read_source_text,
    text_or_none,
)
from crysfuse.data.structures import structure_from_value

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".parquet")
STRUCTURE_COLUMNS = ("structure", "cif", "atoms", "poscar", "pymatgen_structure")
ID_COLUMNS = ("id", "jid", "material_id", "mp_id", "name")
TEXT_COLUMNS = ("text", "description")


def load_table(path: Path, target: str | None, *, limit: int | None, require_target: bool) -> LoadResult:
    """Read a CSV / JSONL / Parquet table of crystals (see the module docstring for the columns)."""
    result = LoadResult()
    name = path.name.lower()
    if name.endswith(".parquet"):
        columns, rows = _parquet_rows(path)
    elif name.endswith((".csv", ".csv.gz")):
        columns, rows = _csv_rows(path)
    else:
        columns, rows = _jsonl_rows(path, result)
    if not rows and not result.rejections:
        raise DataSourceError(f"'{path}' has no rows")
    structure_column = next((c for c in STRUCTURE_COLUMNS if c in columns), None)
    if structure_column is None:
        raise DataSourceError(
            f"'{path}' has no structure column; expected one of {list(STRUCTURE_COLUMNS)} "
            f"(CIF string or pymatgen/jarvis dict), columns: {columns}"
        )
    if target is not None and require_target and target not in columns:
        raise DataSourceError(f"'{path}' has no column '{target}' for the target; columns: {columns}")
    id_column = next((c for c in ID_COLUMNS if c in columns), None)
    text_column = next((c for c in TEXT_COLUMNS if c in columns), None)
    if limit is not None:
        rows = rows[:limit]
    for position, row in rows:
        raw_id = row.get(id_column) if id_column else None
        record_id = str(raw_id).strip() if raw_id not in (None, "") else f"#{position}"
        structure = parse_structure(result, record_id, lambda: structure_from_value(row.get(structure_column)),  # noqa: B023
                                    lambda why: f"column '{structure_column}': {why}")
        text = text_or_none(row.get(text_column)) if text_column else None
        add_record(result, record_id, structure, row, target, require_target, text)
    return result


def _jsonl_rows(path: Path, result: LoadResult) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Rows of a JSON-lines file; a line that is not a JSON object becomes a rejection (``line <n>``)."""
    rows: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(read_source_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            result.reject(f"line {number}", "load", f"not valid JSON (truncated line?): {err}")
            continue
        if not isinstance(item, dict):
            result.reject(f"line {number}", "load", f"line is a JSON {type(item).__name__}, not an object")
            continue
        columns.update(dict.fromkeys(item))
        rows.append((len(rows), item))
    return list(columns), rows


def _parquet_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DataSourceError(
            f"reading '{path}' needs pyarrow, which is not installed: pip install 'crysfuse[tables]' "
            "(or pip install pyarrow)"
        ) from err
    try:
        table = pq.read_table(path)
    except Exception as err:
        raise DataSourceError(f"'{path}' cannot be read as Parquet: {err}") from err
    return list(table.column_names), list(enumerate(table.to_pylist()))


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    columns, rows = csv_rows(path)
    return columns, list(enumerate(rows))


def write_table(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows (dicts) as CSV, JSONL or Parquet, by suffix; dict cells become JSON strings in CSV."""
    path = Path(path)
    name = path.name.lower()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
        text = buffer.getvalue()
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path
