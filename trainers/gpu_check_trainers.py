"""Fixed-budget trainers of `make gpu-check` (nnunet_sam_adapter.apps.gpu_check): the registry's quick
methods (ours, early fusion and stock nnU-Net) with the same number of epochs and iterations, so that the
three fit about 20 minutes on one GPU together (compile, validation and export included; the check reports
the times). Generated from the registry: `<Trainer>_gpucheck` for each quick method's trainer.

e.g. `nnUNetv2_train ID 2d 0 -tr SAMCrossModalTrainer_gpucheck -p nnUNetSAMPlans`.
"""

from __future__ import annotations


from nnunet_sam_adapter.methods import METHODS, QUICK_METHODS
from nnunet_sam_adapter.trainers.sam_trainers_short import FixedBudget, make_budget_variant


class GpuCheckBudget(FixedBudget):
    budget = (20, 100, 20)  # epochs, iterations per epoch, validation iterations per epoch


def gpu_check_variants() -> dict[str, type]:
    """{class name: class}: SAMCrossModalTrainer_gpucheck, SAMEarlyFusionTrainer_gpucheck, nnUNetTrainer_gpucheck."""
    variants = (make_budget_variant(METHODS[name].trainer_class(), "gpucheck", *GpuCheckBudget.budget,
                                    module=__name__) for name in QUICK_METHODS)
    return {variant.__name__: variant for variant in variants}


globals().update(gpu_check_variants())
