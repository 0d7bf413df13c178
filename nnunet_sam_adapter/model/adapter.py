"""The cross-modality attention adapter (paper, section II.B, eqs. 1-2 and the adapter equation).

    C     = f(F_T1 (+) F_T2)      f: pointwise linear 2c -> c  ("1x1 convolution", paper Fig. 2)
    X_T1  = F_T1 + C
    X_T2  = F_T2 + C

Features are channel-last (SAM ViT blocks: (B, h, w, c); TinyViT blocks: (B, L, c)), so the 1x1
convolution is an `nn.Linear` over the last axis: the same operation without two transposes.
"""

from __future__ import annotations

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
