"""``crysfuse explain``: the model's own attention weights, tokens grouped into words, files and errors."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from crysfuse.analysis import explain as explain_module
from crysfuse.analysis.explain import NotExplainableError, explain_item, explainable_maps
from crysfuse.analysis.words import TokenAlignmentError, group_by_markers, group_by_offsets, token_words
from crysfuse.cli import main
from crysfuse.data.dataset import make_crystal_data
from crysfuse.data.graphs import build_crystal_graph
from crysfuse.models.crysfuse import CrysFuseModel
from crysfuse.rundir import load_run
from crysfuse.rundir.layout import ATTENTION_JSON_FILE, TOP_WORDS_CSV_FILE
from tests.helpers import DIM_TEXT, tiny_config

TEXT = "TiO2 crystallizes in the tetragonal P4_2/mnm space group. Ti-O bond lengths are 1.95 Å."


def test_group_by_offsets_makes_whitespace_words_and_keeps_special_tokens():
    text = "TiO2 is 1.95 Å."
    tokens = ["[CLS]", "ti", "##o", "##2", "is", "1", ".", "95", "a", ".", "[SEP]"]
    offsets = [None, (0, 2), (2, 3), (3, 4), (5, 7), (8, 9), (9, 10), (10, 12), (13, 14), (14, 15), None]
    words = group_by_offsets(tokens, offsets, text)
    assert words.words == ["[CLS]", "TiO2", "is", "1.95", "Å.", "[SEP]"]
    assert words.word_of_token == [0, 1, 1, 1, 2, 3, 3, 3, 4, 4, 5]
    merged = words.merge(np.full((2, 11), 1 / 11))
    assert merged.shape == (2, 6)
    assert np.allclose(merged.sum(1), 1.0)
    assert merged[0, 1] == pytest.approx(3 / 11)


def test_group_by_markers_for_wordpiece_and_sentencepiece():
    assert group_by_markers(["[CLS]", "ti", "##o", "##2", "is", "[SEP]"], ["[CLS]", "[SEP]"]).words == [
        "[CLS]", "tio2", "is", "[SEP]"]
    pieces = group_by_markers(["<s>", "\u2581Ti", "O", "2", "\u2581is", "</s>"], ["<s>", "</s>"])
    assert pieces.words == ["<s>", "TiO2", "is", "</s>"]
    assert pieces.word_of_token == [0, 1, 1, 1, 2, 3]


@pytest.fixture(scope="module")
def tokenizer():
    from crysfuse.text.encoder import EncoderSettings, TextEncoder

    return TextEncoder(EncoderSettings()).tokenizer


def test_token_words_must_match_the_cached_token_count(tokenizer):
    count = len(tokenizer(TEXT)["input_ids"])
    words = token_words(tokenizer, TEXT, max_length=256, num_tokens=count)
    assert words.words[0] == "[CLS]" and words.words[-1] == "[SEP]"
    assert "TiO2" in words.words and "P4_2/mnm" in words.words and "1.95" in words.words
    with pytest.raises(TokenAlignmentError, match="no longer matches"):
        token_words(tokenizer, TEXT, max_length=256, num_tokens=count + 1)


def _loaded(fusion: str, extra: list[str] | None = None) -> SimpleNamespace:
    torch.manual_seed(0)
    config = tiny_config(fusion, extra)
    return SimpleNamespace(model=CrysFuseModel(config, dim_text=DIM_TEXT).eval(), config=config)


def _item(tokenizer, structure):
    count = len(tokenizer(TEXT)["input_ids"])
    tokens = torch.randn(count, DIM_TEXT, generator=torch.Generator().manual_seed(1)).half()
    return make_crystal_data(build_crystal_graph(structure), tokens=tokens, pooled=tokens.float().mean(0).half(),
                             target=1.5, index=0)


def _capture(module: torch.nn.MultiheadAttention, store: list) -> None:
    module.register_forward_hook(lambda _m, _inputs, output: store.append(output[1].detach().clone()))


def test_explain_returns_the_modules_own_attention_weights(tokenizer, nacl):
    """The atoms' rows are exactly what the MultiheadAttention layer returned (captured by a hook), sum to 1
    over the tokens, spread over many tokens, and the word rows are the pieces' sums."""
    loaded = _loaded("cross_attention")
    seen: list[torch.Tensor] = []
    _capture(loaded.model.fusion.atoms_to_text.attention, seen)
    item = _item(tokenizer, nacl.make_supercell([1, 1, 2], in_place=False))
    explanation = explain_item(loaded, "x-1", item, TEXT, tokenizer)
    assert explanation.atoms == ["Na0", "Na1", "Cl2", "Cl3"]  # the supercell orders sites by element
    maps = {m.name: m for m in explanation.maps}
    assert set(maps) == {"atoms_to_text", "graph_to_text"}
    atoms = maps["atoms_to_text"]
    count = item.text_tokens.shape[0]
    assert atoms.token_weights.shape == (4, count)
    assert np.allclose(atoms.token_weights, seen[-1][0, :4, :count].numpy(), atol=1e-7)
    assert np.allclose(atoms.token_weights.sum(1), 1.0, atol=1e-5)
    assert (atoms.token_weights > 1e-3).sum(1).min() > 2  # many keys, not the prior system's single key
    assert atoms.weights.shape == (4, len(explanation.text.words))
    assert np.allclose(atoms.weights.sum(1), 1.0, atol=1e-5)
    word = explanation.text.words.index("TiO2")
    pieces = [i for i, w in enumerate(explanation.text.word_of_token) if w == word]
    assert len(pieces) > 1 and np.isclose(atoms.weights[0, word], atoms.token_weights[0, pieces].sum())
    assert maps["graph_to_text"].queries == ["graph"] and maps["graph_to_text"].weights.shape[0] == 1


def test_gated_family_explains_graph_to_text_and_text_to_atoms(tokenizer, nacl):
    loaded = _loaded("gated")
    seen: list[torch.Tensor] = []
    _capture(loaded.model.fusion.attend.text_to_atoms.attention, seen)
    explanation = explain_item(loaded, "x", _item(tokenizer, nacl), TEXT, tokenizer)
    maps = {m.name: m for m in explanation.maps}
    assert maps["text_to_atoms"].weights.shape == (1, 2)
    assert np.allclose(maps["text_to_atoms"].weights, seen[-1][0].numpy(), atol=1e-7)
    assert explanation.keys_of(maps["text_to_atoms"]) == ["Na0", "Cl1"]
    assert np.allclose(maps["text_to_atoms"].weights.sum(), 1.0, atol=1e-5)


def test_middle_fusion_reports_its_gate_per_atom(tokenizer, nacl):
    loaded = _loaded("concat", ["fusion.middle_layers=[0]"])
    assert explainable_maps(loaded) == {}
    explanation = explain_item(loaded, "x", _item(tokenizer, nacl), TEXT, tokenizer)
    assert explanation.maps == [] and len(explanation.atom_gates["middle0"]) == 2


@pytest.mark.parametrize("fusion", ["concat", "graph_only"])
def test_a_model_without_attention_is_a_clear_error(fusion):
    with pytest.raises(NotExplainableError, match="no attention between atoms and text tokens"):
        explainable_maps(_loaded(fusion))


def test_explain_command_on_a_trained_run(train_tiny, tmp_path, monkeypatch, capsys):
    run_dir = train_tiny("cross_attention")
    loaded = load_run(run_dir)
    seen: list[torch.Tensor] = []
    _capture(loaded.model.fusion.atoms_to_text.attention, seen)
    monkeypatch.setattr(explain_module, "load_run", lambda _run: loaded)
    out = tmp_path / "explain"
    assert main(["explain", "--checkpoint", str(run_dir), "--out", str(out), "--n", "2"]) == 0
    data = json.loads((out / ATTENTION_JSON_FILE).read_text())
    test_ids = json.loads((run_dir / "splits.json").read_text())["test"][:2]
    assert [c["id"] for c in data["crystals"]] == test_ids
    for crystal, weights in zip(data["crystals"], seen):
        atoms = crystal["maps"]["atoms_to_text"]
        assert atoms["queries"] == crystal["atoms"] and atoms["keys"] == crystal["words"]
        token_weights = np.array(atoms["token_weights"])
        assert np.allclose(token_weights, weights[0, :len(crystal["atoms"]), :len(crystal["tokens"])].numpy(),
                           atol=1e-6)
        assert np.allclose(np.array(atoms["weights"]).sum(1), 1.0, atol=1e-4)
    with (out / TOP_WORDS_CSV_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["map"] for r in rows} == {"atoms_to_text", "graph_to_text"}
    assert len(list(out.glob("attention_*.png"))) == 2
    assert "atoms_to_text" in capsys.readouterr().out


def test_explain_command_refuses_a_run_without_attention(train_tiny, tmp_path, caplog):
    run_dir = train_tiny("concat")
    assert main(["explain", "--checkpoint", str(run_dir), "--out", str(tmp_path / "x")]) == 2
    assert "no attention between atoms and text tokens" in caplog.text


def test_report_shows_attention_maps_of_test_crystals(train_tiny, tmp_path):
    run_dir = train_tiny("cross_attention")
    test_ids = json.loads((run_dir / "splits.json").read_text())["test"][:3]
    page_path = tmp_path / "run.html"
    assert main(["report", str(run_dir), "--out", str(page_path)]) == 0
    page = page_path.read_text()
    assert ">Attention maps<" in page and "atoms_to_text" in page
    for record_id in test_ids:
        assert f'alt="attention {record_id}"' in page
    assert main(["report", str(run_dir), "--out", str(tmp_path / "off.html"), "--explain", "0"]) == 0
    assert "Attention maps" not in (tmp_path / "off.html").read_text()


def test_report_shows_explain_output_found_in_the_run(train_tiny, tmp_path):
    import shutil

    run_dir = shutil.copytree(train_tiny("cross_attention"), tmp_path / "run")
    other_id = json.loads((run_dir / "splits.json").read_text())["val"][0]
    assert main(["explain", "--checkpoint", str(run_dir), "--ids", other_id, "--out", str(run_dir / "explain")]) == 0
    assert main(["report", str(run_dir), "--out", str(tmp_path / "run.html")]) == 0
    page = (tmp_path / "run.html").read_text()
    assert page.count('alt="attention_') == 1 and other_id in page


def test_report_of_a_run_without_attention_has_no_attention_section(train_tiny, tmp_path):
    assert main(["report", str(train_tiny("concat")), "--out", str(tmp_path / "run.html")]) == 0
    assert "Attention maps" not in (tmp_path / "run.html").read_text()


def test_report_with_attention_maps_fits_the_window_in_chromium(train_tiny, tmp_path):
    from tests.analysis.test_compare_report import (
        _assert_fits_the_window,
        _open_in_chromium,
        _screenshot_path,
    )

    page_path = tmp_path / "run.html"
    assert main(["report", str(train_tiny("cross_attention")), "--out", str(page_path)]) == 0
    screenshot = _screenshot_path(tmp_path, "report_attention.png")
    info = _open_in_chromium(page_path, screenshot)
    assert info["errors"] == [] and sum(alt.startswith("attention ") for alt, _ in info["images"]) == 3
    _assert_fits_the_window(info, screenshot)
