"""What the speed benchmark measures: its settings and the rows (variants) of its table.

Rows, all at the same backbone / input size / batch:
    ours            two passes vs batched (a), SAM attention vs SDPA vs folded (b), fp32 vs low-precision
                    autocast (c), torch.compile (d), activation checkpointing of the frozen blocks (e)
    references      early fusion (one stream) with the network defaults; stock nnU-Net 2d
                    PlainConvUNet as nnU-Net's ExperimentPlanner builds it for this patch and channel count
    ours_3d         beyond the paper (issue #18): the 3D network (network defaults) on max(1, batch // slices)
                    stacks of `slices` slices; its images/s count slices, so it compares per image
The low-precision, checkpointing and compile rows use what the network's 'auto' settings pick on the
device (attention, stream batching, autocast dtype), so (b)-(e) are measured where the defaults run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnunet_sam_adapter.methods import METHODS, QUICK_METHODS
from nnunet_sam_adapter.model.execution import resolve_attention, resolve_autocast, resolve_batched_streams

# The quick comparison's networks, in registry order; workload.py builds each of the three its own way.
OURS, EARLY_FUSION, NNUNET_2D = (METHODS[name] for name in QUICK_METHODS)
OURS_3D = METHODS["ours_3d"]
AUTOCAST_NAMES = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}
ATTENTION_LABELS = {"sam": "SAM attention", "sdpa": "SDPA", "folded": "folded rel-pos attention"}


@dataclass
class SpeedSettings:
    """Benchmark settings; the defaults finish in under 10 minutes on 2 CPU cores (vit_b, 256x256)."""

    backbone: str = "vit_b"
    input_size: int = 256
    batch_size: int = 2
    adapter_depth: int = 6
    num_classes: int = 2
    input_channels: int = 4
    warmup_steps: int = 1
    train_steps: int = 5  # median of 5: 2 steps left ratios within +-15% noise on 2 cores
    infer_steps: int = 5
    device: str = "auto"  # 'auto' = cuda when available, else cpu
    include_compile: bool | None = None  # None: on CUDA only (CPU compile takes minutes per graph)
    variant_timeout_s: int = 900
    threads: int | None = None  # torch threads on CPU (None: torch's default)
    only: tuple[str, ...] | None = None  # variant keys to run (None: all); the first row is the reference
    slices: int = 4  # the ours_3d row: slices per stack D (stacks = max(1, batch_size // slices))


@dataclass
class SpeedVariant:
    """One row: `method` is a name of `methods.METHODS`; `network_kwargs` go to its network."""

    key: str
    label: str
    method: str
    network_kwargs: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_autocast_name(device: torch.device) -> str:
    """The autocast the networks' 'auto' default picks on `device` ('off', 'bf16' or 'fp16')."""
    return AUTOCAST_NAMES[resolve_autocast("auto", device)]


def has_sdpa(backbone: str) -> bool:
    """Only SAM's ViT has the SDPA and folded attentions here (LiteMedSAM's TinyViT keeps its own)."""
    return backbone != "litemedsam"


def attention_label(attention: str, backbone: str) -> str:
    return ATTENTION_LABELS[attention] if has_sdpa(backbone) else "TinyViT attention"


def fp32_row_key(attention: str, batched: bool) -> str | None:
    """The fp32 row with this attention and stream batching (None: no such row)."""
    return {("sam", False): "two_passes", ("sam", True): "batched", ("sdpa", True): "sdpa",
            ("folded", False): "folded"}.get((attention, batched))


def speed_variants(settings: SpeedSettings, device: torch.device) -> list[SpeedVariant]:
    """The rows of the table, in order; the first is the reference the ratios are taken against.
    `low_precision_alt` repeats the low-precision row with SAM's attention, or with SDPA where SAM's is the
    default (SAM ViT only)."""
    autocast = default_autocast_name(device)
    # no native low precision here: the bf16 row still shows what it would cost
    low_precision, autocast_label = ("bf16", "fp32") if autocast == "off" else (autocast, autocast)
    sdpa = has_sdpa(settings.backbone)
    attention = resolve_attention("auto", device) if sdpa else "sam"
    other = "sdpa" if attention == "sam" else "sam"
    batched = resolve_batched_streams("auto", device)
    streams = "batched" if batched else "two passes"

    def name(kind: str) -> str:
        return attention_label(kind, settings.backbone)

    ours = OURS.label
    plain = {"checkpoint_blocks": False, "compile": "off"}
    defaults = {**plain, "batched_streams": batched, "attention": attention, "autocast": autocast}
    rows = [
        SpeedVariant("two_passes", f"{ours}, two passes, {name('sam')}, fp32", OURS.name,
                     {**plain, "batched_streams": False, "attention": "sam", "autocast": "off"}),
        SpeedVariant("batched", f"{ours}, batched, {name('sam')}, fp32", OURS.name,
                     {**plain, "batched_streams": True, "attention": "sam", "autocast": "off"}),
        SpeedVariant("sdpa", f"{ours}, batched, SDPA, fp32", OURS.name,
                     {**plain, "batched_streams": True, "attention": "sdpa", "autocast": "off"}),
        SpeedVariant("folded", f"{ours}, two passes, {name('folded')}, fp32", OURS.name,
                     {**plain, "batched_streams": False, "attention": "folded", "autocast": "off"}),
        SpeedVariant("low_precision", f"{ours}, {streams}, {name(attention)}, {low_precision} autocast", OURS.name,
                     {**defaults, "autocast": low_precision}),
        SpeedVariant("low_precision_alt", f"{ours}, {streams}, {name(other)}, {low_precision} autocast", OURS.name,
                     {**defaults, "attention": other, "autocast": low_precision}),
        SpeedVariant("checkpointing", f"{ours}, {streams}, {name(attention)}, {autocast_label}, activation "
                     f"checkpointing", OURS.name, {**defaults, "checkpoint_blocks": True}),
    ]
    if not sdpa:
        rows = [v for v in rows if v.key not in ("sdpa", "folded", "low_precision_alt")]
    include_compile = settings.include_compile if settings.include_compile is not None else device.type == "cuda"
    if include_compile:
        rows.append(SpeedVariant("compiled", f"{ours}, {streams}, {name(attention)}, {autocast_label}, torch.compile",
                                 OURS.name, {**defaults, "compile": "on"}))
    rows += [
        SpeedVariant("early_fusion", f"reference: {EARLY_FUSION.label} (one stream), network defaults",
                     EARLY_FUSION.name, {}),
        SpeedVariant("nnunet", f"reference: stock {NNUNET_2D.label} PlainConvUNet", NNUNET_2D.name, {}),
        SpeedVariant("ours_3d", f"{OURS_3D.label}, stacks of {settings.slices} slices, network defaults",
                     OURS_3D.name, {}),
    ]
    if settings.only:
        unknown = set(settings.only) - {v.key for v in rows}
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; expected some of {[v.key for v in rows]}")
        rows = [v for v in rows if v.key in settings.only]
    return rows


def network_defaults_row(device: torch.device) -> str | None:
    """Key of the row that runs the networks' 'auto' settings on `device`."""
    if default_autocast_name(device) != "off":
        return "low_precision"
    return fp32_row_key(resolve_attention("auto", device), resolve_batched_streams("auto", device))


def comparisons(attention: str, batched: bool) -> list[tuple[str, str | None, str]]:
    """(numerator, denominator, what the ratio answers); denominator None = the network-defaults row."""
    other = "sdpa" if attention == "sam" else "sam"  # the attention of the low_precision_alt row
    low = {attention: "low_precision", other: "low_precision_alt"}
    label = {"sam": "SAM attention", "sdpa": "SDPA", "folded": "folded attention"}
    low_pair = ("folded", "sam") if attention == "folded" else ("sdpa", "sam")
    return [
        ("batched", "two_passes", "(a) batched streams vs two passes"),
        ("sdpa", "batched", "(b) SDPA vs SAM attention, fp32"),
        ("folded", "two_passes", "(b) folded vs SAM attention, fp32"),
        (low[low_pair[0]], low[low_pair[1]],
         f"(b) {label[low_pair[0]]} vs {label[low_pair[1]]}, low-precision autocast"),
        ("low_precision", fp32_row_key(attention, batched) or "no fp32 row", "(c) low-precision autocast vs fp32"),
        ("compiled", None, "(d) torch.compile vs eager"),
        ("checkpointing", None, "(e) activation checkpointing vs none"),
        ("early_fusion", None, f"reference: {EARLY_FUSION.name} vs {OURS.name} (defaults)"),
        ("nnunet", None, f"reference: stock {NNUNET_2D.label} vs {OURS.name} (defaults)"),
        ("ours_3d", None, f"beyond the paper: {OURS_3D.name} (per slice) vs {OURS.name} (defaults)"),
    ]
