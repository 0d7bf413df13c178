"""Transformer U-Net baselines from MONAI, built in 2D from an nnU-Net configuration.

The paper compares with TransUNet and Swin-Unet. Neither ships in a maintained library, so the
benchmark uses MONAI's closest relatives, named for what they are:

    swinunetr_2d   MONAI SwinUNETR (Swin transformer encoder + CNN decoder), spatial_dims=2,
                   feature_size 48 (~25M parameters; Swin-Unet is a pure-transformer U-Net)
    unetr_2d       MONAI UNETR (ViT-B/16 encoder + CNN decoder), spatial_dims=2 (~88M parameters;
                   TransUNet is a CNN-ViT hybrid encoder with a cascaded upsampler)

Both take the nnU-Net 2d patch as their input size (nnU-Net's sliding window always feeds whole
patches) and return one output (no deep supervision).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

MONAI_BASELINES = ("swinunetr_2d", "unetr_2d")
SWIN_DIVISOR = 32  # patch embedding /2, then 4 patch-merging stages /2 each
UNETR_PATCH = 16   # ViT-B/16 tokens


class PatchSizeError(ValueError):
    """A 2d patch size the transformer cannot tile."""


def _check_patch(name: str, patch_size: Sequence[int], divisor: int) -> tuple[int, int]:
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 2 or any(p % divisor for p in patch):
        raise PatchSizeError(f"{name} needs a 2d patch size divisible by {divisor}; the plans give {list(patch)} "
                             f"(use the 2d configuration of plans whose patch is a multiple of {divisor})")
    return patch


def build_swinunetr_2d(patch_size: Sequence[int], input_channels: int, num_outputs: int,
                       feature_size: int = 48) -> nn.Module:
    """MONAI SwinUNETR in 2D for (B, C, H, W) patches -> logits (B, K, H, W)."""
    from monai.networks.nets import SwinUNETR

    _check_patch("SwinUNETR", patch_size, SWIN_DIVISOR)
    return SwinUNETR(in_channels=input_channels, out_channels=num_outputs, feature_size=feature_size,
                     spatial_dims=2)


def build_unetr_2d(patch_size: Sequence[int], input_channels: int, num_outputs: int) -> nn.Module:
    """MONAI UNETR (ViT-B/16 encoder) in 2D for (B, C, H, W) patches -> logits (B, K, H, W)."""
    from monai.networks.nets import UNETR

    patch = _check_patch("UNETR", patch_size, UNETR_PATCH)
    return UNETR(in_channels=input_channels, out_channels=num_outputs, img_size=patch, spatial_dims=2)


def build_monai_baseline(name: str, patch_size: Sequence[int], input_channels: int, num_outputs: int) -> nn.Module:
    """Network of baseline `name` (one of MONAI_BASELINES)."""
    if name == "swinunetr_2d":
        return build_swinunetr_2d(patch_size, input_channels, num_outputs)
    if name == "unetr_2d":
        return build_unetr_2d(patch_size, input_channels, num_outputs)
    raise ValueError(f"unknown MONAI baseline {name!r}; expected one of {', '.join(MONAI_BASELINES)}")
