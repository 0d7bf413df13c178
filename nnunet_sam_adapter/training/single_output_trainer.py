"""nnU-Net trainer base for single-output networks optimised with AdamW (the SAM and MONAI trainers)."""

from __future__ import annotations

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class SingleOutputAdamWTrainer(nnUNetTrainer):
    """nnUNetTrainer with deep supervision off (as nnUNetTrainerNoDeepSupervision), AdamW over the
    trainable parameters only (frozen ones never reach the optimiser) and nnU-Net's poly decay.
    Subclasses set `initial_lr` and `weight_decay`."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False

    def configure_optimizers(self):
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def set_deep_supervision_enabled(self, enabled: bool):
        """No-op: single-output networks (nnU-Net toggles this around validation)."""
