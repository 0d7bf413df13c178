"""Short-budget variants of the SAM trainers and of nnU-Net's default trainer, for tests and the demo.

    <Trainer>_debug   2 epochs x 4 iterations (+2 validation iterations): end-to-end tests
    <Trainer>_short   10 epochs x 10 iterations (+3 validation iterations): demo-sized CPU runs

e.g. `nnUNetv2_train ID 2d 0 -tr SAMCrossModalTrainer_short -p nnUNetSAMPlans`. A budget of your own:
`make_budget_variant(SAMCrossModalTrainer, "mine", epochs, iterations, val_iterations)` in a module of a
folder listed in nnUNet_extTrainer.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_sam_adapter.trainers.sam_trainers import (SAMCrossModalTrainer, SAMEarlyFusionTrainer,
                                                      SAMSingleModalityFLAIRTrainer,
                                                      SAMSingleModalityT1ceTrainer,
                                                      SAMSingleModalityT1Trainer, SAMSingleModalityT2Trainer)


class FixedBudget:
    """Mixin (put it before the trainer): sets `budget` = (epochs, iterations/epoch, validation
    iterations/epoch) on the instance after the trainer's own __init__."""

    budget: tuple[int, int, int]

    # nnU-Net introspects this exact signature.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = self.budget


class DebugBudget(FixedBudget):
    budget = (2, 4, 2)


class ShortBudget(FixedBudget):
    budget = (10, 10, 3)


def make_budget_variant(base: type, suffix: str, epochs: int, iterations: int, val_iterations: int) -> type:
    """`base` trainer with a fixed budget, named `<base>_<suffix>` (how nnU-Net names its own variants)."""
    doc = f"{base.__name__} with {epochs} epochs x {iterations} iterations."
    return type(f"{base.__name__}_{suffix}", (FixedBudget, base),
                {"budget": (epochs, iterations, val_iterations), "__doc__": doc, "__module__": __name__})


class SAMCrossModalTrainer_debug(DebugBudget, SAMCrossModalTrainer):
    """SAMCrossModalTrainer, 2 epochs x 4 iterations."""


class SAMCrossModalTrainer_short(ShortBudget, SAMCrossModalTrainer):
    """SAMCrossModalTrainer, 10 epochs x 10 iterations."""


class SAMEarlyFusionTrainer_debug(DebugBudget, SAMEarlyFusionTrainer):
    """SAMEarlyFusionTrainer, 2 epochs x 4 iterations."""


class SAMEarlyFusionTrainer_short(ShortBudget, SAMEarlyFusionTrainer):
    """SAMEarlyFusionTrainer, 10 epochs x 10 iterations."""


class SAMSingleModalityT1Trainer_debug(DebugBudget, SAMSingleModalityT1Trainer):
    """SAMSingleModalityT1Trainer, 2 epochs x 4 iterations."""


class SAMSingleModalityT1Trainer_short(ShortBudget, SAMSingleModalityT1Trainer):
    """SAMSingleModalityT1Trainer, 10 epochs x 10 iterations."""


class SAMSingleModalityT1ceTrainer_debug(DebugBudget, SAMSingleModalityT1ceTrainer):
    """SAMSingleModalityT1ceTrainer, 2 epochs x 4 iterations."""


class SAMSingleModalityT1ceTrainer_short(ShortBudget, SAMSingleModalityT1ceTrainer):
    """SAMSingleModalityT1ceTrainer, 10 epochs x 10 iterations."""


class SAMSingleModalityT2Trainer_debug(DebugBudget, SAMSingleModalityT2Trainer):
    """SAMSingleModalityT2Trainer, 2 epochs x 4 iterations."""


class SAMSingleModalityT2Trainer_short(ShortBudget, SAMSingleModalityT2Trainer):
    """SAMSingleModalityT2Trainer, 10 epochs x 10 iterations."""


class SAMSingleModalityFLAIRTrainer_debug(DebugBudget, SAMSingleModalityFLAIRTrainer):
    """SAMSingleModalityFLAIRTrainer, 2 epochs x 4 iterations."""


class SAMSingleModalityFLAIRTrainer_short(ShortBudget, SAMSingleModalityFLAIRTrainer):
    """SAMSingleModalityFLAIRTrainer, 10 epochs x 10 iterations."""


class nnUNetTrainer_debug(DebugBudget, nnUNetTrainer):
    """nnU-Net's default trainer, 2 epochs x 4 iterations."""


class nnUNetTrainer_short(ShortBudget, nnUNetTrainer):
    """nnU-Net's default trainer, 10 epochs x 10 iterations."""
