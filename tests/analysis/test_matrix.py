"""Matrix expansion: ``{out}``/``{seed}`` placeholders and two-stage cells waiting for the runs they start from."""

from __future__ import annotations

import json
from pathlib import Path

from crysfuse.analysis.matrix import _waves, load_matrix


def test_two_stage_cells_start_from_their_own_seed_and_run_in_the_second_wave(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps({
        "variants": ["graph_only", "concat"], "seeds": [0, 1],
        "extra": {"": [], "two_stage": ["train.init_from={out}/runs/graph_only/seed{seed}"]},
    }))
    out = tmp_path / "out"
    matrix = load_matrix(path, out, only=["graph_only", "concat", "concat+two_stage"])
    two_stage = [c for c in matrix.cells if c.label == "concat+two_stage"]
    assert [Path(c.config.train.init_from) for c in two_stage] == [out / "runs" / "graph_only" / f"seed{s}"
                                                                   for s in (0, 1)]
    first, later = _waves(matrix.cells, matrix.cells)
    assert later == two_stage and all(c.config.train.init_from is None for c in first)
    # Starting from a run outside the matrix (already finished elsewhere): no reason to wait.
    outside = load_matrix(path, tmp_path / "other", only=["concat"],
                          overrides=[f"train.init_from={tmp_path}/elsewhere/seed{{seed}}"])
    assert _waves(outside.cells, outside.cells) == [outside.cells]


def test_the_files_own_row_selection_and_the_callers(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps({
        "variants": ["graph_only", "quality"], "seeds": [0],
        "extra": {"": [], "shuffled": ["data.shuffle_texts=true"], "matched": ["model.dim_head=300"]},
        "only": ["quality", "quality+shuffled", "graph_only+matched"],
    }))
    labels = [c.label for c in load_matrix(path, tmp_path / "out").cells]
    assert labels == ["graph_only+matched", "quality", "quality+shuffled"]
    narrowed = load_matrix(path, tmp_path / "out", only=["quality+shuffled", "graph_only"]).cells
    assert [c.label for c in narrowed] == ["quality+shuffled"] and narrowed[0].config.data.shuffle_texts


def test_a_bad_row_selection_is_refused_with_the_rows_there_are(tmp_path):
    import pytest

    from crysfuse.config import ConfigError

    path = tmp_path / "m.yaml"
    spec = {"variants": ["graph_only", "quality"], "extra": {"": [], "shuffled": ["data.shuffle_texts=true"]}}
    for only, message in (("quality", "is a list"), (["quality+shufled"], "no variant × extra makes")):
        path.write_text(json.dumps({**spec, "only": only}))
        with pytest.raises(ConfigError, match=message):
            load_matrix(path, tmp_path / "out")
    path.write_text(json.dumps({**spec, "only": ["quality"]}))
    with pytest.raises(ConfigError, match=r"none of \['graph_only'\]"):
        load_matrix(path, tmp_path / "out", only=["graph_only"])


def test_a_two_stage_cell_whose_source_failed_is_skipped(tmp_path):
    from crysfuse.analysis.matrix import _source_failed

    path = tmp_path / "m.yaml"
    path.write_text(json.dumps({"variants": ["graph_only", "concat"], "seeds": [0],
                                "extra": {"": [], "two_stage": ["train.init_from={out}/runs/graph_only/seed{seed}"]},
                                "only": ["graph_only", "concat+two_stage"]}))
    graph_only, two_stage = load_matrix(path, tmp_path / "out").cells
    assert _source_failed(two_stage, [str(graph_only.run_dir)]) and not _source_failed(two_stage, [])
    assert not _source_failed(graph_only, [str(graph_only.run_dir)])
