"""Text descriptions of crystal structures, with an on-disk cache.

The built-in ``jarvis`` describer is the paragraph form of jarvis-tools' ``Atoms.describe()``
(``desc_2``): formula, crystal system, space group, point group, prototype, atomic fractions,
electronegativities, atomic numbers, the two shortest bond lengths per element pair, lattice lengths and
angles, the top XRD peaks and the Wyckoff letters. It takes about 50 ms per structure on one CPU core,
most of it in the XRD simulation.

One deliberate difference from calling jarvis directly: jarvis lists the Wyckoff letters in Python ``set``
order, which depends on the interpreter's string-hash seed (``PYTHONHASHSEED``) and so changes from run to
run. The describer sorts them (:func:`canonicalize_wyckoff`), so the same structure always gives the same
text, and cached texts and text embeddings stay valid across runs and worker processes. Texts produced by
jarvis elsewhere (e.g. a precomputed ``desc_jarvis`` file) differ from ours at most in that order; pass them
through :func:`canonicalize_wyckoff` to compare.

The optional ``robocrys`` describers (``pip install 'crysfuse[describe]'``) write robocrystallographer's
longer, bonding-centred text, as in CrysMMNet: ``robocrys`` with mineral matching (≈ 6 s per structure here)
and ``robocrys_fast`` without it (≈ 1 s). They run in worker processes with a per-structure timeout by
default; every failure (timeout included) is recorded, and their text is cleaned with :func:`clean_text`.

Nothing heavy is imported at module import time: jarvis-tools and robocrys load on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crysfuse.data.describers import (  # noqa: F401 - re-exported
    _FORMAT_VERSION,
    _PROGRESS_EVERY_S,
    DESCRIBERS,
    DescriberError,
    DescriberTimeout,
    JarvisDescriber,
    RobocrysDescriber,
    RobocrysFastDescriber,
    _jarvis_version,
    canonicalize_wyckoff,
    clean_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = [
    "DESCRIBERS",
    "DescriberError",
    "DescriberTimeout",
    "JarvisDescriber",
    "RobocrysDescriber",
    "RobocrysFastDescriber",
    "canonicalize_wyckoff",
    "clean_text",
    "describe_many",
    "structure_fingerprint",
]


# ------------------------------------------------------------------------------------------------ cache


def structure_fingerprint(structure: Structure, decimals: int = 6) -> str:
    """A canonical serialisation of a structure: lattice rows, species and fractional coordinates.

    Values are rounded to ``decimals`` so that float noise from a JSON round trip does not change it; site
    order is kept (it is part of the structure as given).
    """
    fmt = f"{{:.{decimals}f}}"

    def num(x: float) -> str:
        out = fmt.format(float(x))
        return "0." + "0" * decimals if out == "-0." + "0" * decimals else out

    lattice = ";".join(",".join(num(v) for v in row) for row in structure.lattice.matrix)
    sites = ";".join(
        f"{site.species.formula}@" + ",".join(num(v) for v in site.frac_coords) for site in structure
    )
    return f"L={lattice}|S={sites}"


def _cache_key(describer: Any, identity: str) -> str:
    version = getattr(describer, "version", _jarvis_version())
    payload = json.dumps([describer.name, version, identity], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _cache_path(cache_dir: Path, describer_name: str, key: str) -> Path:
    return cache_dir / describer_name / key[:2] / f"{key}.json"


def _read_cached(path: Path) -> str | None:
    try:
        with path.open("r", encoding="utf-8") as fh:
            record = json.load(fh)
        text = record["text"]
        if not isinstance(text, str):
            raise TypeError("text is not a string")
        return text
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("removing unreadable description cache file %s (%s)", path, exc)
        path.unlink(missing_ok=True)
        return None


def _write_cached(path: Path, text: str, meta: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump({**meta, "text": text}, fh, ensure_ascii=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_WORKER_DESCRIBERS: dict[str, Any] = {}


def _worker_describer(describer_name: str) -> Any:
    if describer_name not in _WORKER_DESCRIBERS:
        _WORKER_DESCRIBERS[describer_name] = DESCRIBERS.get(describer_name)()
    return _WORKER_DESCRIBERS[describer_name]


def _warm_worker(describer_name: str) -> None:
    """Pool initializer: build the describer once per worker process (imports, mineral database)."""
    describer = _worker_describer(describer_name)
    if hasattr(describer, "_load"):
        try:
            describer._load()
        except Exception as exc:  # noqa: BLE001 - reported per structure by describe() instead
            logger.debug("describer %s could not be prepared in a worker: %s", describer_name, exc)


_ALARM_FIRED = [False]


def _raise_timeout(signum: int, frame: Any) -> None:
    _ALARM_FIRED[0] = True  # libraries may catch and re-wrap the exception; the flag still tells
    raise DescriberTimeout("timed out")


def _describe_with_alarm(describer: Any, structure: Structure, timeout: float | None) -> tuple[str | None, str | None]:
    """(text, None) or (None, error); with ``timeout``, an alarm signal interrupts a slow structure.

    The alarm works only in a main thread (always the case in a worker process); elsewhere no timeout applies.
    """
    use_alarm = timeout is not None and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _raise_timeout) if use_alarm else None
    _ALARM_FIRED[0] = False
    try:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        text = describer.describe(structure)
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return (None, f"timed out after {timeout:g} s") if _ALARM_FIRED[0] else (text, None)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is raised
        if isinstance(exc, DescriberTimeout) or _ALARM_FIRED[0]:
            return None, f"timed out after {timeout:g} s"
        return None, str(exc) or type(exc).__name__
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


def _describe_task(describer_name: str, structure: Structure, timeout: float | None) -> tuple[str | None, str | None]:
    """Worker: describe one structure under the per-structure timeout."""
    return _describe_with_alarm(_worker_describer(describer_name), structure, timeout)


def _describe_chunk(describer_name: str, structures: list[Structure]) -> list[tuple[str | None, str | None]]:
    """Worker: (text, None) or (None, error message) for each structure."""
    describer = _worker_describer(describer_name)
    return [_describe_with_alarm(describer, structure, None) for structure in structures]


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool whose worker is stuck (in C code the alarm cannot interrupt)."""
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


_STARTUP_GRACE_S = 60.0
"""Seconds allowed on top of the timeout for a task of a fresh pool (worker start-up, imports)."""


def _run_with_timeouts(
    describer_name: str, todo: list[int], structures: list[Structure], workers: int, timeout: float,
    record: Any,
) -> None:
    """One task per structure, at most ``workers`` in flight. Each worker stops a slow structure with an
    alarm after ``timeout`` s; as a backstop, a task not done ``timeout`` s (plus start-up grace) after it was
    submitted is recorded as timed out and the pool is replaced (the other in-flight tasks are resubmitted)."""
    queue = list(todo)
    while queue:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_warm_worker, initargs=(describer_name,))
        pool_started = time.monotonic()
        in_flight: dict[Future, tuple[int, float]] = {}
        stuck = False
        try:
            while (queue or in_flight) and not stuck:
                while queue and len(in_flight) < workers:
                    i = queue.pop(0)
                    in_flight[pool.submit(_describe_task, describer_name, structures[i], timeout)] = (i, time.monotonic())
                done, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    i, _ = in_flight.pop(future)
                    try:
                        text, error = future.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                        text, error = None, f"worker failed: {type(exc).__name__}: {exc}"
                    record(i, text, error)
                now = time.monotonic()
                for future, (i, submitted) in list(in_flight.items()):
                    grace = 10.0 + (_STARTUP_GRACE_S if submitted - pool_started < _STARTUP_GRACE_S else 0.0)
                    if now - submitted > timeout + grace:
                        in_flight.pop(future)
                        record(i, None, f"timed out after {timeout:g} s (worker stopped)")
                        stuck = True
        finally:
            if stuck:
                queue = [i for i, _ in in_flight.values()] + queue
                _kill_pool(pool)
            else:
                pool.shutdown(wait=True)


def describe_many(
    structures: list[Structure],
    describer_name: str = "jarvis",
    *,
    cache_dir: Path | None = None,
    keys: list[str] | None = None,
    workers: int | None = None,
    chunk_size: int = 32,
    timeout: float | None = None,
) -> tuple[list[str | None], dict[int, str]]:
    """Describe many structures; failures are recorded, not raised.

    Args:
        structures: pymatgen ``Structure`` objects.
        describer_name: a key of :data:`DESCRIBERS`.
        cache_dir: folder for the per-structure text cache (``<cache_dir>/<describer>/<ab>/<sha256>.json``);
            ``None`` disables caching. Failures are not cached.
        keys: optional stable per-structure identities (e.g. ids of an immutable data set) used in the cache
            key instead of :func:`structure_fingerprint`; same length as ``structures``.
        workers: processes to describe cache misses with (1 = in this process); ``None``: the describer's
            ``default_workers`` (jarvis: 1, robocrys: up to 4).
        chunk_size: structures per task sent to a worker process (without a timeout).
        timeout: seconds allowed per structure; a slower one is recorded as a failure. ``None``: the
            describer's ``default_timeout`` (jarvis: none, robocrys: 120 s); ``0`` switches it off.

    Returns:
        ``(texts, errors)``: ``texts[i]`` is the description of ``structures[i]`` or ``None`` where it
        failed, and ``errors`` maps each failed index to its error message.
    """
    describer = DESCRIBERS.get(describer_name)()
    if workers is None:
        workers = int(getattr(describer, "default_workers", 1))
    if timeout is None:
        timeout = getattr(describer, "default_timeout", None)
    if timeout is not None and timeout <= 0:
        timeout = None
    n = len(structures)
    if keys is not None and len(keys) != n:
        raise ValueError(f"keys has {len(keys)} entries for {n} structures")
    results = _Results(describer, describer_name, n)
    todo = results.read_cache(structures, cache_dir, keys)
    if cache_dir is not None:
        logger.info("describer %s: %d/%d descriptions from cache", describer_name, n - len(todo), n)
    if not todo:
        return results.texts, results.errors
    results.start(len(todo))
    if workers > 1 and timeout is not None and len(todo) > 1:
        _run_with_timeouts(describer_name, todo, structures, workers, timeout, results.record)
    elif workers <= 1 or len(todo) <= chunk_size:
        for i in todo:
            results.record(i, *_describe_with_alarm(describer, structures[i], timeout))
    else:
        _run_in_chunks(describer_name, todo, structures, workers, chunk_size, results.record)
    if results.errors:
        logger.warning("describer %s failed on %d of %d structures", describer_name, len(results.errors), n)
    return results.texts, results.errors


class _Results:
    """The texts and errors of :func:`describe_many` as they come in: cached, logged with progress."""

    def __init__(self, describer: Any, name: str, n: int) -> None:
        self.describer = describer
        self.name = name
        self.texts: list[str | None] = [None] * n
        self.errors: dict[int, str] = {}
        self.paths: list[Path | None] = [None] * n
        self.meta = {"describer": describer.name, "version": getattr(describer, "version", "")}
        self.total = self.done = 0
        self.started = self.last_log = 0.0

    def read_cache(self, structures: list[Structure], cache_dir: Path | None, keys: list[str] | None) -> list[int]:
        """Fill in the cached texts; returns the indices still to describe."""
        todo: list[int] = []
        for i, structure in enumerate(structures):
            if cache_dir is not None:
                identity = f"key:{keys[i]}" if keys is not None else structure_fingerprint(structure)
                self.paths[i] = _cache_path(Path(cache_dir), self.describer.name, _cache_key(self.describer, identity))
                cached = _read_cached(self.paths[i])
                if cached is not None:
                    self.texts[i] = cached
                    continue
            todo.append(i)
        return todo

    def start(self, total: int) -> None:
        self.total, self.started = total, time.monotonic()
        self.last_log = self.started

    def record(self, i: int, text: str | None, error: str | None) -> None:
        """One structure done: keep (and cache) its text or its error; log progress every few seconds."""
        name = self.name
        self.done += 1
        if text is None:
            self.errors[i] = error or "unknown error"
            logger.debug("describer %s failed on structure %d: %s", name, i, self.errors[i])
        else:
            self.texts[i] = text
            if self.paths[i] is not None:
                _write_cached(self.paths[i], text, self.meta)
        now = time.monotonic()
        if now - self.last_log >= _PROGRESS_EVERY_S or self.done == self.total:
            self.last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            logger.info("describer %s: %d/%d described (%.1f/s, %d failed, ~%.0f s left)", name, self.done,
                        self.total, rate, len(self.errors), (self.total - self.done) / max(rate, 1e-9))


def _run_in_chunks(describer_name: str, todo: list[int], structures: list[Structure], workers: int,
                   chunk_size: int, record: Any) -> None:
    """Chunks of ``chunk_size`` structures to ``workers`` processes (no per-structure timeout)."""
    chunks = [todo[k : k + chunk_size] for k in range(0, len(todo), chunk_size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_describe_chunk, describer_name, [structures[i] for i in chunk])
            for chunk in chunks
        ]
        for chunk, future in zip(chunks, futures):
            try:
                results = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                results = [(None, f"worker failed: {type(exc).__name__}: {exc}")] * len(chunk)
            for i, (text, error) in zip(chunk, results):
                record(i, text, error)
