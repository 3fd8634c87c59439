"""JARVIS-style JSON: a list of records with an ``atoms`` dict in jarvis-tools' ``Atoms.to_dict()`` schema,
an id under ``jid`` or ``id``, target keys (``dft_3d``, ``megnet``, ``mp36k.json.gz``) and an optional
``text``/``description`` field. Read from a ``.json``/``.json.gz`` file here, and from jarvis-tools' data set
zips by :mod:`crysfuse.data.jarvis_online`."""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Any

from crysfuse.data.records import (
    DataSourceError,
    LoadResult,
    add_record,
    parse_structure,
    read_json_any,
    text_or_none,
)
from crysfuse.data.structures import structure_from_jarvis_dict
from crysfuse.data.verdicts import CheckedStore, checks_key, jarvis_key_data

JSON_SUFFIXES = (".json", ".json.gz")


def rows_list(rows: Any, source: str | Path) -> list[Any]:
    """The list of records in parsed JSON (a list, or the first list value of an object)."""
    if isinstance(rows, dict):
        rows = next((v for v in rows.values() if isinstance(v, list)), None)
    if not isinstance(rows, list):
        raise DataSourceError(f"'{source}': expected a JSON list of records with an 'atoms' dict")
    return rows


def load_jarvis_json(
    path: Path, target: str | None, *, limit: int | None, require_target: bool, ids: Collection[str] | None = None,
    checked: CheckedStore | None = None,
) -> LoadResult:
    """Records of a JARVIS-style ``.json`` / ``.json.gz`` file."""
    rows = rows_list(read_json_any(path), path)
    return records_from_jarvis_rows(rows, target, limit=limit, require_target=require_target, source=str(path),
                                    ids=ids, checked=checked)


def records_from_jarvis_rows(
    rows: list[Any], target: str | None, *, limit: int | None, require_target: bool, source: str,
    ids: Collection[str] | None = None, checked: CheckedStore | None = None,
) -> LoadResult:
    """JARVIS-style rows (dicts with ``atoms``, ``jid``/``id``, target keys, optional text) → records
    (only those with ``ids`` when given: other rows are skipped before their structures are parsed).

    With ``checked`` (warm start), a row whose structure ``checked`` knows passed the checks before is kept
    unparsed (parsed on first access); the others are parsed now and carry their key data."""
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
        key_data = jarvis_key_data(row["atoms"]) if checked is not None else None
        text = text_or_none(row.get("text", row.get("description")))
        if key_data is not None and checked is not None and checks_key(key_data) in checked:
            add_record(result, record_id, None, row, target, require_target, text,
                       parse=partial(structure_from_jarvis_dict, row["atoms"]), key_data=key_data)
            continue
        structure = parse_structure(result, record_id, partial(structure_from_jarvis_dict, row["atoms"]),
                                    lambda why: f"unparseable atoms dict: {why}")
        add_record(result, record_id, structure, row, target, require_target, text, key_data=key_data)
    return result


def _check_target_present(rows: list[Any], target: str, source: str) -> None:
    """A target key that no row has is a misspelt target, not a data problem: say so once."""
    dicts = [r for r in rows if isinstance(r, dict)]
    if dicts and not any(target in r for r in dicts):
        keys = sorted({k for r in dicts[:100] for k in r if k != "atoms"})
        raise DataSourceError(f"'{source}': no record has the target '{target}'; keys found: {keys}")
