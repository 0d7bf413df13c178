"""Modality-dropout trainers of every multi-modal registered method, generated from the registry
(methods.with_modality_dropout): one model for any non-empty subset of T1 / T1ce / T2 / FLAIR. Each is its
method's trainer with ModalityDropoutTrainerMixin in front: same network, loss and optimiser, only the
training transforms differ, so the comparison with and without dropout is fair.

    SAMCrossModalMissingModalityTrainer     ours                    -p nnUNetSAMPlans
    SAMCrossModalPlusTrainerMissingModality ours_plus               -p nnUNetSAMPlans
    SAMEarlyFusionMissingModalityTrainer    SAM early fusion        -p nnUNetSAMPlans
    nnUNetTrainerMissingModality            stock nnU-Net (2d, 3d_fullres)   -p nnUNetPlans
    ... one per trainer of methods.METHODS whose method has a `<name>_missing` variant

plus `<Trainer>_debug` / `_short` (sam_trainers_short) and `_seed<k>` (seed_trainers) of each.
"""

from __future__ import annotations

from nnunet_sam_adapter.methods import METHODS, dropout_trainer_name
from nnunet_sam_adapter.training.modality_dropout import ModalityDropoutTrainerMixin


def make_dropout_variant(base: type, *, module: str = __name__) -> type:
    """`base` trainer with modality dropout in its training transforms, named by `dropout_trainer_name`."""
    return type(dropout_trainer_name(base.__name__), (ModalityDropoutTrainerMixin, base),
                {"__doc__": f"{base.__name__}, trained with modality dropout.", "__module__": module})


def registry_dropout_variants() -> dict[str, type]:
    """{class name: class} of the dropout trainer of every method that has a dropout variant."""
    bases = {METHODS[m.dropout_of].trainer: METHODS[m.dropout_of] for m in METHODS.values() if m.dropout_of}
    variants = {}
    for method in bases.values():
        variant = make_dropout_variant(method.trainer_class())
        variants[variant.__name__] = variant
    return variants


globals().update(registry_dropout_variants())
