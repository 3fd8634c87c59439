"""Notebook-style use: crysfuse.load(...).predict(structures) gives the numbers `crysfuse predict` gives."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest

import crysfuse
from crysfuse.cli import main
from crysfuse.data.sources import structure_from_jarvis_dict
from tests.conftest import SHARED_DATA, TINY_MODEL


@pytest.fixture(scope="module")
def described_run(tmp_path_factory, mp36k_slice, cache_dir):
    """A run whose texts come from the built-in describer (no text file)."""
    config = crysfuse.Config().with_overrides(TINY_MODEL + [
        f"data.path='{mp36k_slice}'", "data.target='gap pbe'", f"data.cache_dir='{cache_dir}'",
        "fusion.name=simplified", "train.epochs=1",
        f"experiment.run_dir='{tmp_path_factory.mktemp('api') / 'run'}'",
    ])
    result = crysfuse.train(config)
    assert config.data.text_file is None and result.summary["text_missing"] == 0  # every record was described
    return result.run_dir


def _cli_predictions(run_dir, data, out, *extra):
    assert main(["predict", "--checkpoint", str(run_dir), "--data", str(data), "--out", str(out), *extra]) == 0
    with open(out, newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_predict_structures_without_texts_matches_the_cli(described_run, mp36k_slice, tmp_path):
    records = json.loads(mp36k_slice.read_text())[:12]
    structures = [structure_from_jarvis_dict(r["atoms"]) for r in records]
    ids = [r["id"] for r in records]
    model = crysfuse.load(described_run)
    result = model.predict(structures, ids=ids, batch_size=5)
    assert result.ids == ids and result.prediction.shape == (12,)
    assert result.gates["gate"].shape == (12,) and ((result.gates["gate"] >= 0) & (result.gates["gate"] <= 1)).all()
    cli = _cli_predictions(described_run, mp36k_slice, tmp_path / "cli.csv")
    expected = np.array([float(cli[i]["prediction"]) for i in ids])
    np.testing.assert_allclose(result.prediction, expected, rtol=1e-5, atol=1e-6)


def test_predict_with_texts_and_file_paths(described_run, mp36k_slice, tmp_path):
    records = json.loads(mp36k_slice.read_text())[:6]
    with gzip.open(SHARED_DATA / "mp36k.desc_jarvis.jsonl.gz", "rt") as handle:
        wanted = {r["id"] for r in records}
        texts = {}
        for line in handle:
            item = json.loads(line)
            if item["id"] in wanted:
                texts[item["id"]] = item["text"]
            if len(texts) == len(wanted):
                break
    ids = [r["id"] for r in records]
    paths = []
    for record in records:
        path = tmp_path / f"{record['id']}.cif"
        structure_from_jarvis_dict(record["atoms"]).to(filename=str(path))
        paths.append(path)
    model = crysfuse.load(described_run)
    structures = [structure_from_jarvis_dict(r["atoms"]) for r in records]
    with_texts = model.predict(structures, texts=[texts[i] for i in ids], ids=ids)
    # File paths are parsed by pymatgen, exactly as a Structure read from the same file.
    from pymatgen.core import Structure

    from_paths = model.predict(paths, texts=[texts[i] for i in ids], ids=ids)
    from_files = model.predict([Structure.from_file(p) for p in paths], texts=[texts[i] for i in ids], ids=ids)
    np.testing.assert_array_equal(from_paths.prediction, from_files.prediction)
    text_file = tmp_path / "texts.jsonl"
    text_file.write_text("".join(json.dumps({"id": i, "text": texts[i]}) + "\n" for i in ids))
    cli = _cli_predictions(described_run, mp36k_slice, tmp_path / "cli.csv", "--text-file", str(text_file))
    expected = np.array([float(cli[i]["prediction"]) for i in ids])
    np.testing.assert_allclose(with_texts.prediction, expected, rtol=1e-5, atol=1e-5)
    frame = with_texts.to_dataframe()
    assert list(frame.columns) == ["id", "prediction", "gate"]


def test_bad_inputs_are_reported_not_raised(described_run):
    model = crysfuse.load(described_run)
    result = model.predict(["not a structure at all"], ids=["junk"])
    assert result.ids == [] and result.rejections[0].id == "junk"
