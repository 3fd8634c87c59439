"""The record types every reader produces, and the helpers the readers share.

A reader (:mod:`~crysfuse.data.jarvis_json`, :mod:`~crysfuse.data.cgcnn`, :mod:`~crysfuse.data.crysmmnet`,
:mod:`~crysfuse.data.tables`, :mod:`~crysfuse.data.jarvis_online`, :mod:`~crysfuse.data.objects`) turns one
kind of source into a :class:`LoadResult`: :class:`StructureRecord` objects plus a :class:`Rejection` for every
row that cannot be used. Readers depend on this module only, never on the dispatcher
(:mod:`~crysfuse.data.sources`) that picks them.

Empty or whitespace-only descriptions count as missing (``text=None``), so a describer can fill them in.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
import numbers
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from crysfuse.data.describers import clean_text
from crysfuse.data.structures import isolated_atom, read_structure_file
from crysfuse.data.verdicts import CheckedStore, structure_key_data

logger = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".POSCAR", "")


class DataSourceError(ValueError):
    """The source as a whole cannot be read (missing path, wrong schema, truncated file)."""


class StructureRecord:
    """One crystal: id, structure, target value (``nan`` when unknown, e.g. for prediction) and text.

    The structure may be given as ``parse``, a function called on first access (warm start, see
    :mod:`~crysfuse.data.verdicts`); ``key_data`` are the bytes the graph cache key hashes, when the reader
    knows them without the structure.
    """

    __slots__ = ("_parse", "_structure", "id", "key_data", "target", "text")

    def __init__(self, id: str, structure: Structure | None = None, target: float = math.nan,
                 text: str | None = None, *, parse: Callable[[], Structure] | None = None,
                 key_data: bytes | None = None) -> None:
        if structure is None and parse is None:
            raise TypeError("StructureRecord needs a structure or a parse function")
        self.id, self._structure, self._parse = id, structure, parse
        self.target, self.text, self.key_data = target, text, key_data

    @property
    def structure(self) -> Structure:
        """The structure (parsed now if it was not yet)."""
        if self._structure is None:
            assert self._parse is not None
            self._structure, self._parse = self._parse(), None
        return self._structure

    @structure.setter
    def structure(self, value: Structure) -> None:
        self._structure, self._parse, self.key_data = value, None, None

    @property
    def parsed(self) -> bool:
        """Whether the structure is in memory (not still waiting for its first access)."""
        return self._structure is not None

    def _fields(self) -> tuple[Any, ...]:
        return self.id, self.structure, self.target, self.text

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        structure = repr(self._structure) if self.parsed else "<not parsed yet>"
        return f"StructureRecord(id={self.id!r}, structure={structure}, target={self.target!r}, text={self.text!r})"


class StructuresOf(Mapping[str, Structure]):
    """Structures by record id, each parsed only when it is looked up (what rebuilding a damaged graph
    cache entry needs, without parsing the others)."""

    def __init__(self, records: Iterable[StructureRecord]) -> None:
        self._records = {r.id: r for r in records}

    def __getitem__(self, record_id: str) -> Structure:
        return self._records[record_id].structure

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


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


def text_or_none(text: Any, clean: bool = False) -> str | None:
    """A usable description, or ``None`` for missing / non-string / empty / whitespace-only text."""
    if not isinstance(text, str):
        return None
    if clean:
        text = clean_text(text)
    return text if text.strip() else None


def target_value(
    row: dict[str, Any], target: str | None, record_id: str, result: LoadResult, require_target: bool
) -> float | None:
    """Return the finite float target (``nan`` if not required), or ``None`` after recording a rejection."""
    if target is None:
        return math.nan
    raw = row.get(target)
    if isinstance(raw, str) and not raw.strip():
        raw = None
    if raw is not None and not _numeric_kind(raw):
        result.reject(record_id, "target", f"target '{target}' is a {_kind_name(raw)}, not a number: {raw!r}")
        return None
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


def _numeric_kind(raw: Any) -> bool:
    """A number (not a boolean) or a string to parse as one; JSON ``true``, lists and objects are not."""
    return isinstance(raw, str) or (isinstance(raw, numbers.Real) and not isinstance(raw, bool)
                                    and type(raw).__name__ != "bool_")


def _kind_name(raw: Any) -> str:
    names = {bool: "boolean", list: "list", dict: "object (mapping)", tuple: "list"}
    return next((name for kind, name in names.items() if isinstance(raw, kind)),
                "boolean" if type(raw).__name__ == "bool_" else type(raw).__name__)


def error_sentence(err: BaseException) -> str:
    """An exception as words a person understands: a ``KeyError('props')`` (whose text is only ``'props'``)
    becomes "the key 'props' is missing", an exception without a message names its kind."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        return f"the key {err.args[0]!r} is missing"
    if isinstance(err, IndexError):
        return f"a list is shorter than expected ({err})" if str(err) else "a list is shorter than expected"
    text = str(err).strip()
    if not text:
        return f"{type(err).__name__} (no message)"
    return text if isinstance(err, ValueError) else f"{text} ({type(err).__name__})"


def parse_structure(result: LoadResult, record_id: str, parse: Callable[[], Structure],
                    reason: Callable[[str], str]) -> Structure | None:
    """``parse()``, or ``None`` after recording ``reason(sentence)`` as a rejection (stage ``structure``), the
    sentence being :func:`error_sentence` of the error."""
    try:
        return parse()
    except Exception as err:  # noqa: BLE001 - any parse failure becomes a recorded rejection
        result.reject(record_id, "structure", reason(error_sentence(err)))
        return None


def add_record(result: LoadResult, record_id: str, structure: Structure | None, row: dict[str, Any],
               target: str | None, require_target: bool, text: str | None = None, *,
               parse: Callable[[], Structure] | None = None, key_data: bytes | None = None) -> None:
    """The last step of every reader: the record of one row, unless its structure is missing (already
    rejected) or its target is (rejected here, see :func:`target_value`). ``parse`` and ``key_data``: see
    :class:`StructureRecord`."""
    if structure is None and parse is None:
        return
    value = target_value(row, target, record_id, result, require_target)
    if value is not None:
        result.records.append(StructureRecord(record_id, structure, value, text, parse=parse, key_data=key_data))


def finish(result: LoadResult, source: str | Path, ids: frozenset[str] | None = None,
           checked: CheckedStore | None = None) -> LoadResult:
    """The checks every source gets after reading: only the wanted ``ids`` (when given), duplicate ids and
    isolated atoms rejected (not for records still unparsed: ``checked`` knew they pass); logs the counts.
    The records that passed are remembered in ``checked``."""
    if ids is not None:  # readers that cannot skip rows early read everything; keep the wanted ids here
        result.records = [r for r in result.records if r.id in ids]
        result.rejections = [r for r in result.rejections if r.id in ids]
    _reject_duplicates(result)
    _reject_isolated_atoms(result)
    if checked is not None:
        _remember_checked(result, checked)
    logger.info(
        "loaded %d records from %s (%d rejected)", len(result.records), source, len(result.rejections)
    )
    return result


def _remember_checked(result: LoadResult, checked: CheckedStore) -> None:
    """Key data is kept (and remembered) only where it equals the parsed structure's own."""
    for record in result.records:
        if record.key_data is not None and record.parsed:
            if structure_key_data(record.structure) == record.key_data:
                checked.add(record.key_data)
            else:
                record.key_data = None
    checked.save()


def _reject_isolated_atoms(result: LoadResult) -> None:
    kept = []
    for record in result.records:
        reason = isolated_atom(record.structure) if record.parsed else None
        if reason is not None:
            result.reject(record.id, "structure", reason)
        else:
            kept.append(record)
    result.records = kept


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


# ------------------------------------------------------------------------------------------- structure files


def structure_for_id(folder: Path, record_id: str, result: LoadResult) -> Structure | None:
    """The parsed structure file of ``record_id`` in ``folder`` (or ``folder/cif``), or ``None`` after
    recording why it is missing or unreadable. An id that would lead out of ``folder`` (``../other``, an
    absolute path) is rejected: structure files must lie inside the folder."""
    if escapes_folder(record_id):
        result.reject(record_id, "structure", f"the id '{record_id}' points outside the data folder {folder}; "
                                              "structure files must be inside it")
        return None
    structure_path = find_structure_file(folder, record_id)
    if structure_path is None:
        result.reject(record_id, "structure", f"no structure file for '{record_id}' in {folder}")
        return None
    try:
        return read_structure_file(structure_path)
    except Exception as err:  # noqa: BLE001 - any parse failure becomes a recorded rejection
        result.reject(record_id, "structure", f"cannot parse {structure_path.name}: {error_sentence(err)}")
        return None


def escapes_folder(record_id: str) -> bool:
    """Whether the file name made from ``record_id`` could resolve outside its folder (an absolute path, a
    ``..`` part, or a drive)."""
    normalised = record_id.replace("\\", "/")
    parts = normalised.split("/")
    return normalised.startswith("/") or ".." in parts or ":" in parts[0]


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


# ------------------------------------------------------------------------------------------------ text files


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


def read_json_any(path: Path) -> Any:
    """Read JSON from a plain or gzipped file, turning truncation/garbage into :class:`DataSourceError`."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataSourceError(f"'{path}' cannot be read as JSON: {err}") from err
