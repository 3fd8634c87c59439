"""CGCNN layout: a folder with ``id_prop.csv`` (``id,target``; with a header, any named column) and one
structure file per id."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from crysfuse.data.records import (
    DataSourceError,
    LoadResult,
    add_record,
    read_source_text,
    structure_for_id,
)

ID_PROP_FILE = "id_prop.csv"


def load_cgcnn_folder(
    folder: Path, target: str | None, *, limit: int | None, require_target: bool
) -> LoadResult:
    """Records of ``id_prop.csv`` (``id,value[,...]``, optional header naming the columns) and the structure
    file of each id in ``folder`` (``<id>.cif``/``.vasp``/POSCAR, also under ``cif/``)."""
    id_prop = folder / ID_PROP_FILE
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
        structure = structure_for_id(folder, record_id, result)
        values = {"target": row[column] if column is not None and column < len(row) else None}
        add_record(result, record_id, structure, values, "target" if target is not None else None, require_target)
    return result


def default_cgcnn_target(folder: Path) -> str | None:
    """``"target"`` for a CGCNN folder whose ``id_prop.csv`` has no header and one value column (``id,value``):
    that column is the only possible target, so commands need no ``--target``; ``None`` otherwise."""
    id_prop = folder / ID_PROP_FILE
    if not id_prop.is_file():
        return None
    for row in csv.reader(io.StringIO(read_source_text(id_prop), newline="")):
        if row and any(cell.strip() for cell in row):
            return "target" if len(row) == 2 and _csv_header(row) is None else None
    return None


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
