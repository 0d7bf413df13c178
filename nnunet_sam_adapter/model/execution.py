"""How a SAM network executes on a device: attention kernel, autocast dtype, torch.compile, stream batching.

The networks take these as plain-string kwargs (they end up in nnU-Net plans, so JSON-serialisable):

    attention        'auto' | 'sam' | 'sdpa' | 'folded'  SAM's attention, `attention.SDPAAttention` or
                                                        `folded_attention.FoldedBlock` (one function, three kernels)
    autocast         'auto' | 'off' | 'bf16' | 'fp16'  mixed precision around the whole forward
    compile          'auto' | 'off' | 'on'             torch.compile of the network's forward
    batched_streams  'auto' | True | False             ours: both streams as one 2B batch, or two passes

The network resolves them for the device its parameters are on when it is built and again after every
`.to()` / `.cuda()` (never inside `forward`, so a compiled forward never sees a module change).
When a plan has none of these keys, 'auto' is what it gets:

    CPU   folded attention (`folded_attention`: rel-pos folded into q.k, no padded window queries; on 2 CPU
          cores with AMX under bf16 it trained 1.30x and predicted 1.58x as fast as SAM's attention; SDPA
          trained 0.94x as fast as SAM's in fp32; docs/performance.md);
          bf16 autocast only where the CPU has native bf16 instructions (AVX512-BF16 or AMX), fp32
          elsewhere (emulated bf16 is slower than fp32); no compile (measured on 2 cores with AMX:
          1.10x training / 1.28x inference over eager bf16 once compiled, but the first compile took
          ~440 s per shape, paid back after ~4,400 training steps of batch 2 and never by one
          predicted volume; nnU-Net itself disables torch.compile on CPU); two passes (an earlier run on 2
          CPU cores trained them 1.04x as fast as the batched call; the 2026-12-03 13:31 run measured
          batched 1.09x faster, both with SAM's attention in fp32; with the folded bf16 default: not
          measured, so two passes stay until it is).
    CUDA  measured on one H200 (`make gpu-check`, docs/performance.md): SDPA (1.08x training / 1.33x
          inference over SAM's attention under bf16), batched streams (1.13x / 1.22x over two passes),
          bf16 autocast (2.46x / 3.19x over fp32); compile left to nnU-Net (`nnUNet_compile`, on by
          default on CUDA, so it is not compiled twice; 1.82x / 2.47x once its cache is warm). The
          folded attention is not measured on CUDA yet. The autocast dtype is the precision policy below.
    other (mps, meta, ...)  SAM attention, no autocast, no compile, two passes: the reference path.

Precision policy under nnU-Net (this module's `resolve_autocast` is the one place it is written):
nnU-Net's training step wraps forward + loss in `torch.autocast('cuda')` (fp16) and scales the loss
with a GradScaler on CUDA; on CPU it uses neither. Our forward opens its own autocast region with the
resolved dtype, which takes precedence inside the network: bf16 where the GPU supports it (same
exponent range as fp32, so no overflow), else fp16, whose small gradients nnU-Net's GradScaler keeps
from underflowing (with bf16 the scaler is harmless: it multiplies and divides by the same factor).
Weights, gradients and optimiser state stay fp32, and the logits leave the network as fp32, so
nnU-Net's Dice + CE runs in its own region. On CPU 'auto' never picks fp16 (no GradScaler there).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import torch

ATTENTION_CHOICES = ("auto", "sam", "sdpa", "folded")
AUTOCAST_CHOICES = ("auto", "off", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "off", "on")
BATCHED_STREAMS_CHOICES = ("auto", True, False)
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# "1" / "0": take the CPU as having native bf16 or not, whatever its flags say. The CPU 'auto' autocast
# default follows it, so a test run (CI) can show the behaviour of both kinds of CPU on one machine.
NATIVE_BF16_OVERRIDE_ENV = "NNSAM_CPU_NATIVE_BF16"


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    """Validates a plans kwarg; booleans are accepted for compile ('on'/'off')."""
    if isinstance(value, bool) and "on" in choices:
        value = "on" if value else "off"
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True where bf16 matmuls run on bf16 hardware instructions (AVX512-BF16: Cooper Lake, Zen 4+;
    AMX: Sapphire Rapids+). Without them oneDNN emulates bf16 and autocast makes CPU training slower.
    `$NNSAM_CPU_NATIVE_BF16` = 1 / 0 overrides the detection."""
    override = os.environ.get(NATIVE_BF16_OVERRIDE_ENV, "").strip()
    if override in ("1", "0"):
        return override == "1"
    if override:
        raise ValueError(f"{NATIVE_BF16_OVERRIDE_ENV} must be 1 or 0 (or unset); got {override!r}")
    return bool(cpu_flags() & set(NATIVE_BF16_CPU_FLAGS))


def cpu_capability() -> dict:
    """What the benchmark records about the CPU."""
    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16_flags": sorted(cpu_flags() & set(NATIVE_BF16_CPU_FLAGS)),
            "native_bf16": cpu_has_native_bf16(),
            "native_bf16_override": os.environ.get(NATIVE_BF16_OVERRIDE_ENV) or None}


def resolve_attention(mode: str, device: torch.device) -> str:
    """'auto' -> 'sdpa' on CUDA (measured faster on an H200), 'folded' on CPU (on 2 cores with AMX: 1.30x
    training / 1.58x inference over SAM's attention under bf16, where SDPA trained 0.94x as fast in fp32;
    docs/performance.md), 'sam' elsewhere (the reference path)."""
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "sdpa"
    return "folded" if device.type == "cpu" else "sam"


def resolve_autocast(mode: str, device: torch.device) -> torch.dtype | None:
    """'auto' -> bf16 on CUDA (fp16 without bf16 support) and on native-bf16 CPUs, else None (fp32)."""
    if mode == "off":
        return None
    if mode != "auto":
        return _AUTOCAST_DTYPES[mode]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def resolve_compile(mode: str, device: torch.device) -> bool:
    """'auto' -> False everywhere (see the module docstring)."""
    return mode == "on"


def resolve_batched_streams(mode, device: torch.device) -> bool:
    """'auto' -> True (one 2B batch per frozen block) on CUDA (H200: 1.13x training / 1.22x inference
    over two passes, docs/performance.md); False (two passes) elsewhere: see the module docstring (two CPU
    runs disagree, 0.96x and 1.09x for batched / two passes, neither on the folded bf16 default)."""
    if mode != "auto":
        return bool(mode)
    return device.type == "cuda"


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype`, or a no-op (the caller's autocast state, if any, then applies)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
