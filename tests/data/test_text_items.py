"""Items carry either frozen embeddings or token ids (``text.finetune``), never a stale mix of both."""

from __future__ import annotations

import torch

from crysfuse.data.dataset import make_crystal_data, make_loader, with_text
from crysfuse.data.graphs import build_crystal_graph
from crysfuse.text.encoder import EncodedText
from crysfuse.text.tokens import TokenIds


def _item(structure):
    return make_crystal_data(build_crystal_graph(structure), tokens=torch.zeros(0, 1, dtype=torch.float16),
                             pooled=torch.zeros(1, dtype=torch.float16), target=1.0, index=0)


def test_token_ids_batch_with_their_crystals(nacl, silicon):
    items = [with_text(_item(nacl), TokenIds(torch.tensor([101, 7, 102], dtype=torch.int32), False)),
             with_text(_item(silicon), TokenIds(torch.zeros(0, dtype=torch.int32), False))]
    batch = next(iter(make_loader(items, batch_size=2, shuffle=False)))
    assert batch.text_ids.tolist() == [101, 7, 102]
    assert torch.bincount(batch.text_ids_batch, minlength=2).tolist() == [3, 0]


def test_embeddings_replace_token_ids_and_leave_the_original_alone(nacl):
    tokenized = with_text(_item(nacl), TokenIds(torch.tensor([101, 102], dtype=torch.int32), False))
    embedded = with_text(tokenized, EncodedText(torch.ones(2, 4, dtype=torch.float16),
                                                torch.ones(4, dtype=torch.float16), False))
    assert "text_ids" not in embedded  # a fine-tuned model fails loudly instead of reading the old text
    assert tokenized.text_ids.tolist() == [101, 102]
