"""The fine-tuned text encoder's own learning rate: warm-up, then linear decay, beside the one-cycle schedule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR

from crysfuse.training.schedule import OneCycleWithTextGroup, warmup_linear


def test_warmup_linear_rises_then_falls_to_zero():
    factors = [warmup_linear(step, 100, 0.1) for step in range(100)]
    assert factors[0] < factors[5] < factors[9] <= 1.0
    assert max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 10
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] == pytest.approx(1 / 90)  # the last step before 0
    assert warmup_linear(0, 100, 0.0) == 1.0


def _optimizer() -> torch.optim.AdamW:
    model, text = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    return torch.optim.AdamW([{"params": model.parameters(), "lr": 1e-3}, {"params": text.parameters(), "lr": 5e-5}])


def test_text_group_follows_its_own_schedule_and_the_model_group_the_one_cycle():
    total = 50
    reference_optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    reference = OneCycleLR(reference_optimizer, max_lr=1e-3, total_steps=total, pct_start=0.3)
    optimizer = _optimizer()
    scheduler = OneCycleWithTextGroup(optimizer, max_lr=1e-3, total_steps=total, pct_start=0.3, text_group=1,
                                      text_lr=5e-5, text_warmup=0.2)
    for step in range(total):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(reference_optimizer.param_groups[0]["lr"])
        assert optimizer.param_groups[1]["lr"] == pytest.approx(5e-5 * warmup_linear(step, total, 0.2))
        optimizer.step(), reference_optimizer.step()
        if step < total - 1:
            scheduler.step(), reference.step()
