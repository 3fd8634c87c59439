"""The LightningModule around :class:`CrysFuseModel`: loss on standardised targets, MAE in target units,
AdamW + a per-step schedule (:mod:`crysfuse.training.optim`; a fine-tuned text encoder: its own group and
warm-up), optionally an EMA of the weights (:mod:`crysfuse.training.ema`) that validation and model selection
use."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from torch.nn import functional as F

from crysfuse.config import Config
from crysfuse.models.crysfuse import CrysFuseModel, ModelOutput
from crysfuse.training.ema import WeightEMA
from crysfuse.training.optim import make_optimizer, make_scheduler


def loss_function(config: Config):
    """``train.loss`` as a function of standardised predictions and targets ``[B]``."""
    cfg = config.train
    return {"mse": F.mse_loss, "l1": F.l1_loss, "huber": partial(F.huber_loss, delta=cfg.huber_delta)}[cfg.loss]


class CrysFuseLightning(L.LightningModule):
    """Training wrapper. Logs ``train_loss``, ``train_mae``, ``val_loss``, ``val_mae`` (epoch means).

    With ``train.ema_decay > 0`` the averaged weights (``self.ema.averaged``) are what validation runs and
    what :attr:`eval_model` returns (the model that is saved and tested); training steps use the live ones.
    """

    def __init__(self, model: CrysFuseModel, config: Config) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.loss_fn = loss_function(config)
        self.ema = WeightEMA(model, config.train.ema_decay) if config.train.ema_decay > 0 else None

    @property
    def eval_model(self) -> CrysFuseModel:
        """The weights validation sees and the run keeps: the EMA when it is on, else the live model."""
        return self.ema.averaged if self.ema is not None else self.model

    def forward(self, batch) -> ModelOutput:
        return self.model(batch, step=int(self.global_step))

    def _shared_step(self, batch, stage: str) -> tuple[torch.Tensor, ModelOutput]:
        step = int(self.global_step) if stage == "train" else -1
        model = self.model if stage == "train" else self.eval_model
        output = model.forward_normalized(batch, step=step)
        target = model.normalize_target(batch.y)
        loss = self.loss_fn(output.prediction, target)
        if model.target_transform == "none":
            mae = (output.prediction - target).abs().mean() * model.target_std
        else:  # in target units, not in transformed ones
            mae = (model.to_target_units(output.prediction) - batch.y).abs().mean()
        size = batch.num_graphs
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        self.log(f"{stage}_mae", mae, on_step=False, on_epoch=True, batch_size=size, sync_dist=True,
                 prog_bar=stage == "val")
        return loss, output

    def training_step(self, batch, batch_idx: int) -> dict[str, Any]:
        """Returns the loss, the detached fusion diagnostics, the targets ``[B]`` and, under text augmentation,
        which samples' text was corrupted (``text_corrupted`` ``[B]``), read by callbacks such as the gate
        monitor."""
        loss, output = self._shared_step(batch, "train")
        result = {"loss": loss, "diagnostics": {k: v.detach() for k, v in output.diagnostics.items()},
                  "targets": batch.y.detach()}
        if hasattr(batch, "text_corrupted"):
            result["text_corrupted"] = batch.text_corrupted.detach()
        return result

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def validation_step(self, batch, batch_idx: int) -> dict[str, Any]:
        loss, output = self._shared_step(batch, "val")
        return {"loss": loss, "diagnostics": {k: v.detach() for k, v in output.diagnostics.items()}}

    def configure_optimizers(self):
        """AdamW + the ``train.schedule``; a fine-tuned text encoder's weights form a last group with their own
        peak learning rate and warm-up (``text.finetune_learning_rate``, ``text.finetune_warmup``)."""
        text_parameters = self.model.text_encoder_parameters()
        optimizer = make_optimizer(self.model, self.config.train, text_parameters=text_parameters,
                                   text_lr=self.config.text.finetune_learning_rate)
        scheduler = make_scheduler(optimizer, self.config.train, self.trainer.estimated_stepping_batches,
                                   self.config.text if text_parameters else None)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
