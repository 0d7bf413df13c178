"""Modality-dropout trainers of every multi-modal registered method, generated from the registry
(methods.with_modality_dropout): one model for any non-empty subset of T1 / T1ce / T2 / FLAIR. Each is its
method's trainer with ModalityDropoutTrainerMixin in front: same network, loss and optimiser, only the
training transforms differ, so the comparison with and without dropout is fair.

    SAMCrossModalMissingModalityTrainer     ours                    -p nnUNetSAMPlans
    SAMCrossModalPlusTrainerMissingModality ours_plus               -p nnUNetSAMPlans
    SAMEarlyFusionMissingModalityTrainer    SAM early fusion        -p nnUNetSAMPlans
    nnUNetTrainerMissingModality            stock nnU-Net (2d, 3d_fullres)   -p nnUNetPlans
    ... one per trainer of methods.METHODS whose method has a `<name>_missing` variant
    <Trainer>MissingModalityFull50          the same, half the samples keep all four (`<name>_missing_full50`)

plus `<Trainer>_debug` / `_short` (sam_trainers_short) and `_seed<k>` (seed_trainers) of each.
"""

from __future__ import annotations

from nnunet_sam_adapter.methods import METHODS, dropout_trainer_name
from nnunet_sam_adapter.training.modality_dropout import ModalityDropoutTrainerMixin


def make_dropout_variant(base: type, full_set: float = 0.0, *, module: str = __name__) -> type:
    """`base` trainer with modality dropout in its training transforms (`full_set`: the share of samples
    that keep all modalities), named by `dropout_trainer_name`."""
    share = f", {round(100 * full_set)}% full set" if full_set else ""
    doc = f"{base.__name__}, trained with modality dropout{share}."
    return type(dropout_trainer_name(base.__name__, full_set), (ModalityDropoutTrainerMixin, base),
                {"__doc__": doc, "__module__": module, "modality_full_set_probability": full_set})


def registry_dropout_variants() -> dict[str, type]:
    """{class name: class} of the dropout trainer of every registered dropout method."""
    variants = {}
    for method in METHODS.values():
        if method.dropout_of and method.trainer_name not in variants:
            variant = make_dropout_variant(METHODS[method.dropout_of].trainer_class(), method.dropout_full_set)
            variants[variant.__name__] = variant
    return variants


globals().update(registry_dropout_variants())
