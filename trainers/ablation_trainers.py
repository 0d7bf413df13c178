"""The ablation of the paper's method (issue #13): SAMCrossModalTrainer with one thing changed each.

    SAMCrossModalNoAdaptersTrainer     n = 0: two streams, summed, no cross-modality exchange
    SAMCrossModalAllAdaptersTrainer    adapters after every encoder block (paper: the first half)
    SAMCrossModalFrozenStemsTrainer    the 1x1 stems frozen: only adapters + mask decoder train (paper II.C)
    SAMCrossModalDefaultInitTrainer    adapter projections at PyTorch's default init instead of zero
    SAMCrossModalLR1e2Trainer          learning rate 1e-2 (nnU-Net's initial lr) instead of the paper's 1e-3
    SAMCrossModalConcatTrainer         the two embeddings concatenated + 1x1 conv instead of summed
    SAMCrossModalRefineTrainer         + the full-resolution refinement head of ours_plus (decoder resolution)

Each trainer only names its method; the network change is the `network_options` of the method's entry
in nnunet_sam_adapter.methods.METHODS (the one place it is written), read by `build_method_network`.
`nnUNetv2_train ID 2d 0 -tr SAMCrossModalNoAdaptersTrainer -p nnUNetSAMPlans` works as for ours.
"""

from __future__ import annotations

import torch

from nnunet_sam_adapter.trainers.sam_trainers import SAMCrossModalTrainer


class SAMCrossModalNoAdaptersTrainer(SAMCrossModalTrainer):
    """Ablation: no cross-modality adapters (n = 0)."""

    method = "ours_adapters_0"


class SAMCrossModalAllAdaptersTrainer(SAMCrossModalTrainer):
    """Ablation: an adapter after every encoder block."""

    method = "ours_adapters_all"


class SAMCrossModalFrozenStemsTrainer(SAMCrossModalTrainer):
    """Ablation: the two 1x1 stems stay at their channel-mean init (not trained)."""

    method = "ours_frozen_stems"


class SAMCrossModalDefaultInitTrainer(SAMCrossModalTrainer):
    """Ablation: adapters start at PyTorch's default Linear init (not an identity at step 0)."""

    method = "ours_adapter_init_default"


class SAMCrossModalLR1e2Trainer(SAMCrossModalTrainer):
    """Ablation: AdamW at nnU-Net's initial learning rate 1e-2 (poly decay as ours) instead of 1e-3."""

    method = "ours_lr_1e-2"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-2


class SAMCrossModalConcatTrainer(SAMCrossModalTrainer):
    """Ablation: concatenated embeddings mapped 2d -> d (starts as the sum) instead of their sum."""

    method = "ours_concat"


class SAMCrossModalRefineTrainer(SAMCrossModalTrainer):
    """Ablation: the paper's network + ours_plus's full-resolution refinement head."""

    method = "ours_refine"
