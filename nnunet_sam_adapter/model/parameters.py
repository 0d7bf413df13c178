"""Parameter counting of networks: totals, trainable share, per-part breakdown of the SAM networks (the
method-level numbers of paper Table 3 are in reporting/parameters.py)."""

from __future__ import annotations

from torch import nn

from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, _SAMSegmentationNetwork


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
    """Counts per part: 'image encoder', 'stems', 'adapters', 'cross-slice adapters' (the 3D network's; zero
    elsewhere), 'mask decoder', 'prompt embedding' (each {'total', 'trainable'}); the parts add up to
    `parameter_report(model)`."""
    stems = model.stems if isinstance(model, SAMCrossModalNetwork) else nn.ModuleList([model.stem])
    adapters = model.adapters if isinstance(model, SAMCrossModalNetwork) else nn.ModuleList()
    slice_adapters = getattr(model, "slice_adapters", nn.ModuleList())
    return {"image encoder": _count(model.sam.image_encoder), "stems": _count(stems),
            "adapters": _count(adapters), "cross-slice adapters": _count(slice_adapters),
            "mask decoder": _count(model.sam.mask_decoder), "prompt embedding": _count(model.sam.prompt)}
