"""Descriptions files joined by record id (JSONL ``{"id", "text"}`` or CSV ``id,text``, optionally gzipped)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from crysfuse.data.records import DataSourceError


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
