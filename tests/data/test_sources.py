from __future__ import annotations

import gzip
import json
import math
import sys
import zipfile
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from crysfuse.data.objects import records_from_structures, save_records
from crysfuse.data.sources import DataSourceError, load_records
from crysfuse.data.tables import write_table
from crysfuse.data.text_files import read_text_file
from tests.conftest import SHARED_DATA, TINY_MODEL, jarvis_record, require_shared


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


def test_ids_keep_only_the_named_records(tmp_path, nacl):
    records = [jarvis_record(f"id-{i}", nacl, y=float(i)) for i in range(10)]
    records.append({"id": "broken", "atoms": {"elements": ["Na"]}, "y": 1.0})
    path = _write_json(tmp_path / "d.json", records)
    result = load_records(path, "y", ids={"id-7", "id-2", "not-there"})
    assert [r.id for r in result.records] == ["id-2", "id-7"] and result.rejections == []
    assert [r.id for r in load_records(path, "y", ids=["broken"]).rejections] == ["broken"]
    rows = [{"id": i, "structure": nacl.to(fmt="cif"), "gap": 1.0} for i in ("a", "b")]
    table = write_table(rows, tmp_path / "d.csv")
    assert [r.id for r in load_records(table, "gap", ids={"b"}).records] == ["b"]


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


# ------------------------------------------------------------------------------------ new sources (issue 6)

CRYSMMNET = SHARED_DATA / "crysmmnet_sample" / "shear_modulus"


@pytest.fixture
def crysmmnet_sample() -> Path:
    return require_shared(CRYSMMNET)


needs_crysmmnet = pytest.mark.usefixtures("crysmmnet_sample")


def _structures(n: int, seed: int = 0) -> list[Structure]:
    """``n`` distinct small rock-salt / CsCl crystals with varied lattice constants."""
    pairs = [("Na", "Cl"), ("K", "Br"), ("Mg", "O"), ("Cs", "I"), ("Li", "F")]
    out = []
    for i in range(n):
        a, b = pairs[i % len(pairs)]
        out.append(Structure(Lattice.cubic(4.0 + 0.05 * i + 0.01 * seed), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    return out


@needs_crysmmnet
def test_crysmmnet_folder_root_and_cleaned_text():
    result = load_records(CRYSMMNET, "target", limit=40)
    assert len(result.records) == 40 and not result.rejections
    assert all(r.text and "np.int64" not in r.text for r in result.records)
    assert "(0, 0, 1) direction" in result.records[0].text  # np.int64(0) reprs cleaned
    same = load_records(CRYSMMNET.parent, "shear_modulus", limit=3)
    assert [r.id for r in same.records] == [r.id for r in result.records[:3]]
    assert load_records(CRYSMMNET, "shear_modulus", limit=1).records[0].target == result.records[0].target
    assert load_records(CRYSMMNET / "description.csv", "target", limit=2).records[1].id == result.records[1].id
    with pytest.raises(DataSourceError, match="CrysMMNet root with the properties"):
        load_records(CRYSMMNET.parent, "bulk_modulus")
    with pytest.raises(DataSourceError, match="no column 'bulk'"):
        load_records(CRYSMMNET, "bulk")


def test_crysmmnet_layout_built_here(tmp_path, nacl, silicon):
    folder = tmp_path / "root" / "band_gap"
    (folder / "cif").mkdir(parents=True)
    nacl.to(filename=str(folder / "cif" / "a.cif"))
    silicon.to(filename=str(folder / "cif" / "b.cif"))
    (folder / "description.csv").write_text(
        "id,composition,target,description,source\n"
        'a,NaCl,5.0,"NaCl is is salt with (np.int64(0), np.float64(1.5)).",robocrys\n'
        "b,Si,1.1,,robocrys\nc,X,2.0,text,robocrys\n", encoding="utf-8")
    result = load_records(folder, "target")
    assert [r.id for r in result.records] == ["a", "b"]
    assert result.records[0].text == "NaCl is salt with (0, 1.5)."
    assert result.records[1].text is None  # empty description = missing (a describer fills it in)
    assert "no structure file" in result.rejections[0].reason


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet"])
def test_tables_with_cif_or_dict_columns(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    structures = _structures(4)
    rows = [
        {"material_id": "cif", "structure": structures[0].to(fmt="cif"), "gap": 1.0, "text": "a crystal"},
        {"material_id": "pmg", "structure": json.dumps(structures[1].as_dict()), "gap": 2.0, "text": ""},
        {"material_id": "jarvis", "structure": json.dumps(jarvis_record("x", structures[2])["atoms"]), "gap": 3.0,
         "text": None},
        {"material_id": "poscar", "structure": structures[3].to(fmt="poscar"), "gap": 4.0, "text": None},
        {"material_id": "bad", "structure": "data_x\n_cell_length_a oops\n", "gap": 5.0, "text": None},
        {"material_id": "nan", "structure": structures[0].to(fmt="cif"), "gap": float("nan"), "text": None},
    ]
    if suffix.startswith(".jsonl"):  # JSONL carries dicts as dicts
        rows[1]["structure"] = structures[1].as_dict()
    path = write_table(rows, tmp_path / f"t{suffix}")
    result = load_records(path, "gap")
    assert {r.id: r.target for r in result.records} == {"cif": 1.0, "pmg": 2.0, "jarvis": 3.0, "poscar": 4.0}
    assert [r.text for r in result.records] == ["a crystal", None, None, None]
    reasons = {r.id: (r.stage, r.reason) for r in result.rejections}
    assert reasons["bad"][0] == "structure" and reasons["nan"][0] == "target"
    with pytest.raises(DataSourceError, match="no column 'bandgap'"):
        load_records(path, "bandgap")


def test_table_errors(tmp_path, monkeypatch):
    (tmp_path / "nostruct.csv").write_text("id,gap\na,1\n")
    with pytest.raises(DataSourceError, match="no structure column"):
        load_records(tmp_path / "nostruct.csv", "gap")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataSourceError, match=r"pip install 'crysfuse\[tables\]'"):
        load_records(tmp_path / "t.parquet", "gap")
    with pytest.raises(DataSourceError, match="unsupported data source"):
        load_records(tmp_path / "nostruct.txt" if (tmp_path / "nostruct.txt").write_text("x") else None, "gap")


def test_python_api_accepts_pymatgen_jarvis_and_ase(tmp_path, nacl, silicon):
    from jarvis.core.atoms import Atoms as JarvisAtoms
    from pymatgen.io.ase import AseAtomsAdaptor

    jatoms = JarvisAtoms.from_dict(jarvis_record("j", silicon)["atoms"])
    ase_atoms = AseAtomsAdaptor.get_atoms(nacl)
    result = records_from_structures(
        [nacl, jatoms, ase_atoms, "garbage", nacl], targets=[1.0, 2.0, 3.0, 4.0, float("inf")],
        ids=["pmg", "jarvis", "ase", "bad", "inf"], texts=["NaCl", None, "", None, None])
    assert [(r.id, r.target, r.text) for r in result.records] == [
        ("pmg", 1.0, "NaCl"), ("jarvis", 2.0, None), ("ase", 3.0, None)]
    assert len(result.records[1].structure) == 2
    assert {r.id: r.stage for r in result.rejections} == {"bad": "structure", "inf": "target"}
    saved = save_records(result.records, tmp_path / "api.json.gz")
    again = load_records(saved, "target")
    assert [(r.id, r.target, r.text) for r in again.records] == [(r.id, r.target, r.text) for r in result.records]
    unlabelled = records_from_structures([nacl, silicon])
    assert [r.id for r in unlabelled.records] == ["0", "1"] and math.isnan(unlabelled.records[0].target)
    with pytest.raises(DataSourceError, match="targets has 1 entries for 2"):
        records_from_structures([nacl, silicon], targets=[1.0])


def _jarvis_zip(folder, json_name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{json_name}.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(json_name, json.dumps(rows))
    return folder / f"{json_name}.zip"


def test_jarvis_dataset_offline_error_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSFUSE_JARVIS_DIR", str(tmp_path / "jcache"))
    with pytest.raises(DataSourceError) as info:
        load_records("jarvis:megnet", "e_form")
    message = str(info.value)
    assert "jarvis:megnet" in message and "megnet.json.zip" in message
    assert str(tmp_path / "jcache" / "megnet.json.zip") in message and "cannot be downloaded" in message
    with pytest.raises(DataSourceError, match="unknown JARVIS data set 'nope'"):
        load_records("jarvis:nope", "e_form")


def test_jarvis_dataset_from_the_local_cache(tmp_path, monkeypatch, nacl, silicon):
    monkeypatch.setenv("CRYSFUSE_JARVIS_DIR", str(tmp_path / "jcache"))
    rows = [{**jarvis_record("", nacl, e_form=-1.0), "jid": "JVASP-1"},
            {**jarvis_record("", silicon, e_form="na"), "jid": "JVASP-2"}]
    for row in rows:
        del row["id"]
    zip_path = _jarvis_zip(tmp_path / "jcache", "megnet.json", rows)
    result = load_records("jarvis:megnet", "e_form")
    assert [r.id for r in result.records] == ["JVASP-1"]
    assert result.rejections[0].id == "JVASP-2" and "not a number" in result.rejections[0].reason
    with pytest.raises(DataSourceError, match="no record has the target 'gap'"):
        load_records("jarvis:megnet", "gap")
    zip_path.write_bytes(zip_path.read_bytes()[:40])
    with pytest.raises(DataSourceError, match="may be truncated"):
        load_records("jarvis:megnet", "e_form")


# ------------------------------------------------------------------- end to end: crysfuse train per source


def _train(tmp_path, cache_dir, data, target, *extra):
    from crysfuse.cli import main

    run_dir = tmp_path / "run"
    args = ["train", "--data", str(data), "--target", target, "--epochs", "1", "--run-dir", str(run_dir),
            "--cache-dir", str(cache_dir), *extra]
    for setting in TINY_MODEL:
        args += ["--set", setting]
    assert main(args) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_train"] > 0 and math.isfinite(summary["val_mae"])
    return summary


@needs_crysmmnet
def test_train_on_crysmmnet_sample(tmp_path, cache_dir):
    summary = _train(tmp_path, cache_dir, CRYSMMNET, "target", "--limit", "40")
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 40 and summary["text_missing"] == 0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl.gz", ".parquet"])
def test_train_on_tables(tmp_path, cache_dir, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    structures = _structures(30, seed=1)
    rows = [{"id": f"s{i}", "cif": s.to(fmt="cif"), "y": float(s.lattice.a), "text": f"A crystal of {s.formula}."}
            for i, s in enumerate(structures)]
    path = write_table(rows, tmp_path / f"table{suffix}")
    summary = _train(tmp_path, cache_dir, path, "y")
    assert summary["n_rejected"] == 0 and summary["text_missing"] == 0


def test_train_on_python_objects(tmp_path, cache_dir):
    structures = _structures(30, seed=2)
    result = records_from_structures(structures, targets=[s.volume for s in structures],
                                     texts=[f"{s.formula} crystal" for s in structures])
    path = save_records(result.records, tmp_path / "api.json")
    summary = _train(tmp_path, cache_dir, path, "target")
    assert summary["n_rejected"] == 0


def test_train_on_jarvis_dataset_from_local_cache(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("CRYSFUSE_JARVIS_DIR", str(tmp_path / "jcache"))
    rows = []
    for i, s in enumerate(_structures(30, seed=3)):
        row = jarvis_record("", s, optb88vdw_bandgap=float(i % 5), text=f"{s.formula} rock salt")
        del row["id"]
        rows.append({**row, "jid": f"JVASP-{i}"})
    _jarvis_zip(tmp_path / "jcache", "jdft_3d-9-24-2025.json", rows)
    summary = _train(tmp_path, cache_dir, "jarvis:dft_3d", "optb88vdw_bandgap")
    assert summary["data"] == "jarvis:dft_3d" and summary["n_rejected"] == 0
