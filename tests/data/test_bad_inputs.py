"""The bad-input corpus (issue 6): every kind of broken input gives a clear error or a rejection with a reason.

Each case builds its input in a temporary folder and runs it through the real path: ``load_records`` and
``crysfuse.data.pipeline.prepare`` (graphs), or the CLI (``crysfuse data check`` / ``crysfuse train``). A case
expects either a :class:`DataSourceError` whose message matches, or the bad row's id in the rejections with a
stage and a reason that matches, with every good row kept: nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from crysfuse.config import Config
from crysfuse.data.cache import GraphCache, graph_settings, structure_key
from crysfuse.data.pipeline import prepare
from crysfuse.data.sources import DataSourceError, load_records
from tests.conftest import TINY_MODEL, jarvis_record


def _good(i: int = 0) -> Structure:
    return Structure(Lattice.cubic(5.64 + 0.01 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _json(tmp: Path, bad_rows: list[dict], name: str = "d.json") -> Path:
    rows = [jarvis_record(f"good-{i}", _good(i), y=float(i)) for i in range(3)] + bad_rows
    path = tmp / name
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def _atoms(lattice, elements, coords) -> dict:
    return {"lattice_mat": lattice, "coords": coords, "elements": elements, "cartesian": False,
            "props": [""] * len(elements)}


def _cgcnn(tmp: Path, files: dict[str, str], id_prop: str | bytes) -> Path:
    folder = tmp / "cgcnn"
    folder.mkdir()
    for i in range(3):
        _good(i).to(filename=str(folder / f"good-{i}.cif"))
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    good = "".join(f"good-{i},{i}\n" for i in range(3))
    (folder / "id_prop.csv").write_bytes(id_prop if isinstance(id_prop, bytes) else (good + id_prop).encode())
    return folder


@dataclass
class Case:
    build: Callable[[Path], Path]
    expect_error: str | None = None  # regex of the DataSourceError message
    bad_id: str | None = None  # id expected among the rejections
    stage: str | None = None
    reason: str | None = None  # regex of the rejection reason
    target: str = "y"


CASES: dict[str, Case] = {
    "garbage CIF": Case(lambda t: _cgcnn(t, {"bad.cif": "data_x\n_cell_length_a banana\nloop_\n"}, "bad,1\n"),
                        bad_id="bad", stage="structure", reason="cannot parse", target="target"),
    "CIF without atoms": Case(lambda t: _cgcnn(t, {"empty.cif": "data_x\n_cell_length_a 4\n_cell_length_b 4\n"
                                                   "_cell_length_c 4\n_cell_angle_alpha 90\n_cell_angle_beta 90\n"
                                                   "_cell_angle_gamma 90\n"}, "empty,1\n"),
                              bad_id="empty", stage="structure", reason="cannot parse", target="target"),
    "unknown element symbol": Case(lambda t: _json(t, [{"id": "xx", "y": 1.0,
                                                        "atoms": _atoms([[4, 0, 0], [0, 4, 0], [0, 0, 4]], ["Xx"],
                                                                        [[0, 0, 0]])}]),
                                   bad_id="xx", stage="structure", reason="unknown element"),
    "element without CGCNN features": Case(
        lambda t: _json(t, [jarvis_record("md", Structure(Lattice.cubic(3.5), ["Md"], [[0, 0, 0]]), y=1.0)]),
        bad_id="md", stage="graph", reason="Md|101"),
    "overlapping atoms": Case(
        lambda t: _json(t, [jarvis_record("overlap", Structure(Lattice.cubic(4.0), ["Na", "Cl"],
                                                               [[0, 0, 0], [0.01, 0, 0]]), y=1.0)]),
        bad_id="overlap", stage="graph", reason="overlapping atoms"),
    "zero-volume cell": Case(lambda t: _json(t, [{"id": "flat", "y": 1.0, "atoms": _atoms(
        [[4, 0, 0], [0, 4, 0], [0, 0, 0]], ["Na"], [[0, 0, 0]])}]), bad_id="flat", reason="degenerate|singular"),
    "singular (coplanar) cell": Case(lambda t: _json(t, [{"id": "coplanar", "y": 1.0, "atoms": _atoms(
        [[4, 0, 0], [0, 4, 0], [4, 4, 0]], ["Na"], [[0, 0, 0]])}]), bad_id="coplanar", reason="degenerate|singular"),
    "isolated atom": Case(
        lambda t: _json(t, [jarvis_record("lonely", Structure(Lattice.cubic(40.0), ["Na", "Cl", "K"],
                                                              [[0, 0, 0], [0.07, 0, 0], [0.5, 0.5, 0.5]]), y=1.0)]),
        bad_id="lonely", stage="structure", reason="no neighbour within 8 Å"),
    "1,001-atom cell": Case(
        lambda t: _json(t, [jarvis_record("huge", Structure(
            Lattice.cubic(2.5 * 11), ["Na"] * 1001,
            [[(k % 11) / 11, (k // 11 % 11) / 11, (k // 121) / 11] for k in range(1001)]), y=1.0)]),
        bad_id="huge", stage="graph", reason="1001 atoms, more than max_atoms=1000"),
    "no atoms": Case(lambda t: _json(t, [{"id": "none", "y": 1.0, "atoms": _atoms(
        [[4, 0, 0], [0, 4, 0], [0, 0, 4]], [], [])}]), bad_id="none", reason="no atoms|unparseable"),
    "coordinates / elements mismatch": Case(lambda t: _json(t, [{"id": "mismatch", "y": 1.0, "atoms": _atoms(
        [[4, 0, 0], [0, 4, 0], [0, 0, 4]], ["Na", "Cl"], [[0, 0, 0]])}]), bad_id="mismatch", stage="structure",
        reason="2 elements for 1 coordinates"),
    "NaN coordinates": Case(lambda t: _json(t, [{"id": "nancoord", "y": 1.0, "atoms": _atoms(
        [[4, 0, 0], [0, 4, 0], [0, 0, 4]], ["Na"], [[float("nan"), 0, 0]])}]), bad_id="nancoord",
        reason="non-finite|nan|NaN"),
    "disordered structure": Case(
        lambda t: _json(t, [], "unused.json") and _cgcnn(t, {"dis.cif": Structure(
            Lattice.cubic(4.2), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")},
            "dis,1\n"), bad_id="dis", stage="structure", reason="disordered", target="target"),
    "NaN target": Case(lambda t: _json(t, [jarvis_record("nan", _good(5), y=float("nan"))]),
                       bad_id="nan", stage="target", reason="not finite"),
    "inf target": Case(lambda t: _json(t, [jarvis_record("inf", _good(5), y=float("inf"))]),
                       bad_id="inf", stage="target", reason="not finite"),
    "string target": Case(lambda t: _json(t, [jarvis_record("str", _good(5), y="n/a")]),
                          bad_id="str", stage="target", reason="not a number: 'n/a'"),
    "missing target": Case(lambda t: _json(t, [jarvis_record("absent", _good(5))]),
                           bad_id="absent", stage="target", reason="missing"),
    "misspelt target": Case(lambda t: _json(t, []), expect_error="no record has the target 'Y'", target="Y"),
    "duplicate ids": Case(lambda t: _json(t, [jarvis_record("good-1", _good(7), y=1.0)]),
                          bad_id="good-1", stage="load", reason="duplicate id"),
    "JSON target true": Case(lambda t: _json(t, [jarvis_record("bool", _good(5), y=True)]),
                             bad_id="bool", stage="target", reason="is a boolean, not a number"),
    "JSON target list": Case(lambda t: _json(t, [jarvis_record("list", _good(5), y=[1.0])]),
                             bad_id="list", stage="target", reason="is a list, not a number"),
    "JSON target object": Case(lambda t: _json(t, [jarvis_record("obj", _good(5), y={"v": 1.0})]),
                               bad_id="obj", stage="target", reason="is a object .mapping., not a number"),
    "id pointing outside the folder": Case(
        lambda t: _good(9).to(filename=str(t / "other.cif")) and _cgcnn(t, {}, "../other,1\n"),
        bad_id="../other", stage="structure", reason="points outside the data folder", target="target"),
    "absolute id": Case(lambda t: _good(9).to(filename=str(t / "abs.cif")) and _cgcnn(t, {}, f"{t / 'abs'},1\n"),
                        bad_id=None, stage="structure", reason="points outside the data folder", target="target"),
    "atoms dict missing its lattice": Case(lambda t: _json(t, [{"id": "nolat", "y": 1.0, "atoms": {
        "elements": ["Na"], "coords": [[0, 0, 0]]}}]), bad_id="nolat", stage="structure",
        reason="the atoms dict has no 'lattice_mat'"),
    "missing structure file": Case(lambda t: _cgcnn(t, {}, "ghost,1\n"), bad_id="ghost", stage="structure",
                                   reason="no structure file", target="target"),
    "row that is not an object": Case(lambda t: _json(t, [[1, 2, 3]]), bad_id="#3", stage="load",
                                      reason="not an object"),
    "truncated gzip": Case(lambda t: _truncated_gzip(t), expect_error="cannot be read"),
    "wrong JSON schema": Case(lambda t: (t / "s.json").write_text('{"a": 1}') and t / "s.json",
                              expect_error="expected a JSON list"),
    "not JSON at all": Case(lambda t: (t / "g.json").write_text("<html>") and t / "g.json",
                            expect_error="cannot be read as JSON"),
    "empty id_prop.csv": Case(lambda t: _cgcnn(t, {}, b""), expect_error="is empty", target="target"),
    "non-UTF-8 id_prop.csv": Case(lambda t: _cgcnn(t, {}, b"good-0,1\ncaf\xe9,2\n"),
                                  expect_error="not valid UTF-8: byte 0xe9 on line 2", target="target"),
    "non-UTF-8 text in a table": Case(lambda t: _table_bytes(t, "t.csv", b'id,cif,y,text\na,"",1,"caf\xe9"\n'),
                                      expect_error="not valid UTF-8: byte 0xe9 on line 2"),
    "empty structure cell in a table": Case(lambda t: _table_bytes(t, "t.csv", _csv_good() + b'e,,1,x\n'),
                                            bad_id="e", stage="structure", reason="empty"),
    "truncated JSONL line": Case(lambda t: _table_bytes(t, "t.jsonl", _jsonl_good() + b'{"id": "cut", "cif": "da'),
                                 bad_id="line 4", stage="load", reason="not valid JSON"),
    "table without a structure column": Case(lambda t: _table_bytes(t, "t.csv", b"id,y\na,1\n"),
                                             expect_error="no structure column"),
    "unsupported file type": Case(lambda t: (t / "d.xlsx").write_bytes(b"PK") and t / "d.xlsx",
                                  expect_error="unsupported data source"),
    "missing path": Case(lambda t: t / "nothing.json", expect_error="does not exist"),
    "truncated jarvis zip": Case(lambda t: _truncated_jarvis_zip(t), expect_error="may be truncated"),
}


def _truncated_gzip(tmp: Path) -> Path:
    data = gzip.compress(json.dumps([jarvis_record(f"a{i}", _good(i), y=1.0) for i in range(30)]).encode())
    path = tmp / "t.json.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _csv_good() -> bytes:
    lines = ["id,cif,y,text"] + [f'g{i},"{_good(i).to(fmt="cif")}",{i},ok' for i in range(3)]
    return ("\n".join(lines) + "\n").encode()


def _jsonl_good() -> bytes:
    return "".join(json.dumps({"id": f"g{i}", "cif": _good(i).to(fmt="cif"), "y": i}) + "\n"
                   for i in range(3)).encode()


def _table_bytes(tmp: Path, name: str, data: bytes) -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _truncated_jarvis_zip(tmp: Path) -> str:
    import os
    import zipfile

    folder = tmp / "jcache"
    folder.mkdir()
    with zipfile.ZipFile(folder / "megnet.json.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("megnet.json", json.dumps([jarvis_record("a", _good(), y=1.0)] * 20))
    data = (folder / "megnet.json.zip").read_bytes()
    (folder / "megnet.json.zip").write_bytes(data[: len(data) // 2])
    os.environ["CRYSFUSE_JARVIS_DIR"] = str(folder)  # restored by the fixture below
    return "jarvis:megnet"


@pytest.fixture(autouse=True)
def _restore_jarvis_env(monkeypatch):
    monkeypatch.delenv("CRYSFUSE_JARVIS_DIR", raising=False)


def _config(tmp: Path) -> Config:
    return Config().with_overrides(TINY_MODEL + [f"data.cache_dir='{tmp / 'cache'}'"])


def test_the_corpus_has_at_least_twenty_kinds():
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path):
    case = CASES[name]
    source = case.build(tmp_path)
    if case.expect_error is not None:
        with pytest.raises(DataSourceError, match=case.expect_error):
            load_records(source, case.target)
        return
    loaded = load_records(source, case.target)
    prepared = prepare(loaded.records, _config(tmp_path), uses_text=False)
    rejections = loaded.rejections + prepared.rejections
    bad_id = case.bad_id or next(r.id for r in rejections if r.id.startswith(str(tmp_path)))
    matching = [r for r in rejections if r.id == bad_id]
    assert matching, f"{bad_id} not rejected: {rejections}"
    rejection = matching[0]
    assert _is_a_sentence(rejection.reason), rejection
    if case.stage:
        assert rejection.stage == case.stage, rejection
    if case.reason:
        import re

        assert re.search(case.reason, rejection.reason), rejection
    # nothing silent: every good row made it, and every row is either an item or a rejection
    assert {f"good-{i}" for i in range(3)} <= set(prepared.items) or {f"g{i}" for i in range(3)} <= set(prepared.items)
    ids_in = {r.id for r in loaded.records} | {r.id for r in loaded.rejections}
    assert set(prepared.items) | {r.id for r in prepared.rejections} == {r.id for r in loaded.records}
    assert bad_id in ids_in


def _is_a_sentence(reason: str) -> bool:
    """Words a person reads, not bare exception text such as ``'props'`` or ``KeyError``."""
    return len(reason.split()) >= 3 and not re.fullmatch(r"\W*[\w.]+\W*", reason)


def test_bare_exception_text_becomes_a_sentence():
    from crysfuse.data.records import error_sentence

    assert error_sentence(KeyError("props")) == "the key 'props' is missing"
    assert _is_a_sentence(error_sentence(KeyError("props"))) and not _is_a_sentence("'props'")
    assert error_sentence(RuntimeError()) == "RuntimeError (no message)"
    assert error_sentence(ValueError("structure has no atoms")) == "structure has no atoms"
    assert "IndexError" not in error_sentence(IndexError("list index out of range"))


def test_jarvis_atoms_dict_without_props_is_accepted(tmp_path):
    atoms = _atoms([[4, 0, 0], [0, 4, 0], [0, 0, 4]], ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    del atoms["props"], atoms["cartesian"]
    loaded = load_records(_json(tmp_path, [{"id": "noprops", "y": 2.5, "atoms": atoms}]), "y")
    assert not loaded.rejections
    record = {r.id: r for r in loaded.records}["noprops"]
    assert record.target == 2.5 and record.structure.composition.reduced_formula == "NaCl"


def _headerless_cgcnn(tmp: Path, n: int) -> Path:
    folder = tmp / "cg"
    folder.mkdir()
    for i in range(n):
        _good(i).to(filename=str(folder / f"s{i}.cif"))
    (folder / "id_prop.csv").write_text("".join(f"s{i},{0.1 * i:.2f}\n" for i in range(n)))
    return folder


def test_headerless_cgcnn_folder_defaults_to_its_value_column(tmp_path, capsys):
    from crysfuse.cli import main
    from crysfuse.data.sources import default_target

    folder = _headerless_cgcnn(tmp_path, 4)
    assert default_target(folder) == "target" and default_target(tmp_path) is None
    assert main(["data", "check", str(folder), "--no-graphs"]) == 0
    out = capsys.readouterr().out
    assert "target: 4 values" in out and "(target 'target')" in out
    (folder / "id_prop.csv").write_text("s0,1.0,2.0\n")  # two value columns: the user must choose
    assert default_target(folder) is None


def test_train_on_a_headerless_cgcnn_folder_needs_no_target(tmp_path, cache_dir):
    from crysfuse.cli import main

    run_dir = tmp_path / "run"
    args = ["train", "--data", str(_headerless_cgcnn(tmp_path, 24)), "--epochs", "1", "--run-dir", str(run_dir),
            "--cache-dir", str(cache_dir), "--fusion", "graph_only"]
    for setting in TINY_MODEL:
        args += ["--set", setting]
    assert main(args) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["target"] == "target" and math.isfinite(summary["test_mae"])


# ------------------------------------------------------------------------------------- text and caches


def _text_corpus(tmp: Path) -> Path:
    rows = [jarvis_record(f"good-{i}", _good(i), y=float(i), text=f"Sodium chloride number {i}.") for i in range(3)]
    rows.append(jarvis_record("empty-text", _good(4), y=1.0, text="   "))
    rows.append(jarvis_record("long-text", _good(5), y=1.0, text=" ".join(["crystal"] * 10_000)))
    path = tmp / "texts.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_empty_and_10000_token_texts_are_reported_by_data_check(tmp_path, capsys):
    from crysfuse.cli import main

    path = _text_corpus(tmp_path)
    records = {r.id: r for r in load_records(path, "y").records}
    assert records["empty-text"].text is None  # empty = missing: described, or encoded as empty and counted
    summary_path = tmp_path / "summary.json"
    assert main(["data", "check", str(path), "--target", "y", "--cache-dir", str(tmp_path / "cache"),
                 "--json", str(summary_path)]) == 0
    out = capsys.readouterr().out
    assert "5 usable, 0 rejected" in out
    assert "text: 4 with text, 1 missing (described by 'jarvis' at training time)" in out
    assert "truncated at max_length 512: 1 of 4" in out
    summary = json.loads(summary_path.read_text())
    assert summary["text"]["truncated"] == 1 and summary["text"]["tokens"]["max"] > 10_000


def test_truncated_graph_cache_entry_is_rebuilt(tmp_path, caplog):
    path = _json(tmp_path, [])
    config = _config(tmp_path)
    records = load_records(path, "y").records
    first = prepare(records, config, uses_text=False)
    key = structure_key(records[0].structure, graph_settings(config))
    entry = GraphCache(tmp_path / "cache")._path(key)
    entry.write_bytes(entry.read_bytes()[:20])
    with caplog.at_level("WARNING"):
        second = prepare(records, config, uses_text=False)
    assert "unreadable" in caplog.text and "rebuilding" in caplog.text
    assert set(second.items) == set(first.items) and not second.rejections
    assert second.items["good-0"].edge_index.shape == first.items["good-0"].edge_index.shape


def test_truncated_description_cache_entry_is_redescribed(tmp_path, caplog):
    from crysfuse.data.describe import describe_many

    texts, errors = describe_many([_good()], "jarvis", cache_dir=tmp_path / "desc")
    entry = next((tmp_path / "desc").rglob("*.json"))
    entry.write_text(entry.read_text()[:15])
    with caplog.at_level("WARNING"):
        again, errors = describe_many([_good()], "jarvis", cache_dir=tmp_path / "desc")
    assert again == texts and not errors and "unreadable" in caplog.text


# -------------------------------------------------------------------------- through the CLI, end to end


def _mixed_corpus(tmp: Path) -> Path:
    rows = [jarvis_record(f"good-{i}", Structure(Lattice.cubic(4.0 + 0.05 * i), ["Na", "Cl"],
                                                 [[0, 0, 0], [0.5, 0.5, 0.5]]), y=float(i % 4)) for i in range(24)]
    rows += [
        jarvis_record("nan", _good(), y=float("nan")),
        jarvis_record("string", _good(), y="oops"),
        jarvis_record("good-3", _good(), y=1.0),
        jarvis_record("overlap", Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]), y=1.0),
        jarvis_record("md", Structure(Lattice.cubic(3.5), ["Md"], [[0, 0, 0]]), y=1.0),
        jarvis_record("lonely", Structure(Lattice.cubic(40.0), ["Na", "Cl", "K"],
                                          [[0, 0, 0], [0.07, 0, 0], [0.5, 0.5, 0.5]]), y=1.0),
        {"id": "flat", "y": 1.0, "atoms": _atoms([[4, 0, 0], [0, 4, 0], [0, 0, 0]], ["Na"], [[0, 0, 0]])},
        {"id": "no-atoms-field", "y": 1.0},
    ]
    path = tmp / "mixed.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


EXPECTED_REJECTED = {"nan", "string", "good-3", "overlap", "md", "lonely", "flat", "no-atoms-field"}


def test_data_check_reports_each_rejection(tmp_path, capsys):
    from crysfuse.cli import main

    path = _mixed_corpus(tmp_path)
    manifest = tmp_path / "rejections.csv"
    assert main(["data", "check", str(path), "--target", "y", "--cache-dir", str(tmp_path / "cache"),
                 "--rejections", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "32 read, 24 usable, 8 rejected" in out
    for stage in ("graph", "load", "structure", "target"):
        assert f"rejected at {stage}:" in out
    assert "elements: 2 distinct" in out and "atoms per cell: min 2" in out
    lines = manifest.read_text().splitlines()
    assert lines[0] == "id,stage,reason" and {line.split(",")[0] for line in lines[1:]} == EXPECTED_REJECTED


def test_train_writes_every_rejection_to_the_manifest(tmp_path, cache_dir):
    from crysfuse.cli import main

    run_dir = tmp_path / "run"
    args = ["train", "--data", str(_mixed_corpus(tmp_path)), "--target", "y", "--epochs", "1",
            "--run-dir", str(run_dir), "--cache-dir", str(cache_dir), "--fusion", "graph_only"]
    for setting in TINY_MODEL:
        args += ["--set", setting]
    assert main(args) == 0
    lines = (run_dir / "rejections.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in lines} == EXPECTED_REJECTED
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_rejected"] == 8 and math.isfinite(summary["val_mae"])


def test_train_on_a_source_with_no_usable_record_is_a_clear_error(tmp_path, cache_dir, caplog):
    from crysfuse.cli import main

    path = tmp_path / "bad.json"
    path.write_text(json.dumps([jarvis_record("a", _good(), y="x"), jarvis_record("b", _good(), y=None)]))
    args = ["train", "--data", str(path), "--target", "y", "--epochs", "1", "--run-dir", str(tmp_path / "run"),
            "--cache-dir", str(cache_dir), "--fusion", "graph_only"]
    assert main(args) == 2
    assert "0 records are too few" in caplog.text
