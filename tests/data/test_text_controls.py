"""The text controls of the fusion study: shuffled descriptions and the composition-only describer."""

from __future__ import annotations

import json

from pymatgen.core import Lattice, Structure

from crysfuse.config import Config
from crysfuse.data.describers import DESCRIBERS
from crysfuse.data.records import StructureRecord
from crysfuse.data.texts import TextInfo, resolve_texts, shuffled_texts


def test_shuffled_texts_is_a_seeded_derangement():
    texts = [f"text {i}" for i in range(50)]
    shuffled = shuffled_texts(texts, seed=3)
    assert sorted(shuffled) == sorted(texts)
    assert all(a != b for a, b in zip(texts, shuffled))  # nobody keeps their own text
    assert shuffled == shuffled_texts(texts, seed=3) and shuffled != shuffled_texts(texts, seed=4)
    assert shuffled_texts(["only"], seed=0) == ["only"] and shuffled_texts([], seed=0) == []


def test_resolve_texts_shuffles_only_when_asked(nacl, silicon, tmp_path):
    records = [StructureRecord(f"r{i}", nacl if i % 2 else silicon, text=f"description {i}") for i in range(6)]
    config = Config().replace({"text.describer": ""})
    plain = resolve_texts(records, config, tmp_path, TextInfo())
    assert plain == [f"description {i}" for i in range(6)]
    shuffled = resolve_texts(records, config.replace({"data.shuffle_texts": True}), tmp_path, TextInfo())
    assert sorted(shuffled) == sorted(plain) and all(a != b for a, b in zip(plain, shuffled))


def test_the_composition_describer_names_only_the_chemistry():
    describer = DESCRIBERS.get("composition")()
    gallia = Structure(Lattice.cubic(4.0), ["Ga", "Ga", "O", "O", "O"],
                       [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    assert describer.describe(gallia) == ("The compound Ga2O3 contains two elements: oxygen (O, 60% of the atoms) "
                                          "and gallium (Ga, 40% of the atoms).")
    # The same composition in another lattice gives the same text: no structure leaks into it.
    assert describer.describe(gallia.copy().scale_lattice(200.0)) == describer.describe(gallia)
    silicon = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert describer.describe(silicon) == "The compound Si contains one element: silicon (Si, 100% of the atoms)."


def test_a_shuffled_text_file_gives_each_crystal_the_same_foreign_text_whichever_records_are_loaded(
        nacl, tmp_path):
    text_file = tmp_path / "texts.jsonl"
    text_file.write_text("\n".join(json.dumps({"id": f"r{i}", "text": f"description {i}"}) for i in range(30)))
    config = Config().replace({"text.describer": "", "data.text_file": str(text_file), "data.shuffle_texts": True})
    records = [StructureRecord(f"r{i}", nacl) for i in range(30)]
    everything = dict(zip((r.id for r in records), resolve_texts(records, config, tmp_path, TextInfo())))
    assert all(text != f"description {key[1:]}" for key, text in everything.items())
    some = records[5:12]  # e.g. a robustness evaluation that loads only the test split
    assert resolve_texts(some, config, tmp_path, TextInfo()) == [everything[r.id] for r in some]


def test_texts_from_outside_the_shuffled_file_are_shuffled_too(nacl, tmp_path):
    """Records with their own text, or whose id the file lacks, must not keep their true text in the control."""
    text_file = tmp_path / "texts.jsonl"
    text_file.write_text("\n".join(json.dumps({"id": f"r{i}", "text": f"file {i}"}) for i in range(10)))
    config = Config().replace({"text.describer": "", "data.text_file": str(text_file), "data.shuffle_texts": True})
    records = [StructureRecord(f"r{i}", nacl, text=f"own {i}" if i in (2, 3) else None) for i in range(10)]
    records += [StructureRecord(f"x{i}", nacl, text=f"own x{i}") for i in range(3)]  # not in the file
    truth = [r.text or f"file {r.id[1:]}" for r in records]
    shuffled = resolve_texts(records, config, tmp_path, TextInfo())
    assert all(a != b for a, b in zip(truth, shuffled))
    assert sorted(t for t in shuffled if t.startswith("own")) == ["own 2", "own 3", "own x0", "own x1", "own x2"]


def test_the_composition_text_of_a_decorated_structure_with_a_trace():
    describer = DESCRIBERS.get("composition")()
    species = ["Fe"] * 3 + ["O"] * 196 + ["Ni"]  # 0.5 % nickel
    structure = Structure(Lattice.cubic(20.0), species, [[i / 200, 0, 0] for i in range(200)])
    structure.add_oxidation_state_by_element({"Fe": 3, "O": -2, "Ni": 2})
    text = describer.describe(structure)
    assert "O2-" not in text and "oxygen (O, 98% of the atoms)" in text and "nickel (Ni, <1% of the atoms)" in text
