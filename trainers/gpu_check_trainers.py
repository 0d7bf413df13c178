"""Fixed-budget trainers of `make gpu-check` (nnunet_sam_adapter.apps.gpu_check): ours, early
fusion and stock nnU-Net with the same number of epochs and iterations, so that the three fit about
20 minutes on one GPU together (compile, validation and export included; the check reports the times).

e.g. `nnUNetv2_train ID 2d 0 -tr SAMCrossModalTrainer_gpucheck -p nnUNetSAMPlans`.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_sam_adapter.trainers.sam_trainers import SAMCrossModalTrainer, SAMEarlyFusionTrainer
from nnunet_sam_adapter.trainers.sam_trainers_short import FixedBudget


class GpuCheckBudget(FixedBudget):
    budget = (20, 100, 20)  # epochs, iterations per epoch, validation iterations per epoch


class SAMCrossModalTrainer_gpucheck(GpuCheckBudget, SAMCrossModalTrainer):
    """SAMCrossModalTrainer, 20 epochs x 100 iterations."""


class SAMEarlyFusionTrainer_gpucheck(GpuCheckBudget, SAMEarlyFusionTrainer):
    """SAMEarlyFusionTrainer, 20 epochs x 100 iterations."""


class nnUNetTrainer_gpucheck(GpuCheckBudget, nnUNetTrainer):
    """nnU-Net's default trainer, 20 epochs x 100 iterations."""
