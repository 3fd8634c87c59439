"""CrysMMNet layout: ``<root>/<property>/description.csv`` (``id, composition, target, description, ...``)
next to ``cif/<id>.cif``."""

from __future__ import annotations

from pathlib import Path

from crysfuse.data.records import (
    DataSourceError,
    LoadResult,
    add_record,
    csv_rows,
    structure_for_id,
    text_or_none,
)

CRYSMMNET_FILE = "description.csv"


def load_crysmmnet(folder: Path, target: str | None, *, limit: int | None, require_target: bool) -> LoadResult:
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
        structure = structure_for_id(folder, record_id, result)
        text = text_or_none(row.get(text_column) if text_column else None, clean=True)
        add_record(result, record_id, structure, row, target, require_target, text)
    return result
