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

Nothing heavy is imported at module import time: jarvis-tools loads on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from crysfuse.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = [
    "DESCRIBERS",
    "DescriberError",
    "JarvisDescriber",
    "canonicalize_wyckoff",
    "clean_text",
    "describe_many",
    "structure_fingerprint",
]

DESCRIBERS: Registry = Registry("describer")

#: Bump when the describer's own post-processing of jarvis output changes (part of every cache key).
_FORMAT_VERSION = "2"
_PROGRESS_EVERY_S = 10.0


class DescriberError(RuntimeError):
    """A structure could not be described (unsupported structure, or the backend raised)."""


class Describer(Protocol):
    """What :data:`DESCRIBERS` entries provide."""

    name: str

    def describe(self, structure: Structure) -> str: ...


@lru_cache(maxsize=1)
def _jarvis_version() -> str:
    try:
        import jarvis

        return str(getattr(jarvis, "__version__", "unknown"))
    except ImportError:  # pragma: no cover - jarvis-tools is a hard dependency
        return "missing"


_WYCKOFF_RE = re.compile(r"(with Wyckoff symbols )([A-Za-z](?:, [A-Za-z])*)(\.?\s*)$")


def canonicalize_wyckoff(text: str) -> str:
    """Sort the Wyckoff letters at the end of a jarvis ``desc_2`` text ("... symbols b, a." → "a, b.").

    Texts without that closing clause are returned unchanged.
    """
    match = _WYCKOFF_RE.search(text)
    if match is None:
        return text
    letters = ", ".join(sorted(match.group(2).split(", ")))
    return text[: match.start(2)] + letters + text[match.end(2) :]


def _to_jarvis_atoms(structure: Structure) -> Any:
    """pymatgen ``Structure`` → ``jarvis.core.atoms.Atoms`` (fractional coordinates, element symbols)."""
    from jarvis.core.atoms import Atoms

    if not structure.is_ordered:
        raise DescriberError("disordered structures (partial occupancies) cannot be described by jarvis")
    elements = [site.specie.symbol for site in structure]
    return Atoms(
        lattice_mat=structure.lattice.matrix.tolist(),
        coords=structure.frac_coords.tolist(),
        elements=elements,
        cartesian=False,
    )


@DESCRIBERS.register("jarvis")
class JarvisDescriber:
    """Fast built-in describer: jarvis-tools ``Atoms.describe()["desc_2"]`` (one paragraph, ~100 words)."""

    name = "jarvis"

    @property
    def version(self) -> str:
        """Identifies the exact text this describer produces (jarvis-tools version + our post-processing)."""
        return f"jarvis-tools=={_jarvis_version()};fmt={_FORMAT_VERSION}"

    def describe(self, structure: Structure) -> str:
        """Describe one structure.

        Args:
            structure: an ordered pymatgen ``Structure``.

        Returns:
            The paragraph, with the Wyckoff letters sorted (see the module docstring).

        Raises:
            DescriberError: the structure is unsupported or jarvis-tools failed on it.
        """
        try:
            atoms = _to_jarvis_atoms(structure)
            text = atoms.describe()["desc_2"]
        except DescriberError:
            raise
        except Exception as exc:  # jarvis raises anything from ValueError to IndexError on odd cells
            raise DescriberError(f"jarvis describe failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str) or not text.strip():
            raise DescriberError("jarvis describe returned an empty text")
        return canonicalize_wyckoff(text)


# --------------------------------------------------------------------------------------------- cleaning

_NP_REPR_RE = re.compile(
    r"\bnp\.(?:u?int(?:8|16|32|64)?|float(?:16|32|64|128)?|bool_?|str_)\(\s*'?([^()']*?)'?\s*\)"
)
_DOUBLED_WORD_RE = re.compile(r"\b([^\W\d_]+)(?:\s+\1\b)+", flags=re.IGNORECASE)
_WS_RE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Normalise a description for the text encoder.

    * numpy scalar reprs become plain values: ``np.int64(0)`` → ``0``, ``np.float64(1.5)`` → ``1.5``;
    * runs of whitespace (including newlines and tabs) become one space, ends are stripped;
    * immediately doubled words collapse (``"the the"`` → ``"the"``, case-insensitive, keeps the first; words of
      letters only, so repeated numbers such as ``"90 90"`` stay).

    Everything else (punctuation, units, symbols such as ``Å`` or ``º``) is kept.
    """
    if not text:
        return ""
    text = _NP_REPR_RE.sub(r"\1", text)
    text = _WS_RE.sub(" ", text).strip()
    return _DOUBLED_WORD_RE.sub(r"\1", text)


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


def _describe_chunk(describer_name: str, structures: list[Structure]) -> list[tuple[str | None, str | None]]:
    """Worker: (text, None) or (None, error message) for each structure."""
    describer = DESCRIBERS.get(describer_name)()
    out: list[tuple[str | None, str | None]] = []
    for structure in structures:
        try:
            out.append((describer.describe(structure), None))
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is raised
            out.append((None, str(exc) or type(exc).__name__))
    return out


def describe_many(
    structures: list[Structure],
    describer_name: str = "jarvis",
    *,
    cache_dir: Path | None = None,
    keys: list[str] | None = None,
    workers: int = 1,
    chunk_size: int = 32,
) -> tuple[list[str | None], dict[int, str]]:
    """Describe many structures; failures are recorded, not raised.

    Args:
        structures: pymatgen ``Structure`` objects.
        describer_name: a key of :data:`DESCRIBERS`.
        cache_dir: folder for the per-structure text cache (``<cache_dir>/<describer>/<ab>/<sha256>.json``);
            ``None`` disables caching. Failures are not cached.
        keys: optional stable per-structure identities (e.g. ids of an immutable data set) used in the cache
            key instead of :func:`structure_fingerprint`; same length as ``structures``.
        workers: processes to describe cache misses with (1 = in this process).
        chunk_size: structures per task sent to a worker process.

    Returns:
        ``(texts, errors)``: ``texts[i]`` is the description of ``structures[i]`` or ``None`` where it
        failed, and ``errors`` maps each failed index to its error message.
    """
    describer = DESCRIBERS.get(describer_name)()
    n = len(structures)
    if keys is not None and len(keys) != n:
        raise ValueError(f"keys has {len(keys)} entries for {n} structures")
    texts: list[str | None] = [None] * n
    errors: dict[int, str] = {}

    paths: list[Path | None] = [None] * n
    todo: list[int] = []
    for i, structure in enumerate(structures):
        if cache_dir is not None:
            identity = f"key:{keys[i]}" if keys is not None else structure_fingerprint(structure)
            paths[i] = _cache_path(Path(cache_dir), describer.name, _cache_key(describer, identity))
            cached = _read_cached(paths[i])
            if cached is not None:
                texts[i] = cached
                continue
        todo.append(i)
    if cache_dir is not None:
        logger.info("describer %s: %d/%d descriptions from cache", describer_name, n - len(todo), n)
    if not todo:
        return texts, errors

    meta = {"describer": describer.name, "version": getattr(describer, "version", "")}
    start = last_log = time.monotonic()
    done = 0

    def record(i: int, text: str | None, error: str | None) -> None:
        nonlocal done, last_log
        done += 1
        if text is None:
            errors[i] = error or "unknown error"
            logger.debug("describer %s failed on structure %d: %s", describer_name, i, errors[i])
        else:
            texts[i] = text
            if paths[i] is not None:
                _write_cached(paths[i], text, meta)
        now = time.monotonic()
        if now - last_log >= _PROGRESS_EVERY_S or done == len(todo):
            last_log = now
            rate = done / max(now - start, 1e-9)
            logger.info(
                "describer %s: %d/%d described (%.1f/s, %d failed, ~%.0f s left)",
                describer_name,
                done,
                len(todo),
                rate,
                len(errors),
                (len(todo) - done) / max(rate, 1e-9),
            )

    if workers <= 1 or len(todo) <= chunk_size:
        for i in todo:
            try:
                record(i, describer.describe(structures[i]), None)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is raised
                record(i, None, str(exc) or type(exc).__name__)
    else:
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
    if errors:
        logger.warning("describer %s failed on %d of %d structures", describer_name, len(errors), n)
    return texts, errors
