"""Trainers with modality dropout (nnunet_sam_adapter.training.modality_dropout): one model for any
non-empty subset of T1 / T1ce / T2 / FLAIR. Same networks, losses and optimisers as their plain
counterparts; only the training transforms differ, so the comparison with and without dropout is fair.

    SAMCrossModalMissingModalityTrainer     ours (cross-modality adapters)    -p nnUNetSAMPlans
    SAMEarlyFusionMissingModalityTrainer    SAM early fusion                  -p nnUNetSAMPlans
    nnUNetTrainerMissingModality            stock nnU-Net                     -p nnUNetPlans

plus `<Trainer>_debug` (2 epochs x 4 iterations) and `<Trainer>_short` (10 x 10), made in sam_trainers_short.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_sam_adapter.training.modality_dropout import ModalityDropoutTrainerMixin
from nnunet_sam_adapter.trainers.sam_trainers import SAMCrossModalTrainer, SAMEarlyFusionTrainer


class SAMCrossModalMissingModalityTrainer(ModalityDropoutTrainerMixin, SAMCrossModalTrainer):
    """Ours, trained with modality dropout."""


class SAMEarlyFusionMissingModalityTrainer(ModalityDropoutTrainerMixin, SAMEarlyFusionTrainer):
    """SAM early fusion, trained with modality dropout."""


class nnUNetTrainerMissingModality(ModalityDropoutTrainerMixin, nnUNetTrainer):
    """Stock nnU-Net, trained with modality dropout."""

