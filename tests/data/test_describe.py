"""The jarvis describer, describe_many and clean_text."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest
from pymatgen.core import Lattice, Structure

from crysfuse.data.describe import (
    DESCRIBERS,
    DescriberError,
    JarvisDescriber,
    canonicalize_wyckoff,
    clean_text,
    describe_many,
    structure_fingerprint,
)
from tests.conftest import SHARED_DATA, require_shared

DATA = SHARED_DATA


def _nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _overlapping() -> Structure:
    """Two atoms on one site: spglib finds no symmetry and jarvis raises."""
    return Structure(Lattice.cubic(3.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0]])


def test_registry() -> None:
    assert "jarvis" in DESCRIBERS and DESCRIBERS.get("jarvis") is JarvisDescriber
    assert JarvisDescriber.name == "jarvis"


def test_matches_precomputed_jarvis_text() -> None:
    with gzip.open(require_shared(DATA / "mp36k.desc_jarvis.jsonl.gz"), "rt", encoding="utf-8") as fh:
        reference = {d["id"]: d["text"] for d in map(json.loads, itertools.islice(fh, 3))}
    with gzip.open(DATA / "mp36k.json.gz", "rt", encoding="utf-8") as fh:
        records = {r["id"]: r for r in json.load(fh) if r["id"] in reference}
    assert len(records) == 3
    describer = JarvisDescriber()
    for rid, text in reference.items():
        atoms = records[rid]["atoms"]
        structure = Structure(atoms["lattice_mat"], atoms["elements"], atoms["coords"])
        got = describer.describe(structure)
        # jarvis prints the Wyckoff letters in (hash-seed dependent) set order; ours are sorted
        assert got == canonicalize_wyckoff(text), rid
        assert got.split("Wyckoff symbols")[0] == text.split("Wyckoff symbols")[0]


def test_canonicalize_wyckoff() -> None:
    assert canonicalize_wyckoff("... with Wyckoff symbols e, d, a.") == "... with Wyckoff symbols a, d, e."
    assert canonicalize_wyckoff("no clause here.") == "no clause here."


def test_describe_deterministic_text() -> None:
    text = JarvisDescriber().describe(_nacl())
    assert text.startswith("NaCl crystallizes in the cubic Pm-3m spacegroup")
    assert text.endswith("Wyckoff symbols a, b.")


def test_failures_recorded_not_raised(tmp_path) -> None:
    disordered = Structure(Lattice.cubic(3.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    with pytest.raises(DescriberError):
        JarvisDescriber().describe(_overlapping())
    texts, errors = describe_many([_nacl(), _overlapping(), disordered], cache_dir=tmp_path)
    assert texts[0] and texts[1] is None and texts[2] is None
    assert set(errors) == {1, 2}
    assert "jarvis describe failed" in errors[1] and "disordered" in errors[2]
    assert len(list(tmp_path.rglob("*.json"))) == 1  # failures are not cached


def test_cache_reused_and_keyed(tmp_path, monkeypatch) -> None:
    structures = [_nacl(), _nacl()]
    texts, errors = describe_many(structures, cache_dir=tmp_path)
    assert not errors and texts[0] == texts[1]
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and files[0].parent.name == files[0].stem[:2]
    assert not list(tmp_path.rglob("*.tmp"))

    def boom(self, structure):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(JarvisDescriber, "describe", boom)
    again, errors = describe_many(structures, cache_dir=tmp_path)
    assert again == texts and not errors
    # explicit keys are another cache identity: miss -> describe -> recorded failure
    _, errors = describe_many(structures, cache_dir=tmp_path, keys=["a", "b"])
    assert set(errors) == {0, 1}
    # a corrupt cache file is dropped and recomputed (here: fails again, recorded)
    files[0].write_text("{not json", encoding="utf-8")
    texts3, errors = describe_many(structures[:1], cache_dir=tmp_path)
    assert texts3 == [None] and 0 in errors and not files[0].exists()


def test_fingerprint_tolerates_float_noise() -> None:
    a = _nacl()
    b = Structure(Lattice.cubic(5.64 + 1e-10), ["Na", "Cl"], [[0, 0, 1e-12], [0.5, 0.5, 0.5]])
    c = Structure(Lattice.cubic(5.7), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_fingerprint(a) == structure_fingerprint(b) != structure_fingerprint(c)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  Na  is\n bonded\tto Cl. ", "Na is bonded to Cl."),
        (
            "There are np.int64(0) shorter and np.float64(1.5) Å longer",
            "There are 0 shorter and 1.5 Å longer",
        ),
        ("np.float64(-2.5e-05) and np.int32(12)", "-2.5e-05 and 12"),
        ("the the structure is is 3D", "the structure is 3D"),
        ("The the end", "The end"),
        ("angles 90 90 90º, Ba-Te: 3.54 Å.The", "angles 90 90 90º, Ba-Te: 3.54 Å.The"),
        ("theme the", "theme the"),
        ("", ""),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
