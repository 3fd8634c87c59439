"""Warm start (issue 14): a second read of a JARVIS JSON source parses no structure when the checks and the
graphs are cached, and gives the same records, rejections, graph keys and items as a cold read."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from pymatgen.core import Lattice, Structure

from crysfuse.config import Config
from crysfuse.data import jarvis_json
from crysfuse.data.cache import graph_settings, record_key, structure_key
from crysfuse.data.graphs import GraphSettings
from crysfuse.data.pipeline import prepare
from crysfuse.data.records import StructureRecord
from crysfuse.data.sources import load_records
from crysfuse.data.verdicts import WARM_START_ENV, CheckedStore, jarvis_key_data, structure_key_data
from tests.conftest import TINY_MODEL, jarvis_record


def _atoms(lattice, elements, coords, **extra) -> dict:
    return {"lattice_mat": lattice, "coords": coords, "elements": elements, "cartesian": False,
            "props": [""] * len(elements), **extra}


CUBE = [[4, 0, 0], [0, 4, 0], [0, 0, 4]]


def _mixed_file(tmp_path: Path) -> Path:
    """Good rows and every kind of row the load-time checks reject (parse errors, isolated atoms, targets,
    duplicates), in an order that interleaves them."""
    good = [jarvis_record(f"g{i}", Structure(Lattice.cubic(5.6 + 0.01 * i), ["Na", "Cl"],
                                             [[0, 0, 0], [0.5, 0.5, 0.5]]), y=float(i)) for i in range(6)]
    lonely = Structure(Lattice.cubic(40.0), ["Na", "Cl", "K"], [[0, 0, 0], [0.07, 0, 0], [0.5, 0.5, 0.5]])
    bad = [
        {"id": "xx", "y": 1.0, "atoms": _atoms(CUBE, ["Xx"], [[0, 0, 0]])},
        jarvis_record("lonely", lonely, y=1.0),
        {"id": "mismatch", "y": 1.0, "atoms": _atoms(CUBE, ["Na", "Cl"], [[0, 0, 0]])},
        {"id": "none", "y": 1.0, "atoms": _atoms(CUBE, [], [])},
        {"id": "flat", "y": 1.0, "atoms": _atoms([[4, 0, 0], [0, 4, 0], [0, 0, 0]], ["Na"], [[0, 0, 0]])},
        {"id": "cart", "y": 2.0, "atoms": {**_atoms(CUBE, ["Na", "Cl"], [[0, 0, 0], [2, 2, 2]]), "cartesian": True}},
        {"id": "ints", "y": 2.0, "atoms": _atoms(CUBE, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])},
        jarvis_record("nan", Structure(Lattice.cubic(5.0), ["K"], [[0, 0, 0]]), y=float("nan")),
        jarvis_record("g1", Structure(Lattice.cubic(6.0), ["K"], [[0, 0, 0]]), y=1.0),
        {"id": "noatoms", "y": 1.0},
    ]
    rows = [row for pair in zip(good, bad) for row in pair] + bad[len(good):]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


@pytest.fixture
def parse_counter(monkeypatch) -> list[int]:
    """Counts the JARVIS structures parsed (by the JSON reader, now or lazily)."""
    calls = [0]
    real = jarvis_json.structure_from_jarvis_dict

    def counting(atoms):
        calls[0] += 1
        return real(atoms)

    monkeypatch.setattr(jarvis_json, "structure_from_jarvis_dict", counting)
    return calls


def _summary(result) -> tuple:
    return ([(r.id, r.stage, r.reason) for r in result.rejections],
            [(r.id, r.target, r.text) for r in result.records])


def test_rejections_and_records_identical_cold_warm_and_off(tmp_path, parse_counter, monkeypatch):
    path, checks = _mixed_file(tmp_path), tmp_path / "cache"
    cold = load_records(path, "y", checks_dir=checks)
    assert (checks / "checked-v1.txt").is_file()
    parsed_cold = parse_counter[0]
    warm = load_records(path, "y", checks_dir=checks)
    parsed_warm = parse_counter[0] - parsed_cold
    monkeypatch.setenv(WARM_START_ENV, "0")
    off = load_records(path, "y", checks_dir=checks)
    plain = load_records(path, "y")
    assert _summary(cold) == _summary(warm) == _summary(off) == _summary(plain)
    assert {r.stage for r in cold.rejections} >= {"structure", "target", "load"}
    # warm: only the rows the checks did not pass before are parsed (the good rows are lazy)
    lazy = [r for r in warm.records if not r.parsed]
    assert {r.id for r in lazy} == {r.id for r in cold.records} - {"cart"}
    assert parsed_warm == 15 - len(lazy)  # 15 rows have atoms
    for w, c in zip(warm.records, cold.records):
        assert record_key(w, GraphSettings()) == structure_key(c.structure, GraphSettings())
        assert w == c  # parses w now


def test_raw_key_equals_structure_key_on_real_records(mp36k_path):
    with gzip.open(mp36k_path, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)[::97]  # ~380 records across the whole file
    result = jarvis_json.records_from_jarvis_rows(rows, "gap pbe", limit=None, require_target=True, source="mp36k")
    assert len(result.records) == len(rows)
    settings = [GraphSettings(), GraphSettings(cutoff=6.0, max_neighbors=8)]
    for row, record in zip(rows, result.records):
        key_data = jarvis_key_data(row["atoms"])
        assert key_data is not None and key_data == structure_key_data(record.structure)
        lazy = StructureRecord(record.id, parse=lambda: pytest.fail("parsed"), key_data=key_data)
        for s in settings:
            assert record_key(lazy, s) == structure_key(record.structure, s)


def test_key_data_is_none_off_the_plain_path():
    assert jarvis_key_data(_atoms(CUBE, ["Xx"], [[0, 0, 0]])) is None
    assert jarvis_key_data(_atoms(CUBE, ["Na", "Cl"], [[0, 0, 0]])) is None
    assert jarvis_key_data({**_atoms(CUBE, ["Na"], [[0, 0, 0]]), "cartesian": True}) is None
    assert jarvis_key_data(_atoms(CUBE, [], [])) is None
    assert jarvis_key_data(_atoms([[4, 0], [0, 4]], ["Na"], [[0, 0, 0]])) is None
    assert jarvis_key_data(_atoms(CUBE, ["Na"], [[0, 0, 0]])) is not None


def test_store_survives_unreadable_and_read_only(tmp_path):
    store = CheckedStore(tmp_path)
    assert "x" not in store
    store.add(b"abc")
    store.save()
    assert len(CheckedStore(tmp_path).keys) == 1
    (tmp_path / "checked-v1.txt").write_bytes(b"\xff\xfe")
    assert len(CheckedStore(tmp_path).keys) == 0


def test_warm_start_parses_no_structure_and_items_are_identical(mp36k_slice, tmp_path, parse_counter):
    config = Config().with_overrides([f"data.cache_dir='{tmp_path}'", f"data.path='{mp36k_slice}'",
                                      "data.target='gap pbe'", *TINY_MODEL])
    from crysfuse.data.sources import load_config_records

    cold = load_config_records(config)
    cold_items = prepare(cold.records, config, uses_text=False, lazy=True).items
    parse_counter[0] = 0
    warm = load_config_records(config)
    prepared = prepare(warm.records, config, uses_text=False, lazy=True)
    eager = prepare(warm.records, config, uses_text=False, lazy=False)
    assert parse_counter[0] == 0 and not any(r.parsed for r in warm.records)
    assert _summary(warm) == _summary(cold) and list(prepared.items) == list(cold_items)
    for record_id in list(cold_items)[:5]:
        a, b, c = cold_items[record_id], prepared.items[record_id], eager.items[record_id]
        for name in ("atomic_numbers", "edge_index", "edge_vectors", "line_edge_index", "bond_cosines", "y"):
            assert torch.equal(getattr(a, name), getattr(b, name))
            assert torch.equal(getattr(a, name), getattr(c, name))
    assert parse_counter[0] == 0
    # a damaged graph entry is rebuilt from the (now parsed) structure of that record only
    last = warm.records[-1]
    key = record_key(last, graph_settings(config))
    (tmp_path / "graphs" / key[:2] / f"{key}.safetensors").write_bytes(b"garbage")
    rebuilt = prepared.items[last.id]
    assert torch.equal(rebuilt.edge_index, cold_items[last.id].edge_index)
    assert parse_counter[0] == 1 and last.parsed and not warm.records[0].parsed
