"""The speed benchmark behind `nnUNetv2_sam_speed`: every variant measured in its own process, then
the report (ratios, tables, performance page)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict

from nnunet_sam_adapter.model.execution import resolve_attention, resolve_batched_streams, resolve_compile
from nnunet_sam_adapter.speed.measurement import describe_environment, load_average, measure_variant_in_subprocess
from nnunet_sam_adapter.speed.report import speed_ratios, write_speed_outputs
from nnunet_sam_adapter.speed.variants import (SpeedSettings, default_autocast_name, network_defaults_row,
                                               resolve_device, speed_variants)


def _describe_result(result: dict) -> str:
    if "error" in result:
        return f"      {result['error']}"
    return (f"      train {result['train_images_per_s']:.3f} img/s, infer {result['infer_images_per_s']:.3f} img/s, "
            f"peak {result['train_peak_mb']:.0f}/{result['infer_peak_mb']:.0f} MB")


def run_speed_benchmark(settings: SpeedSettings, output_dir: str | os.PathLike,
                        docs_path: str | os.PathLike | None = None, progress=print) -> dict:
    """Runs every variant, writes OUTPUT/speed.json and OUTPUT/speed.md (and `docs_path`) -> the report."""
    device = resolve_device(settings.device)
    variants = speed_variants(settings, device)
    environment = describe_environment(device, settings)
    start = time.perf_counter()
    results = {}
    for i, variant in enumerate(variants, 1):
        progress(f"[{i}/{len(variants)}] {variant.label} ...")
        results[variant.key] = measure_variant_in_subprocess(variant, settings)
        progress(_describe_result(results[variant.key]))
    attention, batched = resolve_attention("auto", device), resolve_batched_streams("auto", device)
    defaults_key = network_defaults_row(device)
    report = {
        "environment": environment, "settings": asdict(settings), "reference": variants[0].key,
        "network_defaults": {"device": device.type, "attention": attention,
                             "autocast": default_autocast_name(device),
                             "compile": "on" if resolve_compile("auto", device) else "off",
                             "checkpoint_blocks": False, "batched_streams": batched, "row": defaults_key},
        "variants": [results[v.key] for v in variants],
        "comparisons": speed_ratios(results, defaults_key, attention, batched),
        "total_wall_s": time.perf_counter() - start,
    }
    report["environment"]["load_average_at_end"] = load_average()
    write_speed_outputs(report, output_dir, docs_path)
    return report
