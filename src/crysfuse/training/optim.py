"""Optimiser and learning-rate schedule of a run (``train.*``): AdamW with or without weight decay on
normalisation weights and biases, and a per-step schedule (one-cycle, warm-up + cosine, or constant). A
fine-tuned text encoder's weights form the last group, with their own peak learning rate and warm-up
(``text.finetune_learning_rate``, ``text.finetune_warmup``; :mod:`crysfuse.training.schedule`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from crysfuse.config import TextConfig, TrainConfig
from crysfuse.training.schedule import OneCycleWithTextGroup, warmup_linear

NORM_TYPES = (nn.BatchNorm1d, nn.LayerNorm)


def parameter_groups(model: nn.Module, *, weight_decay: float, decay_norms_biases: bool,
                     exclude: frozenset[int] = frozenset()) -> list[dict]:
    """AdamW parameter groups. With ``decay_norms_biases`` one group decays everything (crysfuse's default);
    without it, biases and the weights of BatchNorm/LayerNorm modules get no decay (the reference's
    ``alignn.utils.group_decay``, which decides by name: ``bias``, ``bn`` or ``norm`` in it). Parameters whose
    ``id`` is in ``exclude`` (a fine-tuned text encoder's) are left out."""
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in exclude]
    if decay_norms_biases:
        return [{"params": params, "weight_decay": weight_decay}]
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or isinstance(module, NORM_TYPES):
                no_decay.add(id(param))
    return [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]


def warmup_cosine(step: int, *, total: int, warmup: int) -> float:
    """Learning-rate factor of step ``step`` (0-based): ``(step + 1) / warmup`` for the first ``warmup`` steps,
    then a cosine from 1 to 0 over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int,
                   text: TextConfig | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule of ``train.schedule`` over ``total_steps`` optimiser steps (stepped once per batch). With
    ``text`` (a fine-tuned encoder), the optimiser's last group follows a warm-up then linear decay to its own
    peak ``text.finetune_learning_rate`` instead."""
    total = max(int(total_steps), 1)
    last = len(optimizer.param_groups) - 1
    if cfg.schedule == "onecycle":
        if text is None:
            return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.learning_rate, total_steps=total,
                                                       pct_start=cfg.pct_start)
        return OneCycleWithTextGroup(optimizer, max_lr=cfg.learning_rate, total_steps=total,
                                     pct_start=cfg.pct_start, text_group=last,
                                     text_lr=text.finetune_learning_rate, text_warmup=text.finetune_warmup)
    if cfg.schedule == "cosine":
        warmup = max(round(cfg.pct_start * total), 1)
        factors = [lambda step: warmup_cosine(step, total=total, warmup=warmup)] * len(optimizer.param_groups)
    else:
        factors = [lambda step: 1.0] * len(optimizer.param_groups)
    if text is not None:
        factors[last] = lambda step: warmup_linear(min(step, total - 1), total, text.finetune_warmup)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def make_optimizer(model: nn.Module, cfg: TrainConfig, *, text_parameters: list[nn.Parameter] | None = None,
                   text_lr: float = 0.0) -> torch.optim.Optimizer:
    """AdamW at ``train.learning_rate`` with the parameter groups of :func:`parameter_groups`; the trained
    weights of a fine-tuned text encoder (``text_parameters``) form the last group, at ``text_lr``."""
    text_parameters = text_parameters or []
    groups = parameter_groups(model, weight_decay=cfg.weight_decay, decay_norms_biases=cfg.weight_decay_norms_biases,
                              exclude=frozenset(id(p) for p in text_parameters))
    if text_parameters:
        groups.append({"params": text_parameters, "lr": text_lr, "weight_decay": cfg.weight_decay})
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
