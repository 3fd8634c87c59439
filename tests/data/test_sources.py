from __future__ import annotations

import gzip
import json
import math

import pytest
from pymatgen.core import Lattice, Structure

from crysfuse.data.sources import DataSourceError, load_records, read_text_file
from tests.conftest import jarvis_record


def _write_json(path, records):
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_jarvis_json_bad_rows_are_rejected_with_reasons(tmp_path, nacl, silicon):
    bad_atoms = {"lattice_mat": [[1, 0], [0, 1]], "coords": [[0, 0, 0]], "elements": ["Na"]}
    records = [
        jarvis_record("ok-1", nacl, e_form=-1.5, text="NaCl is salt."),
        jarvis_record("nan", nacl, e_form=float("nan")),
        jarvis_record("string", nacl, e_form="n/a"),
        jarvis_record("missing", silicon),
        {"id": "garbage", "atoms": bad_atoms, "e_form": 1.0},
        {"id": "no-atoms", "e_form": 1.0},
        jarvis_record("ok-1", silicon, e_form=0.0),
        {"jid": "JVASP-2", "atoms": jarvis_record("x", silicon)["atoms"], "e_form": 0.25},
    ]
    result = load_records(_write_json(tmp_path / "d.json", records), "e_form")
    assert [r.id for r in result.records] == ["ok-1", "JVASP-2"]
    assert result.records[0].text == "NaCl is salt." and result.records[1].text is None
    reasons = {r.id: (r.stage, r.reason) for r in result.rejections}
    assert reasons["nan"][0] == "target" and "not finite" in reasons["nan"][1]
    assert "not a number" in reasons["string"][1]
    assert "missing" in reasons["missing"][1]
    assert reasons["garbage"][0] == "structure"
    assert "no 'atoms'" in reasons["no-atoms"][1]
    assert "duplicate" in reasons["ok-1"][1]
    assert len(result.records) + len(result.rejections) == len(records)


def test_limit_takes_the_first_rows(tmp_path, nacl):
    records = [jarvis_record(f"id-{i}", nacl, y=float(i)) for i in range(10)]
    result = load_records(_write_json(tmp_path / "d.json", records), "y", limit=4)
    assert [r.target for r in result.records] == [0.0, 1.0, 2.0, 3.0]


def test_prediction_without_target(tmp_path, nacl):
    result = load_records(_write_json(tmp_path / "d.json", [jarvis_record("a", nacl)]), "y", require_target=False)
    assert len(result.records) == 1 and math.isnan(result.records[0].target)


def test_truncated_gzip_and_wrong_schema_are_clear_errors(tmp_path, nacl):
    data = gzip.compress(json.dumps([jarvis_record("a", nacl, y=1.0)] * 50).encode())
    (tmp_path / "t.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataSourceError, match="cannot be read"):
        load_records(tmp_path / "t.json.gz", "y")
    (tmp_path / "s.json").write_text('{"a": 1}')
    with pytest.raises(DataSourceError, match="expected a JSON list"):
        load_records(tmp_path / "s.json", "y")
    with pytest.raises(DataSourceError, match="does not exist"):
        load_records(tmp_path / "nothing.json", "y")


def test_real_mp36k_slice_loads(mp36k_slice):
    result = load_records(mp36k_slice, "gap pbe")
    assert len(result.records) == 40 and not result.rejections
    assert all(len(r.structure) >= 1 for r in result.records)


def test_cgcnn_folder(tmp_path, nacl, silicon):
    folder = tmp_path / "cgcnn"
    folder.mkdir()
    nacl.to(filename=str(folder / "nacl.cif"))
    silicon.to(filename=str(folder / "si.vasp"), fmt="poscar")
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a nonsense\n")
    (folder / "id_prop.csv").write_text("nacl,1.5\nsi,0.5\nbroken,2.0\nghost,3.0\n")
    result = load_records(folder, "target")
    assert {r.id: r.target for r in result.records} == {"nacl": 1.5, "si": 0.5}
    stages = {r.id: r.reason for r in result.rejections}
    assert "no structure file" in stages["ghost"]
    assert "cannot parse" in stages["broken"]


def test_cgcnn_folder_with_header_picks_the_column(tmp_path, nacl):
    folder = tmp_path / "cg"
    folder.mkdir()
    nacl.to(filename=str(folder / "a.cif"))
    (folder / "id_prop.csv").write_text("id,gap,e_form\na,1.0,-2.0\n")
    assert load_records(folder, "e_form").records[0].target == -2.0
    with pytest.raises(DataSourceError, match="no column"):
        load_records(folder, "bulk")


def test_text_files(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "a", "text": "hello"}\n\n{"id": "b", "text": ""}\n')
    assert read_text_file(tmp_path / "t.jsonl") == {"a": "hello", "b": ""}
    (tmp_path / "t.csv").write_text('id,text\na,"one, two"\n')
    assert read_text_file(tmp_path / "t.csv") == {"a": "one, two"}
    with gzip.open(tmp_path / "t.jsonl.gz", "wt") as handle:
        handle.write('{"id": 1, "text": "x"}\n')
    assert read_text_file(tmp_path / "t.jsonl.gz") == {"1": "x"}
    (tmp_path / "bad.jsonl").write_text('{"identifier": "a"}\n')
    with pytest.raises(DataSourceError):
        read_text_file(tmp_path / "bad.jsonl")
