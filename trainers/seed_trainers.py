"""Seed variants of every registered trainer, generated from the method registry, for repeated runs.

    <Trainer>_seed<k>   the trainer with python's, numpy's and torch's random generators seeded with k in its
                        __init__ (k = 1 .. methods.MAX_SEED), e.g. SAMCrossModalTrainer_seed1, nnUNetTrainer_seed2

The benchmark's `--seeds N` trains seed 0 (the trainer itself) and these for 1 .. N-1; each has its own nnU-Net
results folder (`SAMCrossModalTrainer_seed1__nnUNetSAMPlans__2d`), so `nnUNetv2_predict -tr
SAMCrossModalTrainer_seed1 ...` predicts with it. What the seed fixes: the random parts of the network's
initialisation and, in the training process, batch sampling and augmentation. nnU-Net's data-augmentation
workers (nnUNet_n_proc_DA > 0) draw their own random states, so two runs of one seed are not bitwise equal:
a seed names an independent repeat, it does not make training deterministic.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from nnunet_sam_adapter.methods import MAX_SEED, METHODS


class SeededStart:
    """Mixin (put it before the trainer): seeds python, numpy and torch with `seed` before the trainer's own
    __init__ (the network is built later, in initialize(), from these generators)."""

    seed: int

    # nnU-Net introspects this exact signature.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        super().__init__(plans, configuration, fold, dataset_json, device)


def make_seed_variant(base: type, seed: int, *, module: str = __name__) -> type:
    """`base` trainer seeded with `seed`, named `<base>_seed<seed>`."""
    return type(f"{base.__name__}_seed{seed}", (SeededStart, base),
                {"seed": seed, "__doc__": f"{base.__name__} with its random generators seeded with {seed}.",
                 "__module__": module})


def registry_seed_variants() -> dict[str, type]:
    """{class name: class} of seeds 1 .. MAX_SEED of every registered trainer (methods may share a trainer)."""
    variants = {}
    for method in {m.trainer: m for m in METHODS.values()}.values():
        base = method.trainer_class()
        for seed in range(1, MAX_SEED + 1):
            variant = make_seed_variant(base, seed)
            variants[variant.__name__] = variant
    return variants


globals().update(registry_seed_variants())
