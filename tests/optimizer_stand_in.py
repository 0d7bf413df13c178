"""A trainer's `configure_optimizers` on a bare network, without an nnU-Net trainer around it: the stand-in
holds only the attributes the SAM trainers' optimiser and warm-up read (trainers/sam_trainers.py)."""

from __future__ import annotations

import types


def optimizer_of(trainer: type, network, warmup_iterations: int = 0):
    """(stand_in, scheduler): stand_in.optimizer is `trainer`'s optimiser over `network` at nnU-Net's lr 1e-3."""
    stand_in = types.SimpleNamespace(network=network, lr_scales=trainer.lr_scales, initial_lr=1e-3,
                                     weight_decay=1e-2, num_epochs=5, current_epoch=0,
                                     warmup_iterations=warmup_iterations)
    stand_in.optimizer, scheduler = trainer.configure_optimizers(stand_in)
    return stand_in, scheduler
