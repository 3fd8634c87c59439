"""``crysfuse preprocess`` fills the caches (parallel, incremental, damage rebuilt); lazy items equal eager ones
and training from a preprocessed cache recomputes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crysfuse.config import Config
from crysfuse.data import cache as graph_cache_module
from crysfuse.data import pipeline, store
from crysfuse.data.cache import GraphCache, graph_settings, structure_key
from crysfuse.data.pipeline import prepare
from crysfuse.data.sources import load_records
from crysfuse.data.store import MANIFEST, ItemList, LazyItems, item_list, preprocess
from crysfuse.data.texts import TextSide
from crysfuse.text import encoder as encoder_module
from tests.conftest import SHARED_DATA, TINY_MODEL

TEXT_FILE = SHARED_DATA / "mp36k.desc_jarvis.jsonl.gz"


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory, mp36k_slice) -> tuple[Path, Config, dict]:
    """The 40-record slice preprocessed (graphs in 2 worker processes, chunks of 8) into a fresh cache."""
    cache = tmp_path_factory.mktemp("pre_cache")
    config = _config(mp36k_slice, cache)
    first = preprocess(config, workers=2, chunk_size=8, progress=False)
    return cache, config, first.__dict__


def _config(data: Path, cache: Path) -> Config:
    return Config().with_overrides([
        f"data.path='{data}'", "data.target='gap pbe'", f"data.cache_dir='{cache}'", f"data.text_file='{TEXT_FILE}'",
    ])


class _Counter:
    """Counts calls of the text encoder and the graph builder (monkeypatched)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.encoded = 0
        self.graphs = 0
        original_encode = encoder_module.TextEncoder.encode
        from crysfuse.data import graphs

        original_build = graphs.build_crystal_graph

        def encode(this, texts):
            self.encoded += len(texts)
            return original_encode(this, texts)

        def build(*args, **kwargs):
            self.graphs += 1
            return original_build(*args, **kwargs)

        monkeypatch.setattr(encoder_module.TextEncoder, "encode", encode)
        monkeypatch.setattr(graphs, "build_crystal_graph", build)
        monkeypatch.setattr(graph_cache_module, "build_crystal_graph", build)  # the one graph-building routine
        monkeypatch.setattr(store, "build_crystal_graph", build)  # lazy items rebuilding a damaged entry


def _same(a, b, *, text_atol: float = 0.0) -> None:
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():  # noqa: SIM118 - iterating a Data yields (key, value) pairs
        if torch.is_tensor(a[key]):
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            if key.startswith("text_") and text_atol:
                assert torch.allclose(a[key].float(), b[key].float(), atol=text_atol), key
            else:
                assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_preprocess_fills_the_caches_and_writes_a_manifest(preprocessed) -> None:
    cache, _, first = preprocessed
    assert first["records"] == 40
    assert first["graphs_built"] + first["graphs_rejected"] == 40 and first["graphs_cached"] == 0
    assert first["embeddings_encoded"] == first["texts"] > 0 and first["embeddings_cached"] == 0
    assert len(list((cache / "graphs").rglob("*.safetensors"))) == first["graphs_built"]
    assert len(list((cache / "embeddings").rglob("*.safetensors"))) == first["texts"]
    manifest = json.loads((cache / MANIFEST).read_text())
    assert manifest["records"] == 40 and manifest["encoder_id"].startswith("minilm@")


def test_rerun_is_incremental(preprocessed, monkeypatch) -> None:
    _, config, first = preprocessed
    counter = _Counter(monkeypatch)
    again = preprocess(config, workers=1, progress=False)
    assert again.graphs_built == 0 and again.embeddings_encoded == 0
    assert again.graphs_cached == first["graphs_built"] and again.embeddings_cached == first["texts"]
    assert counter.encoded == 0 and counter.graphs == 0


def test_truncated_entries_are_detected_and_rebuilt(preprocessed, mp36k_slice) -> None:
    cache, config, _ = preprocessed
    record = load_records(mp36k_slice, "gap pbe").records[3]
    graph_file = GraphCache(cache).path(structure_key(record.structure, graph_settings(config)))
    text_file = TextSide(config, cache).cache.path(record.text or _texts(config)[record.id])
    before = graph_file.read_bytes(), text_file.read_bytes()
    for path in (graph_file, text_file):
        damaged = path.read_bytes()[: path.stat().st_size // 2]
        path.unlink()
        path.write_bytes(damaged)
    again = preprocess(config, workers=1, progress=False)
    assert again.graphs_built == 1 and again.embeddings_encoded == 1
    assert graph_file.read_bytes() == before[0]
    assert text_file.stat().st_size == len(before[1])


def _texts(config: Config) -> dict[str, str]:
    from crysfuse.data.text_files import read_text_file

    return read_text_file(config.data.text_file)


def test_lazy_items_equal_eager_items_and_survive_damage(preprocessed, mp36k_slice) -> None:
    cache, config, _ = preprocessed
    records = load_records(mp36k_slice, "gap pbe").records
    eager = prepare(records, config, uses_text=True, lazy=False)
    lazy = prepare(records, config, uses_text=True, lazy=True)
    assert isinstance(lazy.items, LazyItems) and isinstance(eager.items, dict)
    assert list(lazy.items) == list(eager.items) and len(lazy.items) == len(eager.items)
    assert lazy.text.encoder_id == eager.text.encoder_id and lazy.text.dim_text == eager.text.dim_text
    assert lazy.texts == eager.texts
    for record_id in eager.items:
        _same(eager.items[record_id], lazy.items[record_id])
    # a subset is a lazy dataset, a plain list for in-memory items
    ids = list(eager.items)[5:9]
    subset = item_list(lazy.items, ids)
    assert isinstance(subset, ItemList) and len(subset) == 4
    for a, b in zip(item_list(eager.items, ids), subset):
        _same(a, b)
    # damage after prepare(): the entry is rebuilt on access, not trusted
    fresh = prepare(records, config, uses_text=True, lazy=True)
    record = records[7]
    graph_file = GraphCache(cache).path(structure_key(record.structure, graph_settings(config)))
    text_file = fresh.text_side.cache.path(fresh.texts[record.id])
    for path in (graph_file, text_file):  # a new file: the eager items may still map the old one
        damaged = path.read_bytes()[:100]
        path.unlink()
        path.write_bytes(damaged)
    # (re-encoded alone rather than in a padded batch: equal up to float noise)
    _same(eager.items[record.id], fresh.items[record.id], text_atol=1e-2)


def test_training_from_a_preprocessed_cache_recomputes_nothing(preprocessed, mp36k_slice, tmp_path,
                                                               monkeypatch) -> None:
    from crysfuse.cli import main

    cache, _, _ = preprocessed
    monkeypatch.setattr(pipeline, "LAZY_MIN_RECORDS", 1)  # the path full-size data takes
    counter = _Counter(monkeypatch)
    args = ["train", "--data", str(mp36k_slice), "--target", "gap pbe", "--fusion", "cross_attention",
            "--epochs", "1", "--run-dir", str(tmp_path / "run"), "--cache-dir", str(cache),
            "--text-file", str(TEXT_FILE)]
    for setting in TINY_MODEL:
        args += ["--set", setting]
    assert main(args) == 0
    assert counter.encoded == 0 and counter.graphs == 0
    assert (tmp_path / "run" / "metrics.json").exists() or any((tmp_path / "run").iterdir())


def test_preprocess_cli(mp36k_slice, tmp_path, capsys) -> None:
    from crysfuse.cli import main

    cache = tmp_path / "cache"
    assert main(["preprocess", "--data", str(mp36k_slice), "--limit", "6", "--cache", str(cache), "--no-text",
                 "--workers", "1", "--no-progress"]) == 0
    assert "graphs 6 built" in capsys.readouterr().out
    assert main(["preprocess", "--data", str(mp36k_slice), "--limit", "6", "--cache", str(cache), "--no-text",
                 "--no-progress"]) == 0
    assert "graphs 0 built, 6 cached" in capsys.readouterr().out
