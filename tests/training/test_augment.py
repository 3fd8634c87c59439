"""Text-corruption augmentation: corrupted alternatives are real, seeded, and reach training."""

from __future__ import annotations

import json
from types import SimpleNamespace

from crysfuse.config import TextCorruptionConfig
from crysfuse.training.augment import TextCorruptionDataset, draw_corruptions


def test_draws_are_reproducible_and_follow_the_settings():
    settings = TextCorruptionConfig(probability=0.5, strategies=["sentence"], modes=["delete"], ratios=[1.0],
                                    variants=3)
    draws = draw_corruptions("mp-1", settings, seed=0)
    assert draws == draw_corruptions("mp-1", settings, seed=0)
    assert len(draws) == 3 and all(d.label == "sentence/delete/1" for d in draws)


def test_dataset_swaps_in_alternatives_with_the_given_probability():
    items = [SimpleNamespace(v=i) for i in range(1000)]
    dataset = TextCorruptionDataset(items, [[SimpleNamespace(v=-1)]] * 1000, probability=0.3, seed=0)
    drawn = [dataset[i] for i in range(1000)]
    swapped = sum(item.v == -1 for item in drawn)
    assert 240 < swapped < 360
    assert all(bool(item.text_corrupted) == (item.v == -1) for item in drawn)  # each item says what it got
    assert not hasattr(items[0], "text_corrupted")  # the shared items are left alone
    never = TextCorruptionDataset(items[1:3], [[SimpleNamespace(v=-1)]] * 2, probability=0.0, seed=0)
    assert [never[0].v, never[1].v] == [1, 2] and not never[0].text_corrupted


def test_training_with_augmentation_runs_and_logs(train_tiny, caplog):
    caplog.set_level("INFO", logger="crysfuse")
    run_dir = train_tiny("quality", "train.text_corruption.probability=0.5", "train.text_corruption.variants=1")
    splits = json.loads((run_dir / "splits.json").read_text())
    n_train = len(splits["train"])
    assert f"text augmentation: {n_train} corrupted texts for {n_train} training records" in caplog.text
    plain = train_tiny("quality")  # the same run without augmentation

    def train_losses(path):
        return [json.loads(line)["train_loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]

    assert len(train_losses(run_dir)) == len(train_losses(plain)) == 2
    assert train_losses(run_dir) != train_losses(plain)  # the corrupted texts reached the training batches


def test_corrupted_texts_of_a_fine_tuned_encoder_are_token_ids(tmp_path, nacl):
    """With ``text.finetune`` the alternatives carry token ids (what the model encodes itself), not embeddings."""
    import torch

    from crysfuse.config import Config
    from crysfuse.data.dataset import make_crystal_data
    from crysfuse.data.graphs import build_crystal_graph
    from crysfuse.data.texts import TextSide
    from crysfuse.training.augment import corrupted_alternatives

    config = Config().replace({"text.finetune": "last_k", "text.max_length": 32})
    side = TextSide(config, tmp_path)
    text = "NaCl crystallizes in the cubic Fm-3m space group. It is an ionic solid."
    item = make_crystal_data(build_crystal_graph(nacl), tokens=torch.zeros(0, 1, dtype=torch.float16),
                             pooled=torch.zeros(1, dtype=torch.float16), target=0.0, index=0)
    settings = TextCorruptionConfig(probability=1.0, strategies=["sentence"], modes=["delete"], ratios=[0.5],
                                    variants=2)
    [alternatives] = corrupted_alternatives(["mp-1"], {"mp-1": item}, {"mp-1": text}, side, settings, seed=0)
    assert len(alternatives) == 2
    full = side.text_inputs([text])[0].ids
    for other in alternatives:
        assert other.text_ids.dtype == torch.int32 and 0 < len(other.text_ids) < len(full)
    assert not (tmp_path / "embeddings").exists()  # nothing was encoded
