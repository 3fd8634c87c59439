"""The describers: crystal structure → text. ``jarvis`` (built in, fast) and the optional robocrystallographer
``robocrys`` / ``robocrys_fast``; plus :func:`clean_text` for descriptions from any source.

See :mod:`crysfuse.data.describe` for describing many structures with workers, timeouts and a cache.
Nothing heavy is imported at module import time: jarvis-tools and robocrys load on first use.
"""

from __future__ import annotations

import os
import re
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from crysfuse.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

DESCRIBERS: Registry = Registry("describer")

#: Bump when the describer's own post-processing of jarvis output changes (part of every cache key).
_FORMAT_VERSION = "2"
_PROGRESS_EVERY_S = 10.0


class DescriberError(RuntimeError):
    """A structure could not be described (unsupported structure, or the backend raised)."""


class DescriberTimeout(DescriberError):
    """Describing one structure took longer than the per-structure timeout."""


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


@lru_cache(maxsize=1)
def _robocrys_version() -> str:
    try:
        import robocrys

        return str(getattr(robocrys, "__version__", "unknown"))
    except ImportError:
        return "missing"


@DESCRIBERS.register("robocrys")
class RobocrysDescriber:
    """robocrystallographer text (CrysMMNet's describer), with mineral matching: ≈ 6 s per structure.

    Optional extra: ``pip install 'crysfuse[describe]'`` (robocrys). Runs in worker processes with a
    per-structure timeout when used through :func:`describe_many` (``default_workers`` / ``default_timeout``).
    Oxidation states are not guessed (the CrysMMNet texts carry none). The text is passed through
    :func:`clean_text` (numpy reprs such as ``np.int64(0)``, doubled words, whitespace).

    Args:
        mineral_matching: match the structure against robocrys' mineral prototypes ("Molybdenite-like").
            About six times slower; ``robocrys_fast`` is this class with ``mineral_matching=False``.
    """

    name = "robocrys"
    default_workers = max(1, min(4, (os.cpu_count() or 1)))
    default_timeout: float | None = 120.0

    def __init__(self, mineral_matching: bool = True) -> None:
        self.mineral_matching = mineral_matching
        self._condenser: Any = None
        self._describer: Any = None

    @property
    def version(self) -> str:
        return f"robocrys=={_robocrys_version()};mineral={int(self.mineral_matching)};fmt=1"

    def _load(self) -> None:
        if self._condenser is not None:
            return
        try:
            from robocrys import StructureCondenser, StructureDescriber
        except ImportError as exc:
            raise DescriberError(
                "the robocrys describer needs robocrystallographer: pip install 'crysfuse[describe]' "
                "(or pip install robocrys)"
            ) from exc
        self._condenser = StructureCondenser(mineral_matcher=None if self.mineral_matching else False)
        self._describer = StructureDescriber(describe_oxidation_states=False)

    def describe(self, structure: Structure) -> str:
        """Describe one ordered structure; raises :class:`DescriberError` on any failure."""
        self._load()
        if not structure.is_ordered:
            raise DescriberError("disordered structures (partial occupancies) cannot be described by robocrys")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                condensed = self._condenser.condense_structure(structure)
                text = self._describer.describe(condensed)
        except DescriberError:
            raise
        except Exception as exc:
            raise DescriberError(f"robocrys failed: {type(exc).__name__}: {exc}") from exc
        text = clean_text(text) if isinstance(text, str) else ""
        if not text:
            raise DescriberError("robocrys returned an empty text")
        return text


@DESCRIBERS.register("robocrys_fast")
class RobocrysFastDescriber(RobocrysDescriber):
    """robocrystallographer text without mineral matching: ≈ 1 s per structure."""

    name = "robocrys_fast"

    def __init__(self, mineral_matching: bool = False) -> None:
        super().__init__(mineral_matching=mineral_matching)


@DESCRIBERS.register("composition")
class CompositionDescriber:
    """Composition only, no structure: formula, elements by name and their atom fractions. The control text of
    the fusion study (docs/results.md): what a text model can learn from the chemistry alone, ≈ 20 words.

    Example: ``"The compound Ga2O3 contains two elements: oxygen (O, 60% of the atoms) and gallium (Ga, 40% of
    the atoms)."``
    """

    name = "composition"
    version = "fmt=1"

    def describe(self, structure: Structure) -> str:
        """The composition sentence of one structure (only its species and their amounts are read)."""
        composition = structure.composition.element_composition  # oxidation states dropped: "O", not "O2-"
        if not composition.elements:
            raise DescriberError("the structure has no atoms")
        fractions = composition.fractional_composition
        parts = [f"{e.long_name.lower()} ({e}, {_percent(fractions[e])} of the atoms)"
                 for e in sorted(composition.elements, key=lambda e: (-fractions[e], str(e)))]
        count = len(parts)
        listed = parts[0] if count == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        noun = "one element" if count == 1 else f"{_NUMBER_WORDS.get(count, str(count))} elements"
        return f"The compound {composition.reduced_formula} contains {noun}: {listed}."


def _percent(fraction: float) -> str:
    """``"40%"``; ``"<1%"`` for a trace that would round to 0."""
    percent = round(100 * fraction)
    return f"{percent}%" if percent > 0 else "<1%"


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


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
