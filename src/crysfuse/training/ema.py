"""Exponential moving average of the weights (``train.ema_decay``).

After every optimiser step ``θ_ema ← d θ_ema + (1 - d) θ`` with ``d = min(ema_decay, (1 + t) / (10 + t))``
(``t``: updates so far), so the average follows the fast-moving early weights instead of keeping the random
initialisation. Buffers (BatchNorm running statistics, target scaling) are copied, not averaged. The
averaged model is an ordinary :class:`~crysfuse.models.crysfuse.CrysFuseModel`, so it is saved as
``model.safetensors`` in the usual format.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA(nn.Module):
    """Holds ``averaged``, a frozen copy of the model that :meth:`update` moves towards the live weights.

    Being a submodule of the LightningModule, ``averaged`` and ``num_updates`` travel with the resume
    checkpoint (plain tensors, loadable with ``weights_only=True``).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = float(decay)
        self.averaged = copy.deepcopy(model)
        self.averaged.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """The decay of the next update: ``min(decay, (1 + t) / (10 + t))``."""
        t = int(self.num_updates)
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the averaged parameters towards ``model``'s and copy its buffers."""
        decay = self.current_decay()
        for averaged, live in zip(self.averaged.parameters(), model.parameters()):
            averaged.lerp_(live.detach(), 1.0 - decay)
        for averaged, live in zip(self.averaged.buffers(), model.buffers()):
            averaged.copy_(live)
        self.num_updates += 1
