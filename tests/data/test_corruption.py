from __future__ import annotations

import pytest

from crysfuse.data.corruption import MODES, STRATEGIES, Corruption, CorruptionError, corrupt_text, is_keyword

TEXT = (
    "BaTe crystallizes in the cubic Fm-3m spacegroup, m-3m pointgroup with a prototype of AB. "
    "The atomic fractions are: 'Ba': 0.5, 'Te': 0.5 with electronegaticities as 0.89, 2.1. "
    "The bond distances are: Ba-Te: 3.54 Å. The lattice lengths are: 5.01, 5.01, 5.01 Å."
)


class WhitespaceTokenizer:
    """A real (if simple) tokenizer with the two methods corruption uses."""

    def tokenize(self, text):
        return text.replace(".", " .").split()

    def convert_tokens_to_string(self, tokens):
        return " ".join(tokens)


def _corrupt(strategy, mode, ratio, record_id="mp-1", seed=0):
    return corrupt_text(TEXT, Corruption(strategy, mode, ratio), record_id=record_id, seed=seed,
                        tokenizer=WhitespaceTokenizer())


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("mode", MODES)
def test_deterministic_per_record_and_seed(strategy, mode):
    assert _corrupt(strategy, mode, 0.5) == _corrupt(strategy, mode, 0.5)
    assert _corrupt(strategy, mode, 0.0) == TEXT
    variants = {_corrupt(strategy, mode, 0.5, record_id=f"id-{i}") for i in range(6)}
    assert len(variants) > 1  # different records get different choices


@pytest.mark.parametrize("strategy", ["random_token", "random_word", "sentence"])
def test_full_delete_gives_empty_text(strategy):
    assert _corrupt(strategy, "delete", 1.0) == ""


def test_mask_replaces_the_requested_fraction_of_words():
    words = TEXT.split()
    masked = _corrupt("random_word", "mask", 0.4).split()
    assert len(masked) == len(words)
    assert masked.count("[MASK]") == round(0.4 * len(words))


def test_sentence_strategy_works_on_whole_sentences():
    masked = _corrupt("sentence", "mask", 1.0)
    assert masked == "[MASK] [MASK] [MASK] [MASK]"


def test_keep_keywords_keeps_elements_numbers_and_symmetry():
    kept = _corrupt("keep_keywords", "delete", 1.0).split()
    for word in ("BaTe", "cubic", "Fm-3m", "0.5", "Ba-Te:", "5.01"):
        assert any(word in k for k in kept), word
    assert "crystallizes" not in kept and "prototype" not in kept
    assert is_keyword("P6_3/mmc") and is_keyword("Na(1)") and not is_keyword("the")


def test_missing_text_stays_missing_and_bad_settings_fail():
    assert corrupt_text(None, Corruption("random_word", "delete", 1.0), record_id="x") is None
    with pytest.raises(CorruptionError):
        Corruption("shuffle", "mask", 0.5)
    with pytest.raises(CorruptionError):
        Corruption("random_word", "mask", 1.5)
    with pytest.raises(CorruptionError, match="tokenizer"):
        corrupt_text(TEXT, Corruption("random_token", "mask", 0.5), record_id="x")
