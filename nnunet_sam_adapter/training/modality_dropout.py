"""Modality dropout: train one network that segments any non-empty subset of T1 / T1ce / T2 / FLAIR.

Scheme (the default, `p_drop=0.5`): each modality channel of a training sample is dropped
independently with probability `p_drop`; a draw that would drop every modality is redrawn. With
p_drop = 0.5 every one of the 16 subsets is equally likely before the redraw, so after it each of the
15 non-empty subsets has probability 1/15: the training distribution of mmFormer (Zhang et al., MICCAI
2022; its code draws one of the 15 subset masks uniformly per sample) and RFNet (Ding et al., ICCV
2021, random missing subsets), and exactly the 15 subsets that RFNet / mmFormer / DeMoSeg evaluate on
BraTS 2018. We chose that over a lower per-modality rate because it weights every evaluated subset
equally; the cost is that the full set is seen in 1/15 of the samples. The marginal drop rate of one
modality is `expected_drop_rate(p_drop, n)` = (p - p^n) / (1 - p^n) (7/15 for p = 0.5, n = 4).

Second scheme (`full_set_probability` q > 0, the `<method>_missing_full50` methods, q = 0.5): a sample keeps
all four modalities with probability q, otherwise it is dropped as above. The full set is then seen in
q + (1 - q) / 15 of the samples (8/15 for q = 0.5) and every other subset in (1 - q) / 15. Our choice, not
the papers': with the uniform scheme at a 400-image budget the real-data proxy lost 12.6 Dice points on the
full set (docs/missing_modalities.md), and this scheme asks whether keeping half the samples complete
costs less there while every subset is still trained.

The dropped channel is set to 0 in nnU-Net's normalised space, which is exactly what the network gets
at inference for a missing modality: `nnUNetv2_sam_register --allow-missing` writes the missing channel
as zeros, and nnU-Net's ZScoreNormalization maps a constant channel to (x - mean) / max(std, eps) = 0
(inside and outside the nonzero mask alike; tests/test_modality_dropout.py checks it through nnU-Net's
own preprocessor). The transform runs after every intensity augmentation so nothing perturbs that 0.
"""

from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import ImageOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform

DEFAULT_DROP_PROBABILITY = 0.5
MISSING_VALUE = 0.0  # a missing modality in nnU-Net's normalised space (see the module docstring)


def expected_full_set_rate(p_drop: float, full_set_probability: float, n_modalities: int) -> float:
    """Probability that a sample keeps every modality: q + (1 - q) (1 - p)^n / (1 - p^n)."""
    if p_drop >= 1:
        return full_set_probability
    kept_all = (1 - p_drop) ** n_modalities / (1 - p_drop ** n_modalities)  # the Bernoulli draw keeps all
    return full_set_probability + (1 - full_set_probability) * kept_all


def expected_drop_rate(p_drop: float, n_modalities: int) -> float:
    """Marginal probability that one modality is dropped: Bernoulli(p) per modality, conditioned on
    at least one kept."""
    if p_drop >= 1:
        return (n_modalities - 1) / n_modalities
    return (p_drop - p_drop ** n_modalities) / (1 - p_drop ** n_modalities)


class ModalityDropoutTransform(ImageOnlyTransform):
    """Sets a random proper subset of the modality channels (never all of them) to `missing_value`;
    with probability `full_set_probability` a sample keeps them all (see the module docstring).

    image: (C, X, Y) or (C, X, Y, Z) torch tensor of one sample; channels `channels` (default: all) are
    the modalities. At least one of them is always kept. Uses numpy's global RNG, as nnU-Net's transforms.
    """

    def __init__(self, p_drop: float = DEFAULT_DROP_PROBABILITY, channels: list[int] | None = None,
                 missing_value: float = MISSING_VALUE, full_set_probability: float = 0.0):
        super().__init__()
        if not 0 <= p_drop <= 1:
            raise ValueError(f"modality drop probability must be in [0, 1], got {p_drop}")
        if not 0 <= full_set_probability <= 1:
            raise ValueError(f"full-set probability must be in [0, 1], got {full_set_probability}")
        self.p_drop = float(p_drop)
        self.full_set_probability = float(full_set_probability)
        self.channels = None if channels is None else [int(c) for c in channels]
        self.missing_value = float(missing_value)

    def get_parameters(self, **data_dict) -> dict:
        channels = self.channels if self.channels is not None else list(range(data_dict["image"].shape[0]))
        if len(channels) < 2 or self.p_drop == 0:
            return {"dropped": []}
        if self.full_set_probability and np.random.uniform() < self.full_set_probability:
            return {"dropped": []}
        if self.p_drop >= 1:  # "drop all but one": keep one uniformly
            keep = np.random.randint(len(channels))
            return {"dropped": [c for i, c in enumerate(channels) if i != keep]}
        while True:
            drop = np.random.uniform(size=len(channels)) < self.p_drop
            if not drop.all():
                return {"dropped": [c for c, d in zip(channels, drop) if d]}

    def _apply_to_image(self, img: torch.Tensor, dropped: list[int]) -> torch.Tensor:
        if dropped:
            img[dropped] = self.missing_value
        return img


def insert_modality_dropout(transforms: ComposeTransforms, dropout: ModalityDropoutTransform) -> ComposeTransforms:
    """nnU-Net's training pipeline with `dropout` inserted after the intensity augmentations and the
    nonzero masking (before RemoveLabelTansform and the label/cascade transforms, which add no image
    channels of their own before that point). Returns a new ComposeTransforms."""
    steps = list(transforms.transforms)
    at = next((i for i, t in enumerate(steps) if isinstance(t, RemoveLabelTansform)), len(steps))
    return ComposeTransforms(steps[:at] + [dropout] + steps[at:])


class ModalityDropoutTrainerMixin:
    """Put before an nnUNetTrainer subclass: its training transforms get a ModalityDropoutTransform
    (validation and inference transforms are nnU-Net's, untouched). `modality_drop_probability` and
    `modality_full_set_probability` are class attributes so that nnU-Net's static hook can read them."""

    modality_drop_probability: float = DEFAULT_DROP_PROBABILITY
    modality_full_set_probability: float = 0.0

    @classmethod
    def get_training_transforms(cls, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None):
        transforms = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        return insert_modality_dropout(transforms, ModalityDropoutTransform(
            cls.modality_drop_probability, full_set_probability=cls.modality_full_set_probability))
