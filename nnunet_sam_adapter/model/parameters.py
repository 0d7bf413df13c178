"""Parameter counting of the SAM networks (paper Table 3): totals, trainable share, per-part breakdown."""

from __future__ import annotations

import torch
from torch import nn

from nnunet_sam_adapter.methods import METHODS
from nnunet_sam_adapter.model.backbones import VIT_CONFIGS
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork, _SAMSegmentationNetwork


def millions(n: int) -> str:
    """97_400_000 -> '97.40M'; small counts stay exact ('1,234')."""
    return f"{n / 1e6:.2f}M" if n >= 10_000 else f"{n:,}"


def parameter_report(model: nn.Module) -> dict:
    """Total / trainable parameter counts (works on the meta device: counts shapes, not values)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "percent": 100.0 * trainable / max(total, 1)}


def format_parameter_report(report: dict, name: str = "") -> str:
    """'name: 97.84M total, 11.15M trainable (11.4%)'."""
    prefix = f"{name}: " if name else ""
    return (f"{prefix}{report['total'] / 1e6:.2f}M total, {report['trainable'] / 1e6:.2f}M trainable "
            f"({report['percent']:.1f}%)")


def _count(module: nn.Module) -> dict:
    params = list(module.parameters())
    return {"total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad)}


def parameter_breakdown(model: _SAMSegmentationNetwork) -> dict[str, dict]:
    """Counts per part: 'image encoder', 'stems', 'adapters', 'mask decoder', 'prompt embedding'
    (each {'total', 'trainable'}); the parts add up to `parameter_report(model)`."""
    stems = model.stems if isinstance(model, SAMCrossModalNetwork) else nn.ModuleList([model.stem])
    adapters = model.adapters if isinstance(model, SAMCrossModalNetwork) else nn.ModuleList()
    return {"image encoder": _count(model.sam.image_encoder), "stems": _count(stems),
            "adapters": _count(adapters), "mask decoder": _count(model.sam.mask_decoder),
            "prompt embedding": _count(model.sam.prompt)}


def method_parameter_reports(backbone: str = "vit_b", input_size: int = 256, adapter_depth: int = 6,
                             num_classes: int = 2, input_channels: int = 4) -> dict[str, dict]:
    """Parameter report + breakdown of ours and the paper's SAM baselines (Fig. 3), built on the meta
    device (no memory, no weights): {method: {'report': ..., 'parts': ...}}. LiteMedSAM's TinyViT
    cannot be built on meta (it calls .item() in __init__); it is small enough for the CPU."""
    with torch.device("meta" if backbone in VIT_CONFIGS else "cpu"):
        models = {
            METHODS["ours"].label: SAMCrossModalNetwork(input_channels, num_classes, backbone, input_size,
                                                        adapter_depth),
            f"early fusion ({input_channels} -> 3)": SAMSingleStreamNetwork(input_channels, num_classes,
                                                                           backbone, input_size),
            "single modality (1 -> 3)": SAMSingleStreamNetwork(input_channels, num_classes, backbone,
                                                               input_size, channels=[0]),
        }
    return {name: {"report": parameter_report(m), "parts": parameter_breakdown(m)} for name, m in models.items()}
