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
