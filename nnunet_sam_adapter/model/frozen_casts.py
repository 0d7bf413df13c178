"""Low-precision copies of the frozen encoder's weights, kept across forwards.

Under autocast every Linear / Conv2d casts its fp32 weight to bf16 (or fp16) on every call. PyTorch
caches those casts only for weights that require grad, and only inside one autocast region, so the
frozen SAM encoder (86M parameters for vit_b) was re-cast on every forward: with nnU-Net's sliding
window (one tile per forward, two streams) that was most of a CPU prediction's encoder time.

`use_cached_casts(encoder)` re-classes the encoder's Linear and Conv2d modules (state_dict unchanged)
so that, while autocast is on for their device and their weight is frozen (or trainable, while no
gradient is recorded: a fine-tuned encoder predicting), they run on a cached copy of weight and bias
in the autocast dtype. The copy is what autocast would have made (same rounding),
so outputs are unchanged; it is rebuilt when the weight changes (load_state_dict, `.to()`: the key
is dtype, storage and version counter; an optimiser step is an in-place update, so it moves the
counter too). The fp32 parameters stay the ones saved in checkpoints.
Compiled forwards (torch.compile) bypass the cache and let autocast cast as usual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cast_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) to compute with: the cached autocast-dtype copies when they apply, else the parameters."""
    weight, bias = module.weight, module.bias
    device = weight.device.type
    # Trainable weights (ours_plus_ft's encoder) need autocast's own, differentiable cast while autograd
    # records; under no_grad / inference_mode (validation, prediction) they are cached like frozen ones.
    recording = torch.is_grad_enabled() and (weight.requires_grad or (bias is not None and bias.requires_grad))
    if recording:
        module.__dict__.pop("_cast_cache", None)  # the next optimiser step makes it stale: free it now
        return weight, bias
    if torch.compiler.is_compiling() or not torch.is_autocast_enabled(device):
        return weight, bias
    dtype = torch.get_autocast_dtype(device)
    if weight.dtype == dtype:
        return weight, bias
    key = (dtype, weight.data_ptr(), weight._version,
           None if bias is None else (bias.data_ptr(), bias._version))
    cached = module.__dict__.get("_cast_cache")
    if cached is None or cached[0] != key:
        # outside inference mode: a copy made while predicting stays usable by a later training step
        with torch.inference_mode(False), torch.no_grad():
            cached = (key, weight.to(dtype), None if bias is None else bias.to(dtype))
        module.__dict__["_cast_cache"] = cached
    return cached[1], cached[2]


class CachedCastLinear(nn.Linear):
    """nn.Linear that computes with `_cast_weights` (same function under autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, *_cast_weights(self))


class CachedCastConv2d(nn.Conv2d):
    """nn.Conv2d that computes with `_cast_weights` (same function under autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *_cast_weights(self))


def clear_cached_casts(encoder: nn.Module) -> None:
    """Drops every cached copy (the network calls it when it is built, moved or re-configured)."""
    for module in encoder.modules():
        module.__dict__.pop("_cast_cache", None)


def use_cached_casts(encoder: nn.Module) -> None:
    """Re-classes the plain nn.Linear / nn.Conv2d modules of `encoder` in place (no state added)."""
    for module in encoder.modules():
        if type(module) is nn.Linear:
            module.__class__ = CachedCastLinear
        elif type(module) is nn.Conv2d:
            module.__class__ = CachedCastConv2d
