"""The study matrices of docs/results.md (configs/study): they expand, their learning-curve sizes are nested
slices with one validation and one test set (the parity slice's), and the parameter-matched control really
has the parameter count of the variant it controls."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from crysfuse.analysis.matrix import load_matrix
from crysfuse.models.crysfuse import matched_head_width

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "configs" / "study"
CURVES = sorted(STUDY.glob("curve_*.yaml"))
MATRICES = sorted(p for p in STUDY.glob("*.yaml") if p.name != "study.yaml")  # study.yaml: their base config
CANONICAL = REPO.parent / "shared" / "data" / "mp36k.split.json"


def _split(path: str) -> dict:
    return json.loads((REPO / path).read_text(encoding="utf-8"))


def test_the_learning_curve_sizes_are_nested_with_one_validation_and_test_set(tmp_path):
    splits = {}
    for path in CURVES:
        cells = load_matrix(path, tmp_path).cells
        (split_file,) = {c.config.data.split_file for c in cells}
        splits[path.stem] = _split(split_file)
    parity = _split("configs/parity/mp36k_3000.split.json")
    sizes = sorted(splits.values(), key=lambda s: len(s["train"]))
    assert [len(s["train"]) for s in sizes] == [1500, 3000, 6000, 29389]
    for smaller, larger in itertools.pairwise(sizes):
        assert larger["train"][:len(smaller["train"])] == smaller["train"]
    assert all(s["val"] == parity["val"] and s["test"] == parity["test"] for s in sizes)


def test_the_largest_size_is_the_whole_canonical_training_split():
    if not CANONICAL.is_file():
        pytest.skip(f"{CANONICAL} is not here")
    largest = _split("configs/study/mp36k_29389.split.json")
    assert largest["train"] == json.loads(CANONICAL.read_text(encoding="utf-8"))["train"]


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.stem)
def test_every_study_matrix_expands(path, tmp_path):
    cells = load_matrix(path, tmp_path).cells
    assert cells and all(c.config.train.epochs == 30 and c.config.train.patience == 10 for c in cells)


def test_the_matched_graph_only_has_qualitys_parameter_count(tmp_path):
    cells = {c.label: c for c in load_matrix(STUDY / "curve_1500.yaml", tmp_path).cells if c.seed == 0}
    matched = cells["graph_only+matched"].config
    width, _, _ = matched_head_width(cells["quality"].config, "quality", dim_text=384)  # MiniLM's width
    assert matched.model.dim_head == width
