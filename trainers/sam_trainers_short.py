"""Short-budget variants of the SAM trainers and of nnU-Net's default trainer, for tests and the demo.

    <Trainer>_debug   2 epochs x 4 iterations (+2 validation iterations): end-to-end tests
    <Trainer>_short   10 epochs x 10 iterations (+3 validation iterations): demo-sized CPU runs

e.g. `nnUNetv2_train ID 2d 0 -tr SAMCrossModalTrainer_short -p nnUNetSAMPlans`.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_sam_adapter.trainers.sam_trainers import (SAMCrossModalTrainer, SAMEarlyFusionTrainer,
                                                      SAMSingleModalityFLAIRTrainer,
                                                      SAMSingleModalityT1ceTrainer,
                                                      SAMSingleModalityT1Trainer, SAMSingleModalityT2Trainer)

BUDGETS = {"debug": (2, 4, 2), "short": (10, 10, 3)}  # epochs, iterations/epoch, validation iterations


def make_budget_variant(base: type, suffix: str, epochs: int, iterations: int, val_iterations: int) -> type:
    """`base` trainer with a fixed budget, named `<base>_<suffix>` (how nnU-Net names its own variants)."""

    # nnU-Net introspects this exact signature.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        self.num_iterations_per_epoch = iterations
        self.num_val_iterations_per_epoch = val_iterations

    doc = f"{base.__name__} with {epochs} epochs x {iterations} iterations."
    return type(f"{base.__name__}_{suffix}", (base,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


_BASES = (SAMCrossModalTrainer, SAMEarlyFusionTrainer, SAMSingleModalityT1Trainer, SAMSingleModalityT1ceTrainer,
          SAMSingleModalityT2Trainer, SAMSingleModalityFLAIRTrainer, nnUNetTrainer)
for _base in _BASES:
    for _suffix, _budget in BUDGETS.items():
        _variant = make_budget_variant(_base, _suffix, *_budget)
        globals()[_variant.__name__] = _variant
