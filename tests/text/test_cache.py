"""EmbeddingCache and encode_cached."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from crysfuse.text.cache import EmbeddingCache, encode_cached
from crysfuse.text.encoder import EncodedText, EncoderSettings, TextEncoder

TEXTS = ["Cs crystallizes in the cubic Im-3m spacegroup.", "BaTe crystallizes in the cubic Fm-3m spacegroup."]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(EncoderSettings(max_length=32, batch_size=4), device="cpu")


@pytest.fixture()
def counting(encoder: TextEncoder, monkeypatch) -> list[list]:
    """Record the texts of every encoder.encode call."""
    calls: list[list] = []
    original = encoder.encode

    def wrapped(texts):
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(encoder, "encode", wrapped)
    return calls


def _cache(tmp_path, encoder: TextEncoder) -> EmbeddingCache:
    return EmbeddingCache(tmp_path / "emb", encoder.model_id, encoder.settings.max_length)


def test_round_trip_identical(tmp_path, encoder: TextEncoder) -> None:
    cache = _cache(tmp_path, encoder)
    assert cache.get(TEXTS[0]) is None
    encoded = encoder.encode([TEXTS[0]])[0]
    cache.put(TEXTS[0], encoded)
    path = cache.path(TEXTS[0])
    assert path.is_file() and path.parent.name == path.stem[:2]
    assert not list(path.parent.glob("*.tmp"))
    back = cache.get(TEXTS[0])
    assert back is not None
    assert torch.equal(back.tokens, encoded.tokens) and torch.equal(back.pooled, encoded.pooled)
    assert back.tokens.dtype == torch.float16 and back.truncated == encoded.truncated
    # another max_length or model is another key
    assert EmbeddingCache(tmp_path / "emb", encoder.model_id, 64).get(TEXTS[0]) is None
    assert EmbeddingCache(tmp_path / "emb", "other@123", 32).get(TEXTS[0]) is None


def test_missing_text_never_cached(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path, "m@1", 8)
    cache.put(
        None, EncodedText(torch.zeros(0, 4, dtype=torch.float16), torch.zeros(4, dtype=torch.float16), False)
    )
    assert cache.get(None) is None and cache.get("") is None
    assert not list(tmp_path.rglob("*.safetensors"))


def test_truncated_file_detected_and_recomputed(tmp_path, encoder: TextEncoder, counting, caplog) -> None:
    cache = _cache(tmp_path, encoder)
    first = encode_cached(encoder, [TEXTS[0]], cache)
    path = cache.path(TEXTS[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        assert cache.get(TEXTS[0]) is None
    assert "damaged" in caplog.text and not path.exists()
    path.write_bytes(data[: len(data) - 7])  # truncated inside the tensor data
    again = encode_cached(encoder, [TEXTS[0]], cache)
    assert len(counting) == 2  # recomputed
    assert torch.equal(again[0].tokens, first[0].tokens)
    assert cache.get(TEXTS[0]) is not None


def test_wrong_dtype_or_shape_detected(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path, "m@1", 8)
    good = EncodedText(torch.ones(3, 4, dtype=torch.float16), torch.ones(4, dtype=torch.float16), False)
    cache.put("x", good)
    meta = {"format": "crysfuse-text-embedding-v1", "model_id": "m@1", "max_length": "8", "truncated": "0"}
    save_file({"tokens": torch.ones(3, 4), "pooled": torch.ones(4)}, str(cache.path("x")), metadata=meta)
    assert cache.get("x") is None and not cache.path("x").exists()
    cache.put("x", good)
    save_file(
        {"tokens": torch.ones(3, 4, dtype=torch.float16), "pooled": torch.ones(5, dtype=torch.float16)},
        str(cache.path("x")),
        metadata=meta,
    )
    assert cache.get("x") is None


def test_each_distinct_text_encoded_once(tmp_path, encoder: TextEncoder, counting) -> None:
    cache = _cache(tmp_path, encoder)
    texts = [TEXTS[0], None, TEXTS[1], TEXTS[0], "", TEXTS[1], TEXTS[0]]
    out = encode_cached(encoder, texts, cache)
    assert len(counting) == 1 and sorted(counting[0]) == sorted(TEXTS)
    assert [o.length == 0 for o in out] == [False, True, False, False, True, False, False]
    assert torch.equal(out[0].tokens, out[3].tokens) and torch.equal(out[2].tokens, out[5].tokens)
    # second pass: all hits, no encode call
    out2 = encode_cached(encoder, texts + [TEXTS[1]], cache)
    assert len(counting) == 1
    for a, b in zip(out, out2):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    # without a cache it still deduplicates
    encode_cached(encoder, texts, None)
    assert len(counting) == 2 and sorted(counting[1]) == sorted(TEXTS)


def test_only_missing_texts_need_no_model(tmp_path) -> None:
    enc = TextEncoder(EncoderSettings())
    out = encode_cached(enc, [None, ""], EmbeddingCache(tmp_path, enc.model_id, enc.settings.max_length))
    assert enc._model is None and [o.tokens.shape for o in out] == [(0, 384), (0, 384)]


def test_cache_of_another_model_rejected(tmp_path, encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="cache is for"):
        encode_cached(encoder, TEXTS, EmbeddingCache(tmp_path, "other@1", encoder.settings.max_length))
