"""nnU-Net trainer base for single-output networks optimised with AdamW (the SAM and MONAI trainers)."""

from __future__ import annotations

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class ScaledPolyLRScheduler(PolyLRScheduler):
    """nnU-Net's poly decay; a param group's 'lr_scale' (default 1) multiplies the scheduled lr."""

    def step(self, current_step=None):
        super().step(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class SingleOutputAdamWTrainer(nnUNetTrainer):
    """nnUNetTrainer with deep supervision off (as nnUNetTrainerNoDeepSupervision), AdamW over the
    trainable parameters only (frozen ones never reach the optimiser) and nnU-Net's poly decay.
    Subclasses set `initial_lr` and `weight_decay`; `warmup_iterations` > 0 ramps the learning rate
    linearly from 1/W of nnU-Net's scheduled value to all of it over the first W training iterations;
    `lr_scales` {parameter-name prefix: factor} gives the parameters under a prefix factor x the lr."""

    warmup_iterations = 0
    lr_scales: dict[str, float] = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False

    def configure_optimizers(self):
        groups: dict[float, list] = {}
        scales = getattr(self, "lr_scales", {})
        for name, p in self.network.named_parameters():
            if p.requires_grad:
                name = name.removeprefix("module.").removeprefix("_orig_mod.")
                scale = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
                groups.setdefault(float(scale), []).append(p)
        optimizer = torch.optim.AdamW([{"params": params, "lr": self.initial_lr * scale, "lr_scale": scale}
                                       for scale, params in groups.items()],
                                      lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, ScaledPolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def warm_up_learning_rate(self) -> None:
        """Before each optimizer step: for the first W steps of this run, lr = poly lr of the epoch x (i+1)/W."""
        done = getattr(self, "_warmup_done", 0)
        if done < self.warmup_iterations:
            scheduled = self.initial_lr * (1 - self.current_epoch / self.num_epochs) ** 0.9  # PolyLRScheduler
            for group in self.optimizer.param_groups:
                group["lr"] = scheduled * group.get("lr_scale", 1.0) * (done + 1) / self.warmup_iterations
        self._warmup_done = done + 1

    def train_step(self, batch: dict) -> dict:
        self.warm_up_learning_rate()
        return super().train_step(batch)

    def set_deep_supervision_enabled(self, enabled: bool):
        """No-op: single-output networks (nnU-Net toggles this around validation)."""
