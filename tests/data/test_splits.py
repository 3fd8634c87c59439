import json

import pytest

from crysfuse.config import Config
from crysfuse.data.splits import (
    SplitError,
    make_split,
    seeded_split,
    seeded_subset,
    split_from_file,
    split_ids,
)


def test_seeded_split_is_deterministic_and_disjoint():
    ids = [f"id-{i}" for i in range(103)]
    a = seeded_split(ids, (0.8, 0.1, 0.1), seed=3)
    b = seeded_split(list(reversed(ids)), (0.8, 0.1, 0.1), seed=3)
    assert a.to_dict() == b.to_dict()
    assert (len(a.train), len(a.val), len(a.test)) == (83, 10, 10)
    assert set(a.train) | set(a.val) | set(a.test) == set(ids)
    assert seeded_split(ids, (0.8, 0.1, 0.1), seed=4).to_dict() != a.to_dict()


def test_tiny_sets_still_get_val_and_test():
    split = seeded_split(["a", "b", "c", "d"], (0.8, 0.1, 0.1), seed=0)
    assert len(split.val) == 1 and len(split.test) == 1 and len(split.train) == 2


def test_split_file_keeps_loaded_ids_and_reports_missing(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": ["a", "b", "x"], "val": ["c"], "test": ["d", "y"]}))
    split = split_from_file(path, ["a", "b", "c", "d", "e"])
    assert split.train == ["a", "b"] and split.val == ["c"] and split.test == ["d"]
    assert split.missing == {"train": 1, "val": 0, "test": 1}


def test_bad_split_files(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": ["a"], "val": ["a"], "test": []}))
    with pytest.raises(SplitError, match="more than one"):
        split_from_file(path, ["a"])
    path.write_text(json.dumps({"train": ["a"]}))
    with pytest.raises(SplitError):
        split_from_file(path, ["a"])
    with pytest.raises(SplitError):
        seeded_split(["a", "b"], (0.5, 0.6, 0.1), seed=0)


def test_subsets_are_seeded_ordered_and_leave_test_whole(tmp_path):
    train = [f"t{i}" for i in range(50)]
    a = seeded_subset(train, 10, seed=0)
    assert len(a) == 10 == len(set(a)) and a == sorted(a, key=train.index)
    assert a == seeded_subset(train, 10, seed=0) and a != seeded_subset(train, 10, seed=1)
    assert seeded_subset(train, None, seed=0) == train == seeded_subset(train, 99, seed=0)
    with pytest.raises(SplitError):
        seeded_subset(train, 0, seed=0)

    path = tmp_path / "s.json"
    val, test = [f"v{i}" for i in range(8)], ["x1", "x2"]
    path.write_text(json.dumps({"train": train, "val": val, "test": test}))
    config = Config.from_dict({"data": {"split_file": str(path), "train_subset": 10, "val_subset": 3}})
    split = make_split(config, [*train, *val, *test])
    assert split.train == a and split.val == seeded_subset(val, 3, seed=0) and split.test == test
    assert split_ids(config) == {*a, *split.val, *test}
    assert split_ids(Config()) is None
    seeded = make_split(Config.from_dict({"data": {"train_subset": 10}}), train)
    assert len(seeded.train) == 10 and len(seeded.val) == len(seeded.test) == 5
