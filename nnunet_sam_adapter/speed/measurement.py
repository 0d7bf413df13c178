"""Measuring one speed variant: step times, throughput, peak memory, each variant in its own process.

Each variant runs in a fresh Python subprocess (`python -m nnunet_sam_adapter.speed.measurement
VARIANT_JSON`), so its peak memory is its own: CUDA max allocated, or on CPU the peak RSS of the
process during the phase (Linux: VmHWM reset through /proc/self/clear_refs before each phase;
elsewhere the process peak). Throughputs are batch / median step time after warm-up steps.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from nnunet_sam_adapter.model.execution import cpu_capability
from nnunet_sam_adapter.speed.variants import NNUNET_2D, SpeedSettings, SpeedVariant, resolve_device
from nnunet_sam_adapter.speed.workload import build_variant_network, loss_and_optimizer, synthetic_batch

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """Peak memory of one phase: CUDA max allocated, or the process's peak RSS (MB)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = PROC_STATUS.exists() and PROC_CLEAR_REFS.exists()

    @property
    def kind(self) -> str:
        if self.device.type == "cuda":
            return "cuda max allocated"
        return "peak RSS of the phase" if self.resettable else "peak RSS of the process"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            try:
                PROC_CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
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


def time_steps(step, n_warmup: int, n_timed: int, device: torch.device) -> list[float]:
    """Seconds of each of the `n_timed` calls of `step` after `n_warmup` untimed ones."""
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


def measure_variant(variant: SpeedVariant, settings: SpeedSettings) -> dict:
    """Runs one variant in this process -> {'train_images_per_s', 'infer_images_per_s', peaks, ...}."""
    device = resolve_device(settings.device)
    if settings.threads and device.type == "cpu":
        torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    memory = PeakMemory(device)
    build_start = time.perf_counter()
    model = build_variant_network(variant, settings).to(device)
    build_s = time.perf_counter() - build_start
    loss_fn, optimizer = loss_and_optimizer(model, variant)
    images, target = synthetic_batch(model, variant, settings, device)
    # stock nnU-Net runs fp16 autocast on CUDA only (dummy context on CPU); the SAM networks autocast inside
    nnunet_autocast = variant.method == NNUNET_2D.name and device.type == "cuda"

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=nnunet_autocast):
            loss = loss_fn(model(images), target)
        loss.backward()
        optimizer.step()

    def infer_step():
        with torch.no_grad(), torch.autocast(device.type, enabled=nnunet_autocast):
            model(images)

    resolved = model.execution_plan(device) if hasattr(model, "execution_plan") else None
    model.train()
    memory.reset()
    train_times = time_steps(train_step, settings.warmup_steps, settings.train_steps, device)
    train_peak = memory.peak_mb()
    model.eval()
    optimizer.state.clear()  # the optimiser's moments are not part of the inference memory
    memory.reset()
    infer_times = time_steps(infer_step, settings.warmup_steps, settings.infer_steps, device)
    b = images.shape[0] * (images.shape[2] if images.ndim == 5 else 1)  # images (slices) per step
    return {
        "key": variant.key, "label": variant.label, "method": variant.method,
        "network_kwargs": variant.network_kwargs, "resolved": resolved, "build_s": build_s,
        "train_step_s": train_times, "infer_step_s": infer_times,
        "train_images_per_s": b / statistics.median(train_times),
        "infer_images_per_s": b / statistics.median(infer_times),
        "train_peak_mb": train_peak, "infer_peak_mb": memory.peak_mb(), "memory_kind": memory.kind,
    }


def measure_variant_in_subprocess(variant: SpeedVariant, settings: SpeedSettings) -> dict:
    """`measure_variant` in a fresh interpreter (own peak memory, own compile caches); on failure
    {'key', 'label', 'error'} with the last lines of its output."""
    payload = json.dumps({"variant": asdict(variant), "settings": asdict(settings)})
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", __name__, payload], capture_output=True, text=True,
                              timeout=settings.variant_timeout_s)
    except subprocess.TimeoutExpired:
        return {"key": variant.key, "label": variant.label,
                "error": f"timed out after {settings.variant_timeout_s} s"}
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        error = " | ".join(tail)[-400:] or f"exit {done.returncode}"
        return {"key": variant.key, "label": variant.label, "error": error}
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def describe_environment(device: torch.device, settings: SpeedSettings) -> dict:
    """Machine, versions and load of the run (recorded with every report)."""
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": str(device), "cpu": _cpu_model(), "cpu_cores": os.cpu_count(),
        "torch_threads": settings.threads or torch.get_num_threads(),
        "cpu_capability": cpu_capability(), "python": platform.python_version(),
        "torch": torch.__version__, "nnunetv2": _package_version("nnunetv2"),
        "segment_anything": _package_version("segment-anything"), "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def measure_variant_from_json(payload: str) -> None:
    """Subprocess entry point: measures the variant in `payload` and prints its result as one JSON line."""
    data = json.loads(payload)
    print(json.dumps(measure_variant(SpeedVariant(**data["variant"]), SpeedSettings(**data["settings"]))))


if __name__ == "__main__":
    measure_variant_from_json(sys.argv[1])
