"""The optional robocrystallographer describers: text, mineral matching switch, workers, timeout, cache."""

from __future__ import annotations

import time

import pytest
from pymatgen.core import Lattice, Structure

from crysfuse.data.describe import (
    DESCRIBERS,
    DescriberError,
    RobocrysDescriber,
    RobocrysFastDescriber,
    describe_many,
)


def _rocksalt(a: float = 5.64, pair=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(pair), [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_registered_with_the_mineral_matching_choice():
    assert DESCRIBERS.get("robocrys") is RobocrysDescriber and DESCRIBERS.get("robocrys_fast") is RobocrysFastDescriber
    assert RobocrysDescriber().mineral_matching and not RobocrysFastDescriber().mineral_matching
    assert RobocrysDescriber().version != RobocrysFastDescriber().version  # separate cache entries


def test_missing_robocrys_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "robocrys", None)
    with pytest.raises(DescriberError, match=r"pip install 'crysfuse\[describe\]'"):
        RobocrysFastDescriber().describe(_rocksalt())


def test_describes_with_and_without_mineral_matching():
    pytest.importorskip("robocrys")
    fast = RobocrysFastDescriber().describe(_rocksalt())
    assert fast.startswith("NaCl crystallizes in the cubic Fm-3m space group.")
    assert "bond lengths are 2.82 Å" in fast and "np." not in fast and "  " not in fast
    slow = RobocrysDescriber().describe(_rocksalt())
    assert slow.startswith("NaCl is Halite, Rock Salt structured")


def test_failures_are_recorded_and_texts_cached(tmp_path):
    pytest.importorskip("robocrys")
    structures = [_rocksalt(), Structure(Lattice.cubic(3.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])]
    texts, errors = describe_many(structures, "robocrys_fast", cache_dir=tmp_path, workers=1)
    assert texts[0] and texts[1] is None and "disordered" in errors[1]
    start = time.perf_counter()
    again, errors = describe_many(structures, "robocrys_fast", cache_dir=tmp_path, workers=1)
    assert again[0] == texts[0] and time.perf_counter() - start < 0.5  # from the cache


def test_parallel_workers_with_a_per_structure_timeout(tmp_path):
    pytest.importorskip("robocrys")
    structures = [_rocksalt(a, pair) for a, pair in ((5.64, ("Na", "Cl")), (4.2, ("Mg", "O")), (6.6, ("K", "Br")))]
    texts, errors = describe_many(structures, "robocrys_fast", workers=2, timeout=60)
    assert not errors and all(t and "crystallizes" in t for t in texts)
    assert texts[1].startswith("MgO crystallizes")
    texts, errors = describe_many(structures[:2], "robocrys", workers=2, timeout=0.01)
    assert texts == [None, None] and all("timed out after 0.01 s" in e for e in errors.values())


class _Slow:
    name = "slow_test_describer"
    version = "1"

    def describe(self, structure):
        time.sleep(5)
        return "never"


def test_in_process_timeout_interrupts_a_slow_structure(monkeypatch):
    monkeypatch.setitem(DESCRIBERS._entries, "slow_test_describer", _Slow)
    start = time.perf_counter()
    texts, errors = describe_many([_rocksalt()], "slow_test_describer", workers=1, timeout=0.3)
    assert texts == [None] and "timed out after 0.3 s" in errors[0]
    assert time.perf_counter() - start < 3
