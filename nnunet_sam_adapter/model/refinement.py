"""Full-resolution refinement head (beyond the paper; used by the `ours_plus` variant).

SAM's mask decoder sees the image only through the encoder's embedding (SAM ViT: 1/16 resolution, a 4x4
grid at a 64 px input, logits 16x16 before the bilinear upsampling; LiteMedSAM's TinyViT: 1/4, 16x16 at
64 px, logits at the input resolution), never through the input pixels themselves. The head gives the
decoder output the full-resolution input back, in the spirit of HQ-SAM's fusion of early high-resolution
features:

    logits = coarse + g(concat(x, coarse))     g: two 3x3 conv + InstanceNorm + LeakyReLU, 1x1 conv -> K

The last conv starts at zero, so the variant starts as the paper's network and learns a residual.
"""
from __future__ import annotations

import torch
from torch import nn


class RefinementHead(nn.Module):
    """(x (B, C, S, S), coarse logits (B, K, S, S)) -> refined logits (B, K, S, S)."""

    def __init__(self, input_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(input_channels + num_classes, width, 3, padding=1),
            nn.InstanceNorm2d(width, affine=True), nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.InstanceNorm2d(width, affine=True), nn.LeakyReLU(0.01, inplace=True),
        )
        self.out = nn.Conv2d(width, num_classes, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return coarse + self.out(self.body(torch.cat([x.to(coarse.dtype), coarse], dim=1)))
