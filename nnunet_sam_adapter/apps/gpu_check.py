"""`nnUNetv2_sam_gpu_check` (`make gpu-check`): what the first CUDA machine must run, as one command.

    1. nnUNetv2_sam_speed at the paper's settings (vit_b, 256x256, batch 24, 6 adapters, random weights)
       -> the GPU section of docs/performance.md (its report: docs/performance_gpu.json)
    2. the shared real BraTS cases -> nnUNetv2_sam_convert_brats -> nnUNetv2_sam_plan_and_preprocess
       (LiteMedSAM at 256, stock 2d plans too) -> nnUNetv2_train of ours, early fusion and stock nnU-Net
       2d with the same fixed budget (trainers/gpu_check_trainers.py), exactly as a user runs them:
       nnU-Net's defaults, torch.compile on (nnUNet_compile and the worker counts are left unset)
       -> docs/gpu_check.md: device, versions, seconds per epoch, nnU-Net's validation Dice (fold 0)
    With --sam-checkpoint, ours is also trained with vit_b (second dataset ID, same cases).

Every step is a subprocess calling the public commands; nnU-Net's folders live in the work folder
(never the user's). Without CUDA the real run refuses to start; `--dry-run` prints the plan and checks
its inputs, `--cpu-smoke` runs the whole plan on the CPU with a tiny budget (tiny / 64 px LiteMedSAM,
the `_debug` trainers, documents written inside the work folder), to test the command itself.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_sam_adapter.methods import METHODS, QUICK_METHODS
from nnunet_sam_adapter.paths import NNUNET_FOLDER_VARS, results_folder_name, trainer_dir

REAL_DATA_ENV = "NNSAM_REAL_DATA"
REAL_DATA_DEFAULT = "../shared/data/real"  # relative to the current folder (the repository's root)
# Makefile values for 2-core CPU machines; a GPU run uses nnU-Net's own defaults (compile on).
CPU_ONLY_ENV = ("nnUNet_compile", "nnUNet_n_proc_DA", "nnUNet_def_n_proc")
TRAINED = QUICK_METHODS


class GpuCheckError(RuntimeError):
    """A problem the user can fix; printed as one line."""


@dataclass(frozen=True)
class GpuCheckSettings:
    data_dir: Path
    work_dir: Path = Path("gpu_check_output")
    docs_dir: Path = Path("docs")
    dataset_id: int = 501
    sam_checkpoint: str | None = None
    cpu_smoke: bool = False


@dataclass
class Step:
    name: str
    argv: list[str]
    method: str | None = None  # a methods.METHODS name for training steps
    dataset_id: int | None = None
    trainer: str | None = None
    plans: str | None = None
    env: dict = field(default_factory=dict)


def default_real_data() -> str:
    """$NNSAM_REAL_DATA, else ../shared/data/real (relative to the current folder)."""
    return os.environ.get(REAL_DATA_ENV) or REAL_DATA_DEFAULT


def find_real_data(explicit: str | None) -> Path:
    """--data, else `default_real_data()`; the folder must exist."""
    candidate = explicit or default_real_data()
    if Path(candidate).is_dir():
        return Path(candidate).resolve()
    raise GpuCheckError(f"real BraTS data not found at {candidate}: pass --data PATH or set "
                        f"{REAL_DATA_ENV} (the folder of shared/data/real, see its README)")


def brats_sources(data_dir: Path) -> list[Path]:
    """Folders of labelled BraTS case folders (<case>/<case>_seg.nii.gz) under `data_dir`, or
    `data_dir` itself; raw scanner-space and 2D sets beside them are not BraTS cases and are left out."""
    seg_files = sorted(data_dir.glob("*_seg.nii.gz")) or sorted(data_dir.glob("*/*_seg.nii.gz")) \
        or sorted(data_dir.glob("*/*/*_seg.nii.gz"))
    sources = sorted({f.parent.parent for f in seg_files})
    if not sources:
        raise GpuCheckError(f"{data_dir}: no BraTS case folders (<case>/<case>_seg.nii.gz) found")
    return sources


def _budget_suffix(settings: GpuCheckSettings) -> str:
    return "debug" if settings.cpu_smoke else "gpucheck"


def speed_step(settings: GpuCheckSettings) -> Step:
    docs = settings.work_dir / "docs" if settings.cpu_smoke else settings.docs_dir
    shape = (["--backbone", "tiny", "--input-size", "32", "--batch-size", "2", "--adapter-depth", "2",
              "--train-steps", "1", "--infer-steps", "1", "--only", "two_passes", "nnunet", "--device", "cpu"]
             if settings.cpu_smoke else
             ["--backbone", "vit_b", "--input-size", "256", "--batch-size", "24", "--adapter-depth", "6",
              "--device", "cuda"])
    return Step("speed", ["nnUNetv2_sam_speed", *shape, "-o", str(settings.work_dir / "speed"),
                          "--docs", str(docs / "performance.md")])


def dataset_steps(settings: GpuCheckSettings, dataset_id: int, backbone: str, checkpoint: str | None) -> list[Step]:
    """Convert the BraTS cases into `dataset_id`, then plan and preprocess it (SAM plans + stock 2d)."""
    steps = [Step(f"convert {dataset_id} ({source.name})",
                  ["nnUNetv2_sam_convert_brats", "-i", str(source), "-d", str(dataset_id), "-n", "BraTSGpuCheck"])
             for source in brats_sources(settings.data_dir)]
    input_size = "64" if settings.cpu_smoke else "256"
    plan = ["nnUNetv2_sam_plan_and_preprocess", "-d", str(dataset_id), "--backbone", backbone,
            "--input-size", input_size, "--stock", "2d"]
    if checkpoint:
        plan += ["--checkpoint", checkpoint]
    # the planner's own default is 2 processes (CPU machines); a GPU machine has cores to spare
    plan += ["--batch-size", "2", "-np", "2"] if settings.cpu_smoke else ["-np", str(min(8, os.cpu_count() or 2))]
    return steps + [Step(f"plan {dataset_id} ({backbone})", plan)]


def train_step(settings: GpuCheckSettings, method: str, dataset_id: int, label: str = "") -> Step:
    spec = METHODS[method]
    trainer = f"{spec.trainer_name}_{_budget_suffix(settings)}"
    argv = ["nnUNetv2_train", str(dataset_id), spec.configuration, "0", "-tr", trainer, "-p", spec.plans]
    if settings.cpu_smoke:
        argv += ["-device", "cpu"]
    return Step(f"train {method}{label}", argv, method=method, dataset_id=dataset_id, trainer=trainer,
                plans=spec.plans)


def gpu_check_plan(settings: GpuCheckSettings) -> list[Step]:
    """Every command of the check, in order."""
    backbone = "litemedsam"
    steps = [speed_step(settings), *dataset_steps(settings, settings.dataset_id, backbone, None)]
    steps += [train_step(settings, method, settings.dataset_id) for method in TRAINED]
    if settings.sam_checkpoint:
        vit_id = settings.dataset_id + 1
        steps += dataset_steps(settings, vit_id, "vit_b", settings.sam_checkpoint)
        steps.append(train_step(settings, "ours", vit_id, " (vit_b)"))
    return steps


def check_trainers(steps: list[Step]) -> None:
    """Every trainer the plan names exists (nnUNetv2_train would fail only after the data steps)."""
    from nnunet_sam_adapter.trainers import gpu_check_trainers, sam_trainers_short

    for step in steps:
        if step.trainer and not any(hasattr(m, step.trainer) for m in (gpu_check_trainers, sam_trainers_short)):
            raise GpuCheckError(f"step '{step.name}': trainer {step.trainer} not found in our trainers folder")


def nnunet_env(settings: GpuCheckSettings) -> dict[str, str]:
    """The environment of every step: nnU-Net's folders in the work folder, our trainers findable; on
    CUDA nnU-Net's defaults (the Makefile's CPU settings removed), on CPU the Makefile's values."""
    env = dict(os.environ)
    for name in NNUNET_FOLDER_VARS:
        env[name] = str((settings.work_dir / name).resolve())
    env["nnUNet_extTrainer"] = trainer_dir()
    if settings.cpu_smoke:
        env.update(nnUNet_compile="false", nnUNet_n_proc_DA="2", nnUNet_def_n_proc="2")
    else:
        for name in CPU_ONLY_ENV:
            env.pop(name, None)
    return env


def run_step(step: Step, env: dict, log_dir: Path) -> float:
    """Runs one step, its output in LOG_DIR/<step>.log -> wall seconds; a failure names the step and log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / (re.sub(r"[^A-Za-z0-9]+", "_", step.name).strip("_") + ".log")
    executable = shutil.which(step.argv[0], path=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    if executable is None:
        raise GpuCheckError(f"step '{step.name}': command {step.argv[0]} not found (is the package installed?)")
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([executable, *step.argv[1:]], env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-2:])[-300:]
        raise GpuCheckError(f"step '{step.name}' failed (exit {done.returncode}); log {log}: {tail}")
    return time.perf_counter() - start


def training_result(step: Step, settings: GpuCheckSettings) -> dict:
    """Seconds per epoch (nnU-Net's 'Epoch time' log lines) and the validation Dice nnU-Net computed at
    the end of training (fold_0/validation/summary.json, mean over foreground labels)."""
    results = settings.work_dir / "nnUNet_results"
    model = results_folder_name(step.trainer, step.plans, "2d")
    folders = sorted(results.glob(f"Dataset{step.dataset_id:03d}_*/{model}/fold_0"))
    if not folders:
        raise GpuCheckError(f"step '{step.name}': no fold_0 results under {results}")
    fold = folders[0]
    epoch_s = [float(t) for log in sorted(fold.glob("training_log_*.txt"))
               for t in re.findall(r"Epoch time: ([\d.]+) s", log.read_text())]
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    return {"epochs": len(epoch_s), "first_epoch_s": epoch_s[0] if epoch_s else None,
            "median_epoch_s": statistics.median(epoch_s[1:] or epoch_s) if epoch_s else None,
            "dice": summary["foreground_mean"]["Dice"],
            "validation_cases": len(summary.get("metric_per_case", []))}


def describe_machine() -> dict:
    import importlib.metadata

    import torch

    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "bf16": torch.cuda.is_bf16_supported() if cuda else None,
            "nnunetv2": importlib.metadata.version("nnunetv2"), "python": platform.python_version(),
            "cpu_cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def gpu_check_page(machine: dict, settings: GpuCheckSettings, rows: list[dict]) -> str:
    """docs/gpu_check.md from what this run measured."""
    from nnunet_sam_adapter.trainers.gpu_check_trainers import GpuCheckBudget
    from nnunet_sam_adapter.trainers.sam_trainers_short import DebugBudget

    epochs, iterations, val_iterations = (DebugBudget if settings.cpu_smoke else GpuCheckBudget).budget
    compile_state = "off (CPU smoke run)" if settings.cpu_smoke else "nnU-Net's default (on for CUDA)"
    lines = [
        "# GPU check", "",
        f"Generated by `make gpu-check` (`nnunet_sam_adapter/apps/gpu_check.py`) on {machine['date']}"
        + (" as a CPU smoke run (tiny budget: tests the command, not the method)." if settings.cpu_smoke else "."),
        "",
        f"Device: {machine['device']}; torch {machine['torch']}, CUDA {machine['cuda']}, bf16 supported: "
        f"{machine['bf16']}; nnunetv2 {machine['nnunetv2']}, Python {machine['python']}, "
        f"{machine['cpu_cores']} CPU cores. torch.compile: {compile_state}.", "",
        f"Data: the shared real BraTS cases ({', '.join(s.name for s in brats_sources(settings.data_dir))}), "
        f"nnU-Net's 5-fold split, fold 0. Budget: {epochs} epochs x {iterations} iterations "
        f"({val_iterations} validation iterations per epoch), `nnUNetv2_train` with nnU-Net's defaults. "
        "The speed table at the paper's settings is the GPU section of docs/performance.md.", "",
        "| method | trainer | plans | epochs | first epoch s (compile) | median epoch s | wall min | "
        "validation Dice (fold 0) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['label']} | {row['trainer']} | {row['plans']} | {row['epochs']} | "
                     f"{row['first_epoch_s'] or 0:.1f} | {row['median_epoch_s'] or 0:.1f} | {row['wall_s'] / 60:.1f} | "
                     f"{row['dice']:.3f} ({row['validation_cases']} cases) |")
    lines += ["", "Validation Dice: nnU-Net's own validation at the end of training (mean over foreground "
              "labels, `fold_0/validation/summary.json`); a budget check, not the paper's protocol.", ""]
    return "\n".join(lines)


def dry_run_lines(settings: GpuCheckSettings) -> list[str]:
    """The plan as `--dry-run` prints it, after checking that every trainer it names exists."""
    steps = gpu_check_plan(settings)
    lines = [f"[{i}] {step.name}: {' '.join(step.argv)}" for i, step in enumerate(steps, 1)]
    check_trainers(steps)
    kept = "set to the Makefile's CPU values" if settings.cpu_smoke else "unset: nnU-Net's defaults, compile on"
    lines.append(f"environment: nnUNet_raw/_preprocessed/_results in {settings.work_dir}, nnUNet_extTrainer = "
                 f"{nnunet_env(settings)['nnUNet_extTrainer']}; {', '.join(CPU_ONLY_ENV)} {kept}")
    return lines


def run_gpu_check(settings: GpuCheckSettings, progress=print) -> Path:
    """Runs every step (speed, data, training) and writes docs/gpu_check.md -> its path."""
    from nnunet_sam_adapter.atomic_io import atomic_write_text

    import torch

    if not settings.cpu_smoke and not torch.cuda.is_available():
        raise GpuCheckError("make gpu-check needs a CUDA device (torch.cuda.is_available() is False here); "
                            "--dry-run prints the plan, --cpu-smoke runs it on the CPU with a tiny budget")
    steps, env = gpu_check_plan(settings), nnunet_env(settings)
    rows = []
    for i, step in enumerate(steps, 1):
        progress(f"[{i}/{len(steps)}] {step.name}: {' '.join(step.argv)}")
        wall_s = run_step(step, env, settings.work_dir / "logs")
        if step.method:
            label = METHODS[step.method].label + step.name.split(step.method, 1)[1]
            rows.append({"label": label, "trainer": step.trainer, "plans": step.plans, "wall_s": wall_s,
                         **training_result(step, settings)})
    docs_dir = settings.work_dir / "docs" if settings.cpu_smoke else settings.docs_dir
    docs_dir.mkdir(parents=True, exist_ok=True)
    page = docs_dir / "gpu_check.md"
    atomic_write_text(page, gpu_check_page(describe_machine(), settings, rows))
    return page
