"""The text encoder inside CrysFuseModel: absent when frozen (the cache is read, never the encoder), present
and equivalent at the start when trained (``text.finetune``)."""

from __future__ import annotations

import pytest
import torch

from crysfuse.data.dataset import make_crystal_data, make_loader, with_text
from crysfuse.data.graphs import build_crystal_graph
from crysfuse.models.crysfuse import CrysFuseModel
from crysfuse.text.encoder import EncoderSettings, TextEncoder
from crysfuse.text.tokens import TokenCache
from tests.helpers import tiny_config

TEXTS = ["NaCl crystallizes in the cubic Fm-3m space group.", None,
         "Si is a semiconductor with the diamond structure."]


def _batches(structures):
    encoder = TextEncoder(EncoderSettings("minilm", max_length=32), device="cpu")
    plain = [make_crystal_data(build_crystal_graph(s), tokens=torch.zeros(0, 1, dtype=torch.float16),
                               pooled=torch.zeros(1, dtype=torch.float16), target=0.0, index=i)
             for i, s in enumerate(structures)]
    embedded = [with_text(p, e) for p, e in zip(plain, encoder.encode(TEXTS))]
    tokenized = [with_text(p, t) for p, t in zip(plain, TokenCache(encoder).ids(TEXTS))]
    return tuple(next(iter(make_loader(items, batch_size=len(items), shuffle=False)))
                 for items in (embedded, tokenized))


@pytest.mark.parametrize("fusion", ["simplified", "text_only"])
def test_untrained_fine_tuned_model_predicts_what_the_frozen_one_does(fusion, nacl, silicon):
    extra = ["text.max_length=32"]
    torch.manual_seed(0)
    frozen = CrysFuseModel(tiny_config(fusion, extra), dim_text=384).eval()
    assert frozen.text_encoder is None and frozen.text_encoder_parameters() == []
    assert not any(k.startswith("text_encoder.") for k in frozen.state_dict())
    tuned = CrysFuseModel(tiny_config(fusion, extra + ["text.finetune=lora"]), dim_text=384).eval()
    missing, unexpected = tuned.load_state_dict(frozen.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("text_encoder.") for k in missing)
    assert tuned.text_encoder_parameters() and all("lora_" in n for n, p in tuned.text_encoder.named_parameters()
                                                   if p.requires_grad)
    embedded, tokenized = _batches([nacl, silicon, nacl])
    with torch.no_grad():
        expected, got = frozen(embedded).prediction, tuned(tokenized).prediction
    assert torch.allclose(got, expected, atol=2e-3)
    with pytest.raises(ValueError, match="token ids"):
        tuned(embedded)  # embeddings given to a model that encodes itself: refused, not silently ignored
