"""The cross-modality attention adapter (paper, section II.B, eqs. 1-2 and the adapter equation), and the
cross-slice adapter of the 3D network (beyond the paper, issue #18; `CrossSliceAdapter`).

    C     = f(F_T1 (+) F_T2)      f: pointwise linear 2c -> c  ("1x1 convolution", paper Fig. 2)
    X_T1  = F_T1 + C
    X_T2  = F_T2 + C

Features are channel-last (SAM ViT blocks: (B, h, w, c); TinyViT blocks: (B, L, c)), so the 1x1
convolution is an `nn.Linear` over the last axis: the same operation without two transposes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CrossModalityAdapter(nn.Module):
    """Fuses the T1-based and T2-based features of one encoder block into a shared residual.

    Initialisation (not given by the paper): the projection starts at zero, so at the first step each
    stream sees exactly the pretrained encoder's features (the adapter is an identity) and fine-tuning
    starts from what SAM already computes, the usual choice for residual adapters (zero-initialised
    LoRA "B" / ControlNet zero convolutions). The weight still gets a non-zero gradient
    (dL/dW = dL/dC^T [F_T1, F_T2]), so it learns from the first step. `zero_init=False` keeps
    PyTorch's default Linear initialisation (the ablation row `ours_adapter_init_default`).
    """

    def __init__(self, width: int, zero_init: bool = True):
        super().__init__()
        self.width = width
        self.fuse = nn.Linear(2 * width, width)
        if zero_init:
            nn.init.zeros_(self.fuse.weight)
            nn.init.zeros_(self.fuse.bias)

    def shared_residual(self, f_t1: torch.Tensor, f_t2: torch.Tensor) -> torch.Tensor:
        """C = f(concat(F_T1, F_T2)); inputs and output (..., c)."""
        return self.fuse(torch.cat([f_t1, f_t2], dim=-1))

    def forward(self, f_t1: torch.Tensor, f_t2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F_T1, F_T2), each (..., c) -> (X_T1, X_T2), each (..., c)."""
        c = self.shared_residual(f_t1, f_t2)
        return f_t1 + c, f_t2 + c

    def forward_stacked(self, features: torch.Tensor) -> torch.Tensor:
        """Both streams stacked on the batch axis: (2B, ..., c) with T1-based first -> (2B, ..., c)."""
        f_t1, f_t2 = features.chunk(2, dim=0)
        c = self.shared_residual(f_t1, f_t2)
        return features + torch.cat([c, c], dim=0)


class CrossSliceAdapter(nn.Module):
    """Beyond the paper (issue #18, docs/method.md "3D context"): lets each token of a slice see its
    neighbours in the adjacent slices of the same stack, as MA-SAM's 3D adapters do for single-modality
    3D images, here as a residual depthwise 3D convolution over the token grid:

        X = F + conv3d_depthwise(F)     F: the block's tokens of D consecutive slices as (B, c, D, h, w)

    The encoder runs the D slices as a batch of B*D images, so a block's output is channel-last
    (B*D, h, w, c) (SAM ViT) or (B*D, h*w, c) (TinyViT, square grid); both are regrouped to (B, c, D, h, w),
    convolved with zero padding (so a stack of D = 1 or the first and last slices see zeros beyond the
    stack, as nnU-Net's sliding window pads) and put back in the block's own layout. `kernel` = (kD, kh, kw),
    odd sizes; (3, 3, 3) by default: the 3x3 in-plane neighbourhood of the slices above and below.

    Zero-initialised (weight and bias), like the cross-modality adapter: at the first step it is an
    identity, so the 3D network equals the 2D one slice by slice and fine-tuning starts from it; the weight
    still gets a non-zero gradient from the first step (dL/dW = sum of dL/dX * shifted F).
    """

    def __init__(self, width: int, kernel: tuple[int, int, int] = (3, 3, 3), zero_init: bool = True):
        super().__init__()
        kernel = tuple(int(k) for k in kernel)
        if len(kernel) != 3 or any(k < 1 or k % 2 == 0 for k in kernel):
            raise ValueError(f"cross-slice kernel must be three odd sizes (kD, kh, kw), got {kernel}")
        self.width, self.kernel = width, kernel
        self.conv = nn.Conv3d(width, width, kernel, padding=tuple(k // 2 for k in kernel), groups=width)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, features: torch.Tensor, slices: int) -> torch.Tensor:
        """(N, h, w, c) or (N, L, c) with N = B * `slices` (slice index fastest) -> same shape and layout."""
        n, c = features.shape[0], features.shape[-1]
        if n % slices:
            raise ValueError(f"cross-slice adapter: {n} images are not stacks of {slices} slices")
        if features.ndim == 4:
            h, w = features.shape[1:3]
        elif features.ndim == 3:
            h = w = math.isqrt(features.shape[1])
            if h * w != features.shape[1]:
                raise ValueError(f"cross-slice adapter: {features.shape[1]} tokens are not a square grid")
        else:
            raise ValueError(f"cross-slice adapter: expected (N, h, w, c) or (N, L, c), got {tuple(features.shape)}")
        grid = features.reshape(n // slices, slices, h, w, c).permute(0, 4, 1, 2, 3)  # (B, c, D, h, w)
        residual = self.conv(grid).permute(0, 2, 3, 4, 1).reshape(features.shape)
        return features + residual
