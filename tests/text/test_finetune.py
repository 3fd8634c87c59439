"""The trainable text encoder (``text.finetune``) and the token cache it reads: which weights train, what is
saved, and that its output is the frozen encoder's. Offline: the packaged MiniLM folder."""

from __future__ import annotations

import pytest
import torch

from crysfuse.config import ConfigError, TextConfig
from crysfuse.text.encoder import EncoderSettings, TextEncoder
from crysfuse.text.finetune import TrainableTextEncoder, transformer_layers
from crysfuse.text.tokens import TokenCache, pad_token_ids

TEXTS = ["NaCl crystallizes in the cubic Fm-3m space group.", None,
         "Si is a semiconductor with the diamond structure and a band gap of about 1.1 eV.", "   "]
MAX_LENGTH = 32


def _settings(mode: str, **extra) -> TextConfig:
    return TextConfig(finetune=mode, max_length=MAX_LENGTH, **extra)


def _batch(cache: TokenCache) -> tuple[torch.Tensor, torch.Tensor]:
    tokenized = cache.ids(TEXTS)
    return torch.cat([t.ids for t in tokenized]), torch.tensor([t.length for t in tokenized])


@pytest.fixture(scope="module")
def frozen() -> TextEncoder:
    return TextEncoder(EncoderSettings("minilm", max_length=MAX_LENGTH), device="cpu")


@pytest.fixture(scope="module")
def tokens(frozen) -> TokenCache:
    return TokenCache(frozen)


def _train_one_step(encoder: TrainableTextEncoder, tokens: TokenCache) -> None:
    encoder.train()
    optimizer = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    states, mask = encoder(*_batch(tokens))
    (states.pow(2) * mask.unsqueeze(-1)).sum().backward()
    optimizer.step()


def test_token_cache_tokenizes_each_text_once_like_the_frozen_encoder(frozen, tokens):
    first = tokens.ids(TEXTS)
    assert [t.length for t in first][1] == 0 and first[3].length == 0
    assert first[0].ids.tolist() == frozen.tokenize_ids(TEXTS[0])
    assert first[2].length <= MAX_LENGTH and first[2].truncated == (len(frozen.tokenize_ids(TEXTS[2], False)) > 32)
    known = len(tokens)
    again = tokens.ids(TEXTS + [TEXTS[0]])
    assert len(tokens) == known and again[0] is first[0] and again[-1] is first[0]  # no second tokenization


def test_pad_token_ids_builds_ids_and_mask():
    ids, mask = pad_token_ids(torch.tensor([5, 6, 7, 8, 9]), torch.tensor([2, 0, 3]))
    assert ids.tolist() == [[5, 6, 0], [0, 0, 0], [7, 8, 9]]
    assert mask.tolist() == [[1, 1, 0], [0, 0, 0], [1, 1, 1]]


def test_untrained_encoder_gives_the_frozen_embeddings(frozen, tokens):
    """Before training, a trainable encoder computes what the frozen cache holds (fp16 rounding aside), so a
    fine-tuned run starts where a frozen one is."""
    encoder = TrainableTextEncoder(_settings("lora")).eval()
    with torch.no_grad():
        states, mask = encoder(*_batch(tokens))
    expected = frozen.encode(TEXTS)
    for row, enc in enumerate(expected):
        assert int(mask[row].sum()) == enc.length
        if enc.length:
            assert torch.allclose(states[row, :enc.length], enc.tokens.float(), atol=2e-2)
            assert states[row, enc.length:].abs().sum() == 0
    assert states[1].abs().sum() == 0 and states[3].abs().sum() == 0  # no text: zeros, never NaN


def test_last_k_trains_only_the_last_layers(tokens):
    encoder = TrainableTextEncoder(_settings("last_k", finetune_layers=2))
    layers = transformer_layers(encoder.model)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    _train_one_step(encoder, tokens)
    trained_prefixes = tuple(f"model.encoder.layer.{i}." for i in range(len(layers) - 2, len(layers)))
    changed = {k for k, v in encoder.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(trained_prefixes) for k in changed)
    frozen_keys = [k for k in before if not k.startswith(trained_prefixes)]
    assert all(torch.equal(encoder.state_dict()[k], before[k]) for k in frozen_keys)  # bitwise equal
    saved = encoder.saved_state()
    assert saved and all(k.startswith(trained_prefixes) for k in saved)
    assert set(saved) == {k for k in before if k.startswith(trained_prefixes)}


def test_lora_trains_and_saves_only_the_adapters(tokens):
    encoder = TrainableTextEncoder(_settings("lora", lora_rank=4))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    _train_one_step(encoder, tokens)
    saved = encoder.saved_state()
    assert saved and all("lora_" in k for k in saved)
    assert sum(v.numel() for v in saved.values()) < 0.01 * sum(v.numel() for v in before.values())
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in before.items() if "lora_" not in k)
    assert any(not torch.equal(encoder.state_dict()[k], before[k]) for k in saved)

    copy = TrainableTextEncoder(_settings("lora", lora_rank=4)).eval()
    copy.load_saved_state(saved)
    encoder.eval()
    with torch.no_grad():
        assert torch.equal(copy(*_batch(tokens))[0], encoder(*_batch(tokens))[0])


def test_all_trains_every_weight():
    encoder = TrainableTextEncoder(_settings("all"))
    assert all(p.requires_grad for p in encoder.parameters())
    assert set(encoder.saved_state()) == {k for k, _ in encoder.named_parameters()}


def test_saved_state_of_another_mode_is_refused():
    lora = TrainableTextEncoder(_settings("lora"))
    last = TrainableTextEncoder(_settings("last_k", finetune_layers=1))
    with pytest.raises(ValueError, match="does not fit"):
        last.load_saved_state(lora.saved_state())


@pytest.mark.parametrize("settings, match", [
    (TextConfig(finetune="some"), "text.finetune must be one of"),
    (TextConfig(finetune="last_k", finetune_layers=0), "finetune_layers"),
    (TextConfig(finetune="last_k", finetune_layers=7, max_length=MAX_LENGTH), "has 6 layers"),
    (TextConfig(finetune="lora", lora_targets=["no_such_layer"], max_length=MAX_LENGTH), "lora_targets"),
])
def test_bad_settings_are_config_errors(settings, match):
    with pytest.raises(ConfigError, match=match):
        TrainableTextEncoder(settings)


def test_token_cache_refuses_more_tokens_than_the_model_has_positions():
    encoder = TextEncoder(EncoderSettings("minilm", max_length=4096), device="cpu")
    with pytest.raises(ValueError, match="positions"):
        TokenCache(encoder).ids(["a text"])
