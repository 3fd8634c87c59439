"""Learning-rate schedules: the one-cycle schedule of the model, and a warm-up then linear decay for a
fine-tuned text encoder's own parameter group."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import OneCycleLR


def warmup_linear(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Factor of the peak learning rate at ``step``: linear from 0 to 1 over the first ``warmup_fraction`` of
    ``total_steps``, then linear down to 0 at the last step (BERT's fine-tuning schedule)."""
    warmup = round(warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


class OneCycleWithTextGroup(OneCycleLR):
    """One-cycle learning rate (and momentum) for every parameter group, except that the text encoder's group
    follows :func:`warmup_linear` up to its own peak ``text_lr``.

    Args:
        optimizer: AdamW with the model's group first and the text encoder's group at ``text_group``.
        max_lr: peak learning rate of the model's groups.
        text_group: index of the text encoder's group.
        text_lr: its peak learning rate; text_warmup: its warm-up fraction of ``total_steps``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, max_lr: float, total_steps: int, pct_start: float,
                 text_group: int, text_lr: float, text_warmup: float) -> None:
        self.text_group, self.text_lr, self.text_warmup = text_group, text_lr, text_warmup
        self.text_total = total_steps
        peaks = [text_lr if i == text_group else max_lr for i in range(len(optimizer.param_groups))]
        super().__init__(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start)

    def get_lr(self) -> list[float]:
        rates = super().get_lr()
        step = min(self.last_epoch, self.text_total - 1)
        rates[self.text_group] = self.text_lr * warmup_linear(step, self.text_total, self.text_warmup)
        return rates
