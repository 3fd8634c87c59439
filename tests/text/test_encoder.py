"""TextEncoder on the packaged MiniLM (offline, CPU)."""

from __future__ import annotations

import time

import pytest
import torch

from crysfuse.text.encoder import (
    DEFAULT_ENCODER,
    EncodedText,
    EncoderSettings,
    EncoderUnavailableError,
    TextEncoder,
)

TEXTS = [
    "NaCl crystallizes in the cubic Fm-3m spacegroup, m-3m pointgroup with a prototype of AB.",
    "Si crystallizes in the cubic Fd-3m spacegroup.",
    "The bond distances are: Ba-Te: 3.54 Å.The lattice lengths are: 5.01, 5.01, 5.01 Å.",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(EncoderSettings(name=DEFAULT_ENCODER, max_length=64, batch_size=2), device="cpu")


def test_metadata_without_model_load() -> None:
    enc = TextEncoder(EncoderSettings())
    assert enc.dim == 384
    assert enc.model_id.startswith("minilm@") and str(enc.path) not in enc.model_id
    assert enc.model_id == TextEncoder(EncoderSettings()).model_id  # stable
    assert enc.mask_token == "[MASK]"
    assert enc._model is None


def test_missing_text_does_not_load_model() -> None:
    enc = TextEncoder(EncoderSettings())
    out = enc.encode([None, "", "   "])
    assert enc._model is None
    for item in out:
        assert item.tokens.shape == (0, 384) and item.tokens.dtype == torch.float16
        assert item.pooled.shape == (384,) and item.pooled.dtype == torch.float16
        assert not item.pooled.any() and not item.truncated


def test_shapes_dtype_and_pooling(encoder: TextEncoder) -> None:
    out = encoder.encode([TEXTS[0], None, TEXTS[1], TEXTS[2]])
    assert len(out) == 4 and all(isinstance(o, EncodedText) for o in out)
    assert out[1].length == 0
    for text, item in zip([TEXTS[0], TEXTS[1], TEXTS[2]], [out[0], out[2], out[3]]):
        n_ids = len(encoder.tokenize_ids(text))
        assert item.tokens.shape == (n_ids, 384)
        assert item.tokens.dtype == torch.float16 and item.pooled.dtype == torch.float16
        assert not item.truncated
        torch.testing.assert_close(item.pooled.float(), item.tokens.float().mean(0), atol=2e-3, rtol=1e-2)
    assert out[2].length < out[0].length  # padding stripped


def test_truncation_flag(encoder: TextEncoder) -> None:
    long_text = " ".join(["crystal"] * 500)
    short, long_ = encoder.encode([TEXTS[1], long_text])
    assert long_.truncated and long_.length == 64
    assert not short.truncated and short.length < 64


def test_deterministic_and_batch_independent(encoder: TextEncoder) -> None:
    first = encoder.encode(TEXTS)
    second = encoder.encode(TEXTS)
    for a, b in zip(first, second):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    alone = encoder.encode([TEXTS[2]])[0]
    torch.testing.assert_close(alone.tokens.float(), first[2].tokens.float(), atol=2e-3, rtol=1e-2)


def test_missing_folder_is_clear(tmp_path) -> None:
    enc = TextEncoder(EncoderSettings(name=str(tmp_path / "no-such-model")))
    with pytest.raises(EncoderUnavailableError, match="does not exist"):
        _ = enc.dim
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderUnavailableError, match="config.json"):
        TextEncoder(EncoderSettings(name=str(tmp_path / "empty"))).encode(["x"])


def test_unknown_hub_name_offline_fails_fast(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    enc = TextEncoder(EncoderSettings(name="no-such-org/no-such-model-xyz"))
    start = time.monotonic()
    with pytest.raises(EncoderUnavailableError, match="local Hugging Face cache") as info:
        enc.encode(["some text"])
    assert time.monotonic() - start < 10
    assert "hf download no-such-org/no-such-model-xyz" in str(info.value)
