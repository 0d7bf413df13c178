"""What one speed-benchmark step runs: the variant's network, nnU-Net's loss and the optimiser, a batch.

A training step is forward + nnU-Net's Dice+CE loss + backward + optimiser step: AdamW on the trainable
parameters for the SAM methods (paper II), SGD with deep supervision for stock nnU-Net (nnUNetTrainer's
defaults). Inference is a no-grad eval forward.
"""

from __future__ import annotations

import torch

from nnunet_sam_adapter.speed.variants import EARLY_FUSION, NNUNET_2D, OURS, OURS_3D, SpeedSettings, SpeedVariant


def plain_conv_unet_architecture(patch_size: int, input_channels: int) -> dict:
    """nnU-Net's 2d architecture kwargs for a square patch, as ExperimentPlanner.get_plans_for_configuration
    produces them (nnunetv2 2.8): topology from its own get_pool_and_conv_props, 32 base features
    doubling to 512, 2 convs per stage, InstanceNorm + LeakyReLU, conv bias."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    spacing = (1.0, 1.0)
    _, pool_kernels, conv_kernels, patch, _ = get_pool_and_conv_props(spacing, (patch_size, patch_size), 4, 999999)
    n_stages = len(pool_kernels)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n_stages, "features_per_stage": [min(512, 32 * 2 ** i) for i in range(n_stages)],
            "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": conv_kernels, "strides": pool_kernels,
            "n_conv_per_stage": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
            "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        "patch_size": [int(p) for p in patch],
    }


def build_variant_network(variant: SpeedVariant, settings: SpeedSettings) -> torch.nn.Module:
    """The variant's network with random weights, on the CPU."""
    from nnunet_sam_adapter.model.network import SAMCrossModal3DNetwork, SAMCrossModalNetwork, SAMSingleStreamNetwork

    s = settings
    if variant.method == OURS_3D.name:
        return SAMCrossModal3DNetwork(s.input_channels, s.num_classes, s.backbone, s.input_size, s.adapter_depth,
                                      **variant.network_kwargs)
    if variant.method == OURS.name:
        return SAMCrossModalNetwork(s.input_channels, s.num_classes, s.backbone, s.input_size, s.adapter_depth,
                                    **variant.network_kwargs)
    if variant.method == EARLY_FUSION.name:
        return SAMSingleStreamNetwork(s.input_channels, s.num_classes, s.backbone, s.input_size,
                                      **variant.network_kwargs)
    if variant.method != NNUNET_2D.name:
        raise ValueError(f"speed variant {variant.key}: no network for method {variant.method!r}")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plain_conv_unet_architecture(s.input_size, s.input_channels)
    return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                  s.input_channels, s.num_classes, allow_init=True, deep_supervision=True)


def loss_and_optimizer(model: torch.nn.Module, variant: SpeedVariant):
    """nnU-Net's Dice+CE (paper eq. 3); deep-supervision wrapper and SGD for stock nnU-Net."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    if variant.method == NNUNET_2D.name:
        n_outputs = len(model.decoder.stages)
        weights = torch.tensor([1 / 2 ** i for i in range(n_outputs)])
        weights[-1] = 0
        loss = DeepSupervisionWrapper(loss, (weights / weights.sum()).tolist())
        optimizer = torch.optim.SGD(model.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)
    else:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return loss, optimizer


def synthetic_batch(model: torch.nn.Module, variant: SpeedVariant, settings: SpeedSettings,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
    """Random images (B, C, S, S) and a box label (B, 1, S, S); for stock nnU-Net one label per
    deep-supervision output (halved each time); for ours_3d stacks (B', C, D, S, S) and (B', 1, D, S, S)."""
    b, s = settings.batch_size, settings.input_size
    if variant.method == OURS_3D.name:  # (stacks, C, D, S, S): the 3D network's input
        stacks, d = max(1, b // settings.slices), settings.slices
        images = torch.randn(stacks, settings.input_channels, d, s, s, device=device)
        target = torch.zeros(stacks, 1, d, s, s, device=device)
        target[..., s // 4: s // 2, s // 3: 2 * s // 3] = 1
        return images, target
    images = torch.randn(b, settings.input_channels, s, s, device=device)
    target = torch.zeros(b, 1, s, s, device=device)
    target[:, :, s // 4: s // 2, s // 3: 2 * s // 3] = 1
    if variant.method == NNUNET_2D.name:
        target = [torch.nn.functional.interpolate(target, scale_factor=1 / 2 ** i, mode="nearest")
                  for i in range(len(model.decoder.stages))]
    return images, target
