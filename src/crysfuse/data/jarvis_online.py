"""``jarvis:<dataset>`` data sources (``jarvis:dft_3d``, ``jarvis:megnet``, ...) via jarvis-tools' figshare cache.

jarvis-tools keeps each data set as ``<file>.json.zip`` (a zip holding ``<file>.json``) in its cache folder,
``$ATOMGPTLAB_CACHE/jarvis_data`` (default ``~/.cache/atomgptlab/jarvis_data``); ``$CRYSFUSE_JARVIS_DIR``
overrides the folder for crysfuse. The file names and URLs come from ``jarvis.db.figshare.get_db_info()``.

When the zip is in the cache it is read directly, without the network. When it is missing, crysfuse first
checks that figshare answers (a few seconds at most) and then lets jarvis-tools' own downloader
(``jarvis.db.figshare.get_request_data``) fetch it into the cache. Offline, a :class:`DataSourceError` names the
data set, the file and the folder to place it in.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from crysfuse.data.jarvis_json import records_from_jarvis_rows, rows_list
from crysfuse.data.records import DataSourceError, LoadResult

logger = logging.getLogger(__name__)

CACHE_ENV = "CRYSFUSE_JARVIS_DIR"
PROBE_TIMEOUT_S = 5.0


def jarvis_cache_dir() -> Path:
    """Where the data set zips are looked for (``$CRYSFUSE_JARVIS_DIR``, else jarvis-tools' own cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("ATOMGPTLAB_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "atomgptlab"))
    return Path(base) / "jarvis_data"


def dataset_info(dataset: str) -> tuple[str, str]:
    """``(url, json file name)`` of a jarvis-tools data set; unknown names list the known ones."""
    from jarvis.db.figshare import get_db_info

    info = get_db_info()
    if dataset not in info:
        raise DataSourceError(f"unknown JARVIS data set '{dataset}'; known: {', '.join(sorted(info))}")
    return info[dataset][0], info[dataset][1]


def load_jarvis_dataset(
    dataset: str, target: str | None, *, limit: int | None = None, require_target: bool = True,
    cache_dir: str | Path | None = None, ids: Collection[str] | None = None,
) -> LoadResult:
    """Records of ``jarvis:<dataset>`` (rows in the JARVIS JSON schema: ``jid``, ``atoms``, property keys).

    Raises:
        DataSourceError: unknown data set; offline without the file in the cache (the message says which file
            to place where); an unreadable (e.g. truncated) zip.
    """
    dataset = dataset.strip()
    url, json_name = dataset_info(dataset)
    folder = Path(cache_dir) if cache_dir is not None else jarvis_cache_dir()
    zip_path = folder / f"{json_name}.zip"
    if not zip_path.is_file():
        _download(dataset, url, json_name, folder)
    rows = read_jarvis_zip(zip_path, json_name)
    return records_from_jarvis_rows(rows, target, limit=limit, require_target=require_target,
                                    source=f"jarvis:{dataset}", ids=ids)


def _offline_error(dataset: str, url: str, json_name: str, folder: Path, why: str) -> DataSourceError:
    return DataSourceError(
        f"jarvis:{dataset} is not in the local cache and cannot be downloaded ({why}). On a machine with "
        f"internet access download {url} (it is '{json_name}.zip', a zip holding '{json_name}') and place it "
        f"as '{folder / (json_name + '.zip')}' (or set ${CACHE_ENV} to the folder that holds it)"
    )


def _download(dataset: str, url: str, json_name: str, folder: Path) -> None:
    """Fetch the zip with jarvis-tools' downloader, after a quick check that figshare can be reached."""
    import requests

    try:
        response = requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=True)
        response.close()
        if response.status_code >= 400:
            raise _offline_error(dataset, url, json_name, folder, f"HTTP {response.status_code} from figshare")
    except requests.RequestException as err:
        raise _offline_error(dataset, url, json_name, folder, f"no connection: {type(err).__name__}") from err
    from jarvis.db.figshare import get_request_data

    folder.mkdir(parents=True, exist_ok=True)
    logger.info("downloading jarvis:%s from %s into %s", dataset, url, folder)
    try:
        get_request_data(js_tag=json_name, url=url, store_dir=str(folder))
    except Exception as err:
        partial = folder / f"{json_name}.zip"
        raise DataSourceError(
            f"downloading jarvis:{dataset} failed ({type(err).__name__}: {err}); delete '{partial}' if it is "
            "there and try again, or place the file there by hand"
        ) from err


def read_jarvis_zip(zip_path: Path, json_name: str) -> list[Any]:
    """The JSON list inside a jarvis-tools data set zip."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = archive.namelist()
            member = json_name if json_name in names else next((n for n in names if n.endswith(".json")), None)
            if member is None:
                raise DataSourceError(f"'{zip_path}' holds no JSON file (expected '{json_name}'); members: {names}")
            rows = json.loads(archive.read(member))
    except DataSourceError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataSourceError(
            f"'{zip_path}' cannot be read ({type(err).__name__}: {err}); it may be truncated: delete it and "
            "download it again"
        ) from err
    return rows_list(rows, zip_path)
