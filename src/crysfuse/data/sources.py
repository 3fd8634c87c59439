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

from collections.abc import Collection
from pathlib import Path

from crysfuse.config import Config
from crysfuse.data.cache import default_cache_dir
from crysfuse.data.cgcnn import ID_PROP_FILE, default_cgcnn_target, load_cgcnn_folder
from crysfuse.data.crysmmnet import CRYSMMNET_FILE, load_crysmmnet
from crysfuse.data.jarvis_json import JSON_SUFFIXES, load_jarvis_json
from crysfuse.data.jarvis_online import load_jarvis_dataset
from crysfuse.data.records import DataSourceError, LoadResult, Rejection, StructureRecord, finish
from crysfuse.data.structures import structure_from_jarvis_dict, structure_from_value
from crysfuse.data.tables import TABLE_SUFFIXES, load_table
from crysfuse.data.verdicts import CheckedStore, warm_start_enabled

# The record types are re-exported: ``from crysfuse.data.sources import load_records, DataSourceError`` is the
# documented way in; readers themselves import them from crysfuse.data.records.
__all__ = [
    "JARVIS_PREFIX",
    "DataSourceError",
    "LoadResult",
    "Rejection",
    "StructureRecord",
    "default_target",
    "load_config_records",
    "load_records",
    "structure_from_jarvis_dict",
    "structure_from_value",
    "with_default_target",
]

JARVIS_PREFIX = "jarvis:"


def load_records(
    path: str | Path,
    target: str | None,
    *,
    limit: int | None = None,
    require_target: bool = True,
    ids: Collection[str] | None = None,
    checks_dir: str | Path | None = None,
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
        checks_dir: Cache folder of the warm start (:mod:`~crysfuse.data.verdicts`): JARVIS-style JSON
            records whose structures passed the checks in an earlier read are not parsed until used
            (``None``, or ``CRYSFUSE_WARM_START=0``: every structure parsed and checked now).

    Raises:
        DataSourceError: The source cannot be read at all.
    """
    ids = None if ids is None else frozenset(ids)
    if isinstance(path, str) and path.startswith(JARVIS_PREFIX):
        result = load_jarvis_dataset(path[len(JARVIS_PREFIX):], target, limit=limit, require_target=require_target,
                                     ids=ids)
        return finish(result, path, ids)
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"data path '{path}' does not exist")
    if path.is_dir():
        result = _load_folder(path, target, limit=limit, require_target=require_target)
    elif path.name == CRYSMMNET_FILE:
        result = load_crysmmnet(path.parent, target, limit=limit, require_target=require_target)
    elif path.name.endswith(JSON_SUFFIXES):
        checked = CheckedStore(checks_dir) if checks_dir is not None and warm_start_enabled() else None
        result = load_jarvis_json(path, target, limit=limit, require_target=require_target, ids=ids,
                                  checked=checked)
        return finish(result, path, ids, checked)
    elif path.name.endswith(TABLE_SUFFIXES):
        result = load_table(path, target, limit=limit, require_target=require_target)
    else:
        raise DataSourceError(
            f"'{path}': unsupported data source; expected a .json/.json.gz file, a table "
            f"({', '.join(TABLE_SUFFIXES)}), a folder with {ID_PROP_FILE} or {CRYSMMNET_FILE}, or jarvis:<dataset>"
        )
    return finish(result, path, ids)


def _load_folder(path: Path, target: str | None, *, limit: int | None, require_target: bool) -> LoadResult:
    """A CrysMMNet property folder, a CGCNN folder, or a CrysMMNet root whose property is ``target``."""
    if (path / CRYSMMNET_FILE).is_file():
        return load_crysmmnet(path, target, limit=limit, require_target=require_target)
    if (path / ID_PROP_FILE).is_file():
        return load_cgcnn_folder(path, target, limit=limit, require_target=require_target)
    properties = sorted(p.name for p in path.iterdir() if (p / CRYSMMNET_FILE).is_file())
    if not properties:
        raise DataSourceError(
            f"folder '{path}' is neither a CGCNN folder ({ID_PROP_FILE} + structure files) nor a CrysMMNet "
            f"folder ({CRYSMMNET_FILE} + cif/)"
        )
    if target not in properties:
        raise DataSourceError(
            f"'{path}' is a CrysMMNet root with the properties {properties}; pass one of them as the "
            f"target, or the property folder itself as the data path (e.g. '{path / properties[0]}' "
            "with target 'target')"
        )
    return load_crysmmnet(path / target, "target", limit=limit, require_target=require_target)


def default_target(path: str | Path | None) -> str | None:
    """The target a source implies when none is given: the one value column of a headerless CGCNN
    ``id_prop.csv`` (``"target"``); ``None`` for every other source (their targets must be named)."""
    if not path or (isinstance(path, str) and path.startswith(JARVIS_PREFIX)):
        return None
    path = Path(path)
    if not path.is_dir() or (path / CRYSMMNET_FILE).is_file():
        return None
    return default_cgcnn_target(path)


def with_default_target(config: Config) -> Config:
    """``config`` with ``data.target`` set to :func:`default_target` of ``data.path`` when it names none."""
    if config.data.target:
        return config
    implied = default_target(config.data.path)
    return config.replace({"data.target": implied}) if implied else config


def load_config_records(
    config: Config,
    *,
    path: str | Path | None = None,
    ids: Collection[str] | None = None,
    require_target: bool = True,
    whole_source: bool = False,
) -> LoadResult:
    """The records a run with ``config`` reads: from ``data.path`` (or ``path``), with its ``data.target``
    (read but not required with ``require_target=False``), the first ``data.limit`` rows (every row with
    ``whole_source``), and only ``ids`` when given."""
    target = config.data.target if require_target else (config.data.target or None)
    return load_records(path or config.data.path, target, limit=None if whole_source else config.data.limit,
                        require_target=require_target, ids=ids, checks_dir=default_cache_dir(config))
