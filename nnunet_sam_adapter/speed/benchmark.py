"""Speed and memory benchmark of the SAM networks (training step, inference, peak memory).

Each variant runs in a fresh Python subprocess (`python -m nnunet_sam_adapter.speed.benchmark WORKER_JSON`), so
its peak memory is its own: CUDA max allocated, or on CPU the peak RSS of the process during the
phase (Linux: VmHWM reset through /proc/self/clear_refs before each phase; elsewhere the process peak).

Variants, all at the same backbone / input size / batch:
    dual network       two passes vs batched (a), SAM attention vs SDPA (b), fp32 vs bf16 autocast (c),
                       torch.compile (d), activation checkpointing of the frozen blocks (e)
    references         single-stream early-fusion SAM with the network defaults; stock nnU-Net 2d
                       PlainConvUNet as nnU-Net's ExperimentPlanner builds it for this patch and
                       channel count, trained the way nnUNetTrainer does (deep supervision, SGD,
                       fp16 autocast on CUDA only)
A training step is forward + nnU-Net's Dice+CE loss + backward + optimiser step (AdamW on the
trainable parameters for SAM, paper II; SGD for nnU-Net). Inference is a no-grad eval forward.
Throughputs are batch / median step time after warm-up steps.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nnunet_sam_adapter.model.execution import cpu_capability, resolve_attention, resolve_autocast, resolve_compile

PROC_STATUS = Path("/proc/self/status")


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


@dataclass
class Variant:
    key: str
    label: str
    model: str  # 'dual', 'early_fusion' or 'nnunet'
    kwargs: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_dtype_name(device: torch.device) -> str:
    """The autocast the networks' 'auto' default picks on `device` ('off', 'bf16' or 'fp16')."""
    dtype = resolve_autocast("auto", device)
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


ATTENTION_LABELS = {"sam": "SAM attention", "sdpa": "SDPA"}


def fp32_key(attention: str) -> str:
    """The batched fp32 row with this attention."""
    return "batched" if attention == "sam" else "sdpa"


def benchmark_variants(settings: SpeedSettings, device: torch.device) -> list[Variant]:
    """The rows of the table, in order; the first is the reference the ratios are taken against.
    Low-precision, checkpointing and compile rows use the attention the network default picks on
    `device`; `low_precision_alt` repeats the low-precision row with the other attention, so (b) is
    measured where the default runs."""
    fast = default_dtype_name(device)
    if fast == "off":  # no native low precision here: the bf16 row still shows what it would cost
        fast_label, low = "fp32", "bf16"
    else:
        fast_label, low = fast, fast
    attention = resolve_attention("auto", device)
    other = "sdpa" if attention == "sam" else "sam"
    name = ATTENTION_LABELS
    plain = {"checkpoint_blocks": False, "compile": "off"}
    rows = [
        Variant("two_passes", "dual, two passes, SAM attention, fp32", "dual",
                {**plain, "batched_streams": False, "attention": "sam", "autocast": "off"}),
        Variant("batched", "dual, batched, SAM attention, fp32", "dual",
                {**plain, "batched_streams": True, "attention": "sam", "autocast": "off"}),
        Variant("sdpa", "dual, batched, SDPA, fp32", "dual",
                {**plain, "batched_streams": True, "attention": "sdpa", "autocast": "off"}),
        Variant("low_precision", f"dual, batched, {name[attention]}, {low} autocast", "dual",
                {**plain, "batched_streams": True, "attention": attention, "autocast": low}),
        Variant("low_precision_alt", f"dual, batched, {name[other]}, {low} autocast", "dual",
                {**plain, "batched_streams": True, "attention": other, "autocast": low}),
        Variant("checkpointing", f"dual, batched, {name[attention]}, {fast_label}, activation checkpointing", "dual",
                {**plain, "batched_streams": True, "attention": attention, "autocast": fast, "checkpoint_blocks": True}),
    ]
    include_compile = settings.include_compile if settings.include_compile is not None else device.type == "cuda"
    if include_compile:
        rows.append(Variant("compiled", f"dual, batched, {name[attention]}, {fast_label}, torch.compile", "dual",
                            {**plain, "batched_streams": True, "attention": attention, "autocast": fast,
                             "compile": "on"}))
    rows += [
        Variant("early_fusion", "reference: early-fusion SAM (one stream), network defaults", "early_fusion", {}),
        Variant("nnunet", "reference: stock nnU-Net 2d PlainConvUNet", "nnunet", {}),
    ]
    if settings.only:
        unknown = set(settings.only) - {v.key for v in rows}
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; expected some of {[v.key for v in rows]}")
        rows = [v for v in rows if v.key in settings.only]
    return rows


def comparisons(attention: str) -> list[tuple[str, str | None, str]]:
    """(numerator, denominator, what the ratio answers); denominator None = the network-defaults row."""
    sdpa_low, sam_low = ("low_precision", "low_precision_alt") if attention == "sdpa" else \
        ("low_precision_alt", "low_precision")
    return [
        ("batched", "two_passes", "(a) batched streams vs two passes"),
        ("sdpa", "batched", "(b) SDPA vs SAM attention, fp32"),
        (sdpa_low, sam_low, "(b) SDPA vs SAM attention, low-precision autocast"),
        ("low_precision", fp32_key(attention), "(c) low-precision autocast vs fp32"),
        ("compiled", None, "(d) torch.compile vs eager"),
        ("checkpointing", None, "(e) activation checkpointing vs none"),
        ("early_fusion", None, "reference: early fusion vs ours (defaults)"),
        ("nnunet", None, "reference: stock nnU-Net 2d vs ours (defaults)"),
    ]


def plain_conv_unet_architecture(patch_size: int, input_channels: int) -> dict:
    """nnU-Net's 2d architecture kwargs for a square patch, as ExperimentPlanner.get_plans_for_configuration
    produces them (nnunetv2 2.8): topology from its own get_pool_and_conv_props, 32 base features
    doubling to 512, 2 convs per stage, InstanceNorm + LeakyReLU, conv bias."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    spacing = (1.0, 1.0)
    _, pool_kernels, conv_kernels, patch, _ = get_pool_and_conv_props(spacing, (patch_size, patch_size), 4, 999999)
    n_stages = len(pool_kernels)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n_stages, "features_per_stage": [min(512, 32 * 2 ** i) for i in range(n_stages)],
            "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": conv_kernels, "strides": pool_kernels,
            "n_conv_per_stage": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
            "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        "patch_size": [int(p) for p in patch],
    }


def build_model(variant: Variant, settings: SpeedSettings) -> torch.nn.Module:
    from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork

    s = settings
    if variant.model == "dual":
        return SAMCrossModalNetwork(s.input_channels, s.num_classes, s.backbone, s.input_size, s.adapter_depth,
                                    **variant.kwargs)
    if variant.model == "early_fusion":
        return SAMSingleStreamNetwork(s.input_channels, s.num_classes, s.backbone, s.input_size, **variant.kwargs)
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plain_conv_unet_architecture(s.input_size, s.input_channels)
    return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                  s.input_channels, s.num_classes, allow_init=True, deep_supervision=True)


def _loss_and_optimizer(model: torch.nn.Module, variant: Variant):
    """nnU-Net's Dice+CE (paper eq. 3); deep-supervision wrapper and SGD for stock nnU-Net."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    if variant.model == "nnunet":
        n_outputs = len(model.decoder.stages)
        weights = torch.tensor([1 / 2 ** i for i in range(n_outputs)])
        weights[-1] = 0
        loss = DeepSupervisionWrapper(loss, (weights / weights.sum()).tolist())
        optimizer = torch.optim.SGD(model.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)
    else:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return loss, optimizer


class _PeakMemory:
    """Peak memory of one phase: CUDA max allocated, or the process's peak RSS (MB)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = PROC_STATUS.exists() and Path("/proc/self/clear_refs").exists()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError:
                self.resettable = False

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        if self.resettable:
            for line in PROC_STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def _timed(step, n_warmup: int, n_timed: int, device: torch.device) -> list[float]:
    times = []
    for i in range(n_warmup + n_timed):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= n_warmup:
            times.append(time.perf_counter() - start)
    return times


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def measure_variant(variant: Variant, settings: SpeedSettings) -> dict:
    """Runs one variant in this process -> {'train_images_per_s', 'infer_images_per_s', peaks, ...}."""
    device = resolve_device(settings.device)
    if settings.threads and device.type == "cpu":
        torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    memory = _PeakMemory(device)
    build_start = time.perf_counter()
    model = build_model(variant, settings).to(device)
    build_s = time.perf_counter() - build_start
    loss_fn, optimizer = _loss_and_optimizer(model, variant)
    b, s = settings.batch_size, settings.input_size
    x = torch.randn(b, settings.input_channels, s, s, device=device)
    target = torch.zeros(b, 1, s, s, device=device)
    target[:, :, s // 4: s // 2, s // 3: 2 * s // 3] = 1
    if variant.model == "nnunet":
        target = [torch.nn.functional.interpolate(target, scale_factor=1 / 2 ** i, mode="nearest")
                  for i in range(len(model.decoder.stages))]
    # stock nnU-Net runs fp16 autocast on CUDA only (dummy context on CPU); the SAM networks autocast inside
    nnunet_autocast = variant.model == "nnunet" and device.type == "cuda"

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=nnunet_autocast):
            loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()

    def infer_step():
        with torch.no_grad(), torch.autocast(device.type, enabled=nnunet_autocast):
            model(x)

    plan = model.execution_plan(device) if hasattr(model, "execution_plan") else None
    model.train()
    memory.reset()
    train_times = _timed(train_step, settings.warmup_steps, settings.train_steps, device)
    train_peak = memory.peak_mb()
    model.eval()
    del optimizer
    memory.reset()
    infer_times = _timed(infer_step, settings.warmup_steps, settings.infer_steps, device)
    infer_peak = memory.peak_mb()
    return {
        "key": variant.key, "label": variant.label, "model": variant.model, "kwargs": variant.kwargs,
        "resolved": plan, "build_s": build_s,
        "train_step_s": train_times, "infer_step_s": infer_times,
        "train_images_per_s": b / _median(train_times), "infer_images_per_s": b / _median(infer_times),
        "train_peak_mb": train_peak, "infer_peak_mb": infer_peak,
        "memory_kind": "cuda max allocated" if device.type == "cuda" else
        ("peak RSS of the phase" if memory.resettable else "peak RSS of the process"),
    }


def run_variant_subprocess(variant: Variant, settings: SpeedSettings) -> dict:
    """measure_variant in a fresh interpreter (own peak memory, own compile caches)."""
    payload = json.dumps({"variant": asdict(variant), "settings": asdict(settings)})
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "nnunet_sam_adapter.speed.benchmark", payload], capture_output=True,
                              text=True, timeout=settings.variant_timeout_s)
    except subprocess.TimeoutExpired:
        return {"key": variant.key, "label": variant.label, "error": f"timed out after {settings.variant_timeout_s} s"}
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"key": variant.key, "label": variant.label, "error": " | ".join(tail)[-400:] or f"exit {done.returncode}"}
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def environment(device: torch.device, settings: SpeedSettings) -> dict:
    import importlib.metadata as metadata

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu_model = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": str(device), "cpu": cpu_model, "cpu_cores": os.cpu_count(),
        "torch_threads": settings.threads or torch.get_num_threads(),
        "cpu_capability": cpu_capability(), "python": platform.python_version(),
        "torch": torch.__version__, "nnunetv2": version("nnunetv2"),
        "segment_anything": version("segment-anything"), "platform": platform.platform(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _ratios(results: dict[str, dict], default_key: str, attention: str) -> list[dict]:
    rows = []
    for numerator, denominator, question in comparisons(attention):
        denominator = denominator or default_key  # (d), (e) and the references: against the defaults row
        a, b = results.get(numerator), results.get(denominator)
        if not a or not b or "error" in a or "error" in b:
            rows.append({"comparison": question, "numerator": numerator, "denominator": denominator,
                         "error": (a or {}).get("error") or (b or {}).get("error") or "not measured"})
            continue
        rows.append({
            "comparison": question, "numerator": numerator, "denominator": denominator,
            "train_speedup": a["train_images_per_s"] / b["train_images_per_s"],
            "infer_speedup": a["infer_images_per_s"] / b["infer_images_per_s"],
            "train_memory_ratio": a["train_peak_mb"] / b["train_peak_mb"],
            "infer_memory_ratio": a["infer_peak_mb"] / b["infer_peak_mb"],
        })
    return rows


def run_benchmark(settings: SpeedSettings, output_dir: str | os.PathLike, docs_path: str | os.PathLike | None = None,
                  progress=print) -> dict:
    """Runs every variant, writes OUTPUT/speed.json and OUTPUT/speed.md (and `docs_path`) -> the results."""
    device = resolve_device(settings.device)
    variants = benchmark_variants(settings, device)
    env = environment(device, settings)
    start = time.perf_counter()
    results = {}
    for i, variant in enumerate(variants, 1):
        progress(f"[{i}/{len(variants)}] {variant.label} ...")
        results[variant.key] = run_variant_subprocess(variant, settings)
        r = results[variant.key]
        progress(f"      {r['error']}" if "error" in r else
                 f"      train {r['train_images_per_s']:.3f} img/s, infer {r['infer_images_per_s']:.3f} img/s, "
                 f"peak {r['train_peak_mb']:.0f}/{r['infer_peak_mb']:.0f} MB")
    attention = resolve_attention("auto", device)
    default_key = fp32_key(attention) if default_dtype_name(device) == "off" else "low_precision"
    report = {
        "environment": env, "settings": asdict(settings), "reference": variants[0].key,
        "network_defaults": {"device": device.type, "attention": resolve_attention("auto", device),
                             "autocast": default_dtype_name(device),
                             "compile": "on" if resolve_compile("auto", device) else "off",
                             "checkpoint_blocks": False, "batched_streams": True, "row": default_key},
        "variants": [results[v.key] for v in variants], "comparisons": _ratios(results, default_key, attention),
        "total_wall_s": time.perf_counter() - start,
    }
    report["environment"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown = format_markdown(report)
    _write_atomic(output_dir / "speed.json", json.dumps(report, indent=2) + "\n")
    _write_atomic(output_dir / "speed.md", markdown)
    if docs_path:
        _write_atomic(Path(docs_path), performance_page(report, markdown))
    return report


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if value < 1 else f"{value:.{max(digits - 1, 1)}f}"


def format_markdown(report: dict) -> str:
    """The result tables (variants, then ratios) with the machine and settings they came from."""
    env, s = report["environment"], report["settings"]
    ref = next(v for v in report["variants"] if v["key"] == report["reference"])
    cap = env["cpu_capability"]
    lines = [
        f"Machine: {env.get('gpu') or env['cpu']} ({env['device']}; {env['cpu_cores']} CPU cores, "
        f"{env['torch_threads']} torch threads; CPU capability {cap['torch_cpu_capability']}, native bf16: "
        f"{'yes (' + ', '.join(cap['native_bf16_flags']) + ')' if cap['native_bf16'] else 'no'}). "
        f"torch {env['torch']}, nnunetv2 {env['nnunetv2']}, segment-anything {env['segment_anything']}, "
        f"Python {env['python']}. {env['date']}.",
        "",
        f"Settings: backbone {s['backbone']}, input {s['input_size']}x{s['input_size']}, batch {s['batch_size']}, "
        f"{s['adapter_depth']} adapters, {s['input_channels']} channels, {s['num_classes']} outputs; "
        f"{s['warmup_steps']} warm-up + {s['train_steps']} timed training steps, {s['warmup_steps']} + "
        f"{s['infer_steps']} inference steps per variant (median); each variant in a fresh process. "
        f"Load average at start / end: {_load(env.get('load_average_at_start'))} / "
        f"{_load(env.get('load_average_at_end'))}. Total {report['total_wall_s'] / 60:.1f} min.",
        "",
        "| variant | train img/s | × ref | infer img/s | × ref | train peak MB | infer peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    defaults_row = report["network_defaults"]["row"]
    for v in report["variants"]:
        label = v["label"] + (" **(network defaults)**" if v["key"] == defaults_row else "")
        if "error" in v:
            lines.append(f"| {label} | not measured: {v['error']} | | | | | |")
            continue
        lines.append(
            f"| {label} | {_fmt(v['train_images_per_s'])} | {v['train_images_per_s'] / ref['train_images_per_s']:.2f} "
            f"| {_fmt(v['infer_images_per_s'])} | {v['infer_images_per_s'] / ref['infer_images_per_s']:.2f} "
            f"| {v['train_peak_mb']:.0f} | {v['infer_peak_mb']:.0f} |")
    memory_kind = next((v["memory_kind"] for v in report["variants"] if "memory_kind" in v), "")
    lines += ["", f"ref = first row. Memory: {memory_kind}.", "",
              "| comparison | train speed-up | inference speed-up | train memory | inference memory |",
              "|---|---:|---:|---:|---:|"]
    for c in report["comparisons"]:
        label = f"{c['comparison']} ({c['numerator']} / {c['denominator']})"
        if "error" in c:
            lines.append(f"| {label} | not measured | | | |")
        else:
            lines.append(f"| {label} | {c['train_speedup']:.2f}x | {c['infer_speedup']:.2f}x | "
                         f"{c['train_memory_ratio']:.2f}x | {c['infer_memory_ratio']:.2f}x |")
    d = report["network_defaults"]
    lines += ["", f"Network defaults on {d['device']} ('auto'): attention={d['attention']}, autocast={d['autocast']}, "
                  f"compile={d['compile']}, checkpoint_blocks={d['checkpoint_blocks']}, "
                  f"batched_streams={d['batched_streams']}.", ""]
    return "\n".join(lines)


def _load(value) -> str:
    return "-" if not value else ", ".join(f"{x:.1f}" for x in value)


PERFORMANCE_INTRO = """# Performance

Generated by `nnUNetv2_sam_speed --docs docs/performance.md` (library: `nnunet_sam_adapter/speed.py`);
do not edit by hand. What is measured, how, and which variant each network default picks are in the
docstrings of `nnunet_sam_adapter/speed.py` and `nnunet_sam_adapter/execution.py`.

"""

GPU_NOTE = """
## GPU

Not measured: no GPU was available for this run. On CUDA the network defaults are SDPA attention and
bf16 autocast (fp16 where bf16 is unsupported); torch.compile is left to nnU-Net's `nnUNet_compile`.
Run `nnUNetv2_sam_speed --docs docs/performance.md` on a GPU machine to fill these rows.
"""


CPU_NOTES = """
Notes on the CPU numbers:
- Peak memory is the resident set of the whole process during the phase, including ~0.9 GB of torch
  libraries; differences between rows are what the variant costs.
- torch.compile is not in the default CPU run (`--compile` adds it): Inductor needed 86 s for the
  training graph and 37 s for the inference graph of the *tiny* backbone on these 2 cores, more for
  vit_b and again for every new input shape, and nnU-Net itself disables torch.compile on CPU.
  The network default is therefore compile off on CPU.
- The machine is shared: the load average above shows how busy it was. Ratios between rows measured
  in the same run are more trustworthy than absolute images/s; compare against the issue's prototype
  figures (dual vit_b 1.8 s/img training, 1.4 s/img inference on an idle machine) with that in mind.
"""


def performance_page(report: dict, markdown: str) -> str:
    device = report["environment"]["device"]
    heading = f"## {'GPU' if device.startswith('cuda') else 'CPU'} ({device})\n\n"
    tail = "" if device.startswith("cuda") else CPU_NOTES + GPU_NOTE
    notes = f"\nNotes on this run:\n{report['notes']}\n" if report.get("notes") else ""
    return PERFORMANCE_INTRO + heading + markdown + notes + tail


def render_saved_report(json_path: str | os.PathLike, output_dir: str | os.PathLike,
                        docs_path: str | os.PathLike | None = None) -> dict:
    """Rewrites speed.md (and the performance page) from a saved speed.json, without measuring."""
    report = json.loads(Path(json_path).read_text())
    markdown = format_markdown(report)
    _write_atomic(Path(output_dir) / "speed.md", markdown)
    if docs_path:
        _write_atomic(Path(docs_path), performance_page(report, markdown))
    return report


def _worker(payload: str) -> None:
    data = json.loads(payload)
    settings = SpeedSettings(**data["settings"])
    result = measure_variant(Variant(**data["variant"]), settings)
    print(json.dumps(result))


if __name__ == "__main__":
    _worker(sys.argv[1])
