"""The LightningModule around :class:`CrysFuseModel`: loss on standardised targets, MAE in target units,
AdamW + one-cycle schedule (a fine-tuned text encoder: its own group and warm-up)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.nn import functional as F

from crysfuse.config import Config
from crysfuse.models.crysfuse import CrysFuseModel, ModelOutput
from crysfuse.training.schedule import OneCycleWithTextGroup


class CrysFuseLightning(L.LightningModule):
    """Training wrapper. Logs ``train_loss``, ``train_mae``, ``val_loss``, ``val_mae`` (epoch means)."""

    def __init__(self, model: CrysFuseModel, config: Config) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.loss_fn = {"mse": F.mse_loss, "l1": F.l1_loss}[config.train.loss]

    def forward(self, batch) -> ModelOutput:  # noqa: ANN001
        return self.model(batch, step=int(self.global_step))

    def _shared_step(self, batch, stage: str) -> tuple[torch.Tensor, ModelOutput]:  # noqa: ANN001
        step = int(self.global_step) if stage == "train" else -1
        output = self.model.forward_normalized(batch, step=step)
        target = (batch.y - self.model.target_mean) / self.model.target_std
        loss = self.loss_fn(output.prediction, target)
        mae = (output.prediction - target).abs().mean() * self.model.target_std
        size = batch.num_graphs
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        self.log(f"{stage}_mae", mae, on_step=False, on_epoch=True, batch_size=size, sync_dist=True,
                 prog_bar=stage == "val")
        return loss, output

    def training_step(self, batch, batch_idx: int) -> dict[str, Any]:  # noqa: ANN001
        """Returns the loss and the detached fusion diagnostics (read by callbacks such as the gate monitor)."""
        loss, output = self._shared_step(batch, "train")
        return {"loss": loss, "diagnostics": {k: v.detach() for k, v in output.diagnostics.items()}}

    def validation_step(self, batch, batch_idx: int) -> dict[str, Any]:  # noqa: ANN001
        loss, output = self._shared_step(batch, "val")
        return {"loss": loss, "diagnostics": {k: v.detach() for k, v in output.diagnostics.items()}}

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's documented return shape
        """AdamW + one-cycle schedule; a fine-tuned text encoder's weights form a second group with their own
        peak learning rate and warm-up (``text.finetune_learning_rate``, ``text.finetune_warmup``)."""
        cfg = self.config.train
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        text_parameters = self.model.text_encoder_parameters()
        if not text_parameters:
            optimizer = torch.optim.AdamW(self.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.learning_rate, total_steps=total, pct_start=cfg.pct_start
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        text_ids = {id(p) for p in text_parameters}
        model_parameters = [p for p in self.parameters() if p.requires_grad and id(p) not in text_ids]
        optimizer = torch.optim.AdamW(
            [{"params": model_parameters, "lr": cfg.learning_rate},
             {"params": text_parameters, "lr": self.config.text.finetune_learning_rate}],
            weight_decay=cfg.weight_decay,
        )
        scheduler = OneCycleWithTextGroup(
            optimizer, max_lr=cfg.learning_rate, total_steps=total, pct_start=cfg.pct_start, text_group=1,
            text_lr=self.config.text.finetune_learning_rate, text_warmup=self.config.text.finetune_warmup,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
