"""nnU-Net trainers for MONAI's transformer U-Nets in 2D (benchmark baselines, NOT TransUNet / Swin-Unet).

`nnUNetv2_train ID 2d FOLD -tr MONAISwinUNETR2DTrainer` (stock nnUNetPlans). nnU-Net imports this
module by its plain name from `nnUNet_extTrainer`, so it uses absolute imports of the package only.
"""

from __future__ import annotations

import torch

from nnunet_sam_adapter.model.monai_baselines import build_monai_baseline
from nnunet_sam_adapter.training.single_output_trainer import SingleOutputAdamWTrainer


class _MONAIBaselineTrainer(SingleOutputAdamWTrainer):
    """nnU-Net pipeline (data, augmentation, Dice + CE loss, inference) around a MONAI network.

    One output, so deep supervision is off. AdamW lr 1e-4, weight decay 1e-5 with nnU-Net's poly
    decay: the settings MONAI's SwinUNETR/UNETR tutorials train these transformers with (nnU-Net's
    SGD lr 1e-2 is tuned for its CNNs).
    """

    baseline = ""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-4
        self.weight_decay = 1e-5

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision: bool = False) -> torch.nn.Module:
        return build_monai_baseline(cls.baseline, configuration_manager.patch_size, num_input_channels,
                                    num_output_channels)


class MONAISwinUNETR2DTrainer(_MONAIBaselineTrainer):
    """MONAI SwinUNETR, 2D, feature size 48."""

    baseline = "swinunetr_2d"


class MONAIUNETR2DTrainer(_MONAIBaselineTrainer):
    """MONAI UNETR (ViT-B/16 encoder), 2D."""

    baseline = "unetr_2d"
