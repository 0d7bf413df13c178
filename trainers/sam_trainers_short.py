"""Budget variants of every registered trainer, generated from the method registry, for tests and the demo.

    <Trainer>_debug   2 epochs x 4 iterations (+2 validation iterations): end-to-end tests
    <Trainer>_short   10 epochs x 10 iterations (+3 validation iterations): demo-sized CPU runs

for each trainer of nnunet_sam_adapter.methods.METHODS (methods.BUDGETS), e.g. SAMCrossModalTrainer_short,
SAMCrossModalPlusTrainer_debug, MONAIUNETR2DTrainer_short, nnUNetTrainer_debug (stock nnU-Net's). nnU-Net finds
them as module attributes (`nnUNetv2_train ID 2d 0 -tr SAMCrossModalTrainer_short -p nnUNetSAMPlans`).
A budget of your own: `make_budget_variant(SAMCrossModalTrainer, "mine", epochs, iterations, val_iterations)`
in a module of a folder listed in nnUNet_extTrainer.
"""

from __future__ import annotations

import torch

from nnunet_sam_adapter.methods import BUDGETS, METHODS


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
    budget = BUDGETS["debug"]


class ShortBudget(FixedBudget):
    budget = BUDGETS["short"]


def make_budget_variant(base: type, suffix: str, epochs: int, iterations: int, val_iterations: int, *,
                        module: str = __name__) -> type:
    """`base` trainer with a fixed budget, named `<base>_<suffix>` (how nnU-Net names its own variants)."""
    doc = f"{base.__name__} with {epochs} epochs x {iterations} iterations."
    return type(f"{base.__name__}_{suffix}", (FixedBudget, base),
                {"budget": (epochs, iterations, val_iterations), "__doc__": doc, "__module__": module})


def registry_budget_variants() -> dict[str, type]:
    """{class name: class} of every budget of every registered trainer (methods may share a trainer)."""
    variants = {}
    for method in {m.trainer: m for m in METHODS.values()}.values():  # one method per trainer class
        base = method.trainer_class()
        for suffix, budget in BUDGETS.items():
            variant = make_budget_variant(base, suffix, *budget)
            variants[variant.__name__] = variant
    return variants


globals().update(registry_budget_variants())
