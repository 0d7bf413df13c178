"""SAM trainers for nnU-Net (`nnUNetv2_train ID 2d FOLD -tr SAMCrossModalTrainer -p nnUNetSAMPlans`).

This folder is meant for nnU-Net's `nnUNet_extTrainer` env var; nnU-Net imports this module by its
plain name, so it uses absolute imports of the package only. Each trainer overrides nnU-Net hooks and
nothing more; the logic lives in nnunet_sam_adapter.
"""

from __future__ import annotations

import torch
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunet_sam_adapter.model.checkpoints import load_pretrained_or_warn
from nnunet_sam_adapter.model.network import init_class_prior
from nnunet_sam_adapter.methods import build_method_network, sam_settings
from nnunet_sam_adapter.model.parameters import format_parameter_report, parameter_report
from nnunet_sam_adapter.training.single_output_trainer import SingleOutputAdamWTrainer


class SAMCrossModalTrainer(SingleOutputAdamWTrainer):
    """The paper's method: frozen SAM encoder, cross-modality adapters, prompt-free mask decoder.

    Paper setup: AdamW, lr 1e-3, Dice + CE loss (nnU-Net's DC_and_CE_loss is eq. 3 with weights 1, 1).
    The paper gives no schedule or weight decay: nnU-Net's poly decay and AdamW's default decay are kept.

    Fast start (issue #22, docs/method.md "Fast start"), the paper says nothing on either: after the SAM
    weights are loaded, every class output starts at the class prior (`init_class_prior`, foreground
    probability `foreground_prior` on every pixel; `fast_start = False` turns it off), and the mask
    decoder trains at 0.1 x the lr (`lr_scales`; adapters and stems at the paper's 1e-3).
    """

    method = "ours"
    fast_start = True
    foreground_prior = 0.01
    lr_scales = {"sam.mask_decoder.": 0.1}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        sam_settings(self.configuration_manager.configuration, self.plans_manager.plans_name)
        self.initial_lr = 1e-3
        self.weight_decay = 1e-2
        self._restoring_nnunet_checkpoint = False

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision: bool = False) -> torch.nn.Module:
        # Weights are random here: `initialize` loads the SAM checkpoint for training, and prediction
        # loads the nnU-Net checkpoint, so no SAM file is needed to predict.
        return build_method_network(cls.method, configuration_manager.configuration, num_input_channels,
                                    num_output_channels, plans_manager.plans_name)

    def initialize(self):
        was_initialized = self.was_initialized
        super().initialize()
        if was_initialized:
            return
        network = self._bare_network()
        if self._restoring_nnunet_checkpoint:
            # Every weight, frozen encoder included, comes from the nnU-Net checkpoint being loaded,
            # so `--c` and `--val` work without the SAM file.
            self.print_to_log_file("SAM weights: from the nnU-Net checkpoint being loaded")
            self.print_to_log_file(format_parameter_report(parameter_report(network), type(self).__name__))
            return
        settings = sam_settings(self.configuration_manager.configuration, self.plans_manager.plans_name)
        loaded = load_pretrained_or_warn(network.sam, settings.get("checkpoint"),
                                         settings.get("allow_random_encoder", False))
        network.train()  # reassert: frozen encoder in eval mode after loading
        self.print_to_log_file(f"SAM weights: {loaded['path'] or 'RANDOM (explicit opt-in)'} "
                               f"({loaded['variant']}); resized: {', '.join(loaded['resized']) or 'none'}")
        self.start_at_class_prior(network)
        self.print_to_log_file(format_parameter_report(parameter_report(network), type(self).__name__))

    def start_at_class_prior(self, network: torch.nn.Module) -> None:
        """The fast start (issue #22), on the freshly loaded SAM weights; nothing when `fast_start` is False."""
        if self.fast_start:
            init_class_prior(network, self.foreground_prior)
            self.print_to_log_file(f"fast start: every class output starts at the class prior (foreground "
                                   f"probability {self.foreground_prior} on every pixel)")

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        self._restoring_nnunet_checkpoint = True
        try:
            super().load_checkpoint(filename_or_checkpoint)
        finally:
            self._restoring_nnunet_checkpoint = False

    def _bare_network(self) -> torch.nn.Module:
        network = self.network.module if isinstance(self.network, DDP) else self.network
        return network._orig_mod if isinstance(network, OptimizedModule) else network


class SAMCrossModalPlusTrainer(SAMCrossModalTrainer):
    """Beyond the paper (method `ours_plus`): cross-modality adapters after every encoder block and a
    full-resolution refinement head on the mask decoder's logits (docs/method.md). Same plans, loss,
    optimiser and budget as SAMCrossModalTrainer; the paper's method stays SAMCrossModalTrainer."""

    method = "ours_plus"


class SAMCrossModalPlusUp2Trainer(SAMCrossModalTrainer):
    """Beyond the paper (method `ours_plus_up2`, issue #22): ours_plus with the frozen encoder at twice the
    patch size (network option `encoder_scale=2`; docs/method.md "Encoder resolution"). Same plans, loss,
    optimiser and budget; 4x the pixels through the encoder."""

    method = "ours_plus_up2"


class SAMCrossModalPlusFineTuneTrainer(SAMCrossModalTrainer):
    """Beyond the paper (method `ours_plus_ft`, issue #22): ours_plus with the SAM image encoder fine-tuned
    (network option `train_encoder=True`; docs/method.md "Encoder fine-tuned"). The pretrained encoder trains
    at 0.1 x the lr, as the pretrained mask decoder does; new parts (adapters, stems, refinement head) at 1e-3."""

    method = "ours_plus_ft"
    lr_scales = {**SAMCrossModalTrainer.lr_scales, "sam.image_encoder.": 0.1}


class SAMCrossModal3DTrainer(SAMCrossModalTrainer):
    """Beyond the paper (method `ours_3d`, issue #18): the paper's network on stacks of D adjacent slices
    with zero-initialised cross-slice adapters (`SAMCrossModal3DNetwork`), trained and predicted by nnU-Net's
    own 3D machinery (3D data loader and augmentation, 3D sliding window) on the SAM planner's 3D
    configuration: `nnUNetv2_train ID 3d_sam FOLD -tr SAMCrossModal3DTrainer -p nnUNetSAMPlans`. Same
    recipe as SAMCrossModalTrainer (AdamW 1e-3, fast start, decoder at 0.1 x the lr); the cross-slice
    adapters, new like the cross-modality ones, train at the full lr.

    Foreground sampling: nnU-Net forces a foreground-centred patch into the last third of each batch
    (`round(batch x 0.67)` random patches first), which at the planner's usual 3d_sam batch of one stack is
    none at all; measured on the 3 mm real-data proxy, a fold then never left the all-background plateau in
    400 slices. So each stack is foreground-centred with probability `oversample_foreground_percent` (0.33)
    instead: nnU-Net's own `probabilistic_oversampling` switch (its nnUNetTrainer_probabilisticOversampling).
    """

    method = "ours_3d"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.probabilistic_oversampling = True


class SAMEarlyFusionTrainer(SAMCrossModalTrainer):
    """Baseline: all four modalities -> 1x1 conv -> 3 channels -> one SAM (paper Fig. 3, Tables 1-2)."""

    method = "early_fusion"


class SAMSingleModalityT1Trainer(SAMCrossModalTrainer):
    """Baseline: T1 only (paper Table 1)."""

    method = "T1"


class SAMSingleModalityT1ceTrainer(SAMCrossModalTrainer):
    """Baseline: T1ce only (paper Table 1)."""

    method = "T1ce"


class SAMSingleModalityT2Trainer(SAMCrossModalTrainer):
    """Baseline: T2 only (paper Table 1)."""

    method = "T2"


class SAMSingleModalityFLAIRTrainer(SAMCrossModalTrainer):
    """Baseline: FLAIR only (paper Table 1)."""

    method = "FLAIR"
