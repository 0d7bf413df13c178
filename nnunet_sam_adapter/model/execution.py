"""How a SAM network executes on a device: attention kernel, autocast dtype, torch.compile.

The networks take these as plain-string kwargs (they end up in nnU-Net plans, so JSON-serialisable):

    attention  'auto' | 'sam' | 'sdpa'          SAM's attention or `attention.SDPAAttention`
    autocast   'auto' | 'off' | 'bf16' | 'fp16' mixed precision around the whole forward
    compile    'auto' | 'off' | 'on'            torch.compile of the network's forward

'auto' is resolved per call from the input's device type to what `nnUNetv2_sam_speed` measured
fastest (docs/performance.md); when a plan has none of these keys, 'auto' is what it gets:

    CPU   SAM attention (SDPA measured slower on CPU); bf16 autocast only where the CPU has native bf16 instructions (AVX512-BF16 or AMX),
          fp32 elsewhere (emulated bf16 is slower than fp32); no compile (minutes of compile time per
          shape on a few cores, and nnU-Net itself disables torch.compile on CPU).
    CUDA  SDPA (fused flash / memory-efficient kernels); bf16 autocast where supported, else fp16;
          compile left to nnU-Net (`nnUNet_compile`, on by default on CUDA) to avoid compiling twice.
    other (mps, ...)  SAM attention, no autocast, no compile: untested devices get the reference path.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import torch

ATTENTION_CHOICES = ("auto", "sam", "sdpa")
AUTOCAST_CHOICES = ("auto", "off", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "off", "on")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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
    AMX: Sapphire Rapids+). Without them oneDNN emulates bf16 and autocast makes CPU training slower."""
    return bool(cpu_flags() & set(NATIVE_BF16_CPU_FLAGS))


def cpu_capability() -> dict:
    """What the benchmark records about the CPU."""
    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16_flags": sorted(cpu_flags() & set(NATIVE_BF16_CPU_FLAGS)),
            "native_bf16": cpu_has_native_bf16()}


def resolve_attention(mode: str, device: torch.device) -> str:
    """'auto' -> 'sdpa' on CUDA, 'sam' elsewhere: on CPU SAM's own attention measured faster
    (docs/performance.md: SDPA 0.95x in fp32, slower again under bf16 autocast)."""
    if mode != "auto":
        return mode
    return "sdpa" if device.type == "cuda" else "sam"


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


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype`, or a no-op (the caller's autocast state, if any, then applies)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
