"""Records from Python objects (the notebook path), and writing records back as JARVIS-style JSON."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from crysfuse.data.records import (
    DataSourceError,
    LoadResult,
    StructureRecord,
    add_record,
    finish,
    parse_structure,
    text_or_none,
)
from crysfuse.data.structures import jarvis_atoms_dict, structure_from_value


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
    for position, item in enumerate(structures):
        record_id = str(ids[position]) if ids is not None else str(position)
        structure = parse_structure(result, record_id, lambda: structure_from_value(item),  # noqa: B023 (called at once)
                                    lambda why: f"unusable structure: {why}")
        row = {"target": targets[position]} if targets is not None else {}
        text = text_or_none(texts[position]) if texts is not None else None
        add_record(result, record_id, structure, row, "target" if targets is not None else None, require_target, text)
    return finish(result, "Python objects")


def save_records(records: Iterable[StructureRecord], path: str | Path, target: str = "target") -> Path:
    """Write records as JARVIS-style JSON (``.json`` or ``.json.gz``) that :func:`load_records` reads back.

    Targets go under the key ``target``; texts under ``text`` (when present).
    """
    path = Path(path)
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "id": record.id,
            "atoms": jarvis_atoms_dict(record.structure),
            target: None if math.isnan(record.target) else record.target,
        }
        if record.text is not None:
            row["text"] = record.text
        rows.append(row)
    payload = json.dumps(rows).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path
