"""One (method, fold) run of the benchmark: train (or reuse / resume), validate, evaluate.

`run_method_fold(spec)` is what every executor runs, in-process or as a submitit job (it lives in the
installed package: jobs import it by module). It trains `spec.method` on `spec.fold` through nnU-Net's
trainer API following the reuse rules of `benchmark.reuse`, lets nnU-Net predict the fold's
validation cases (the same cases for every method: one splits_final.json per dataset), evaluates them
with `evaluation.evaluate_folders` (volume and slice protocols) and runs the extra per-method
evaluations the spec names. Its record, `OUT/fold_F/runs/METHOD.json`, is written last (atomically):
a run with a record is finished. While it runs, `METHOD.state.json` says running (job id, host) and,
after an error, failed (the error line); nnU-Net's console output goes to `OUT/fold_F/logs/METHOD.log`.

A requeued or preempted job runs this function again from the start: the training resumes from
nnU-Net's checkpoint_latest.pth (saved every `save_every` epochs), finished steps are reused.
"""

from __future__ import annotations

import contextlib
import os
import pydoc
import shutil
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from nnunet_sam_adapter.training.budget import Budget, trainer_budget
from nnunet_sam_adapter.benchmark.layout import BenchmarkError, OutputLayout, load_plans, nnunet_run_dir, trainer_class
from nnunet_sam_adapter.training.trainer_factory import build_trainer
from nnunet_sam_adapter.benchmark.reuse import RUN_RECORD, TRAINING_MARKER, RunOnDisk, checkpoint_is_complete, decide
from nnunet_sam_adapter.atomic_io import atomic_write_json
from nnunet_sam_adapter.methods import METHODS, SAM_3D_CONFIGURATION, Method
from nnunet_sam_adapter.paths import load_json, nnunet_dirs, validation_cases


@dataclass(frozen=True)
class RunSpec:
    """Everything one (method, fold) run needs; picklable (it travels to submitit jobs).

    `evaluations`: dotted paths of extra per-method evaluations, each `f(result: MethodResult, spec:
    RunSpec) -> dict`, stored under `result.extra[path]` (e.g. postprocessed or missing-modality scores).
    """

    dataset: str
    method: str
    fold: int
    output_root: str
    single_fold: bool = False
    budget: Budget = Budget()
    device: str = "cpu"
    retrain: bool = False
    mirroring: bool = True
    num_gpus: int = 1
    save_every: int | None = None   # epochs between checkpoint_latest.pth saves (nnU-Net: 50)
    num_processes: int = 1          # evaluation workers
    evaluations: tuple = ()
    seed: int = 0                   # 0: the trainer itself; k >= 1: its `_seed<k>` variant (own results folder)
    curve_images: tuple = ()        # training images after which a checkpoint is kept (learning curves)

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(Path(self.output_root), self.single_fold)

    @property
    def name(self) -> str:
        return f"{self.method}/fold_{self.fold}" + (f"/seed_{self.seed}" if self.seed else "")


@dataclass
class MethodResult:
    """What one method produced on one fold."""

    method: str
    label: str
    trainer: str
    plans: str
    configuration: str
    fold: int
    run_dir: str
    status: str                 # 'trained', 'resumed', 'reused' or 'validated' (training reused, validation re-run)
    budget: dict
    train_seconds: float | None
    validation_seconds: float | None
    validation_dir: str
    resumed_from_epoch: int | None = None
    seed: int = 0
    evaluation_dir: str = ""
    summary: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------ training / validation

def _found_budget(run_dir: Path, record: dict | None) -> dict | None:
    """Budget a finished run was trained with: our record, else nnU-Net's debug.json."""
    if record:
        return record.get("budget")
    debug = load_json(run_dir / "debug.json")
    try:
        return {"epochs": int(debug["num_epochs"]), "iterations": int(debug["num_iterations_per_epoch"]),
                "val_iterations": int(debug["num_val_iterations_per_epoch"]),
                "batch_size": int(debug["batch_size"]) if "batch_size" in debug else None}
    except (TypeError, KeyError, ValueError):
        return None


def plans_of_configuration(plans: dict | None, configuration: str) -> dict | None:
    """What a run of `configuration` was trained with: the plans' global fields and that configuration's entry.
    Another configuration added to or changed in the plans (e.g. re-planning adds 3d_sam) does not touch it."""
    if not isinstance(plans, dict) or not isinstance(plans.get("configurations"), dict):
        return None
    return {**{k: v for k, v in plans.items() if k != "configurations"},
            "configuration": plans["configurations"].get(configuration)}


def _run_on_disk(run_dir: Path, plans: dict, configuration: str) -> RunOnDisk:
    record = load_json(run_dir / RUN_RECORD)
    finished = (run_dir / "checkpoint_final.pth").is_file()
    latest = run_dir / "checkpoint_latest.pth"
    trained_with = plans_of_configuration(load_json(run_dir.parent / "plans.json"), configuration)  # nnU-Net's copy
    return RunOnDisk(finished=finished, record=record, found_budget=_found_budget(run_dir, record) if finished else None,
                     same_plans=trained_with is not None and trained_with == plans_of_configuration(plans, configuration),
                     started=load_json(run_dir / TRAINING_MARKER), has_latest=latest.is_file(),
                     latest_complete=checkpoint_is_complete(latest))


def validation_complete(run_dir: Path, cases: list[str], file_ending: str, record: dict | None,
                        mirroring: bool) -> bool:
    """True when RUN_DIR/validation holds nnU-Net's summary.json and every case, predicted with `mirroring`."""
    folder = run_dir / "validation"
    if not (folder / "summary.json").is_file():
        return False
    if not all((folder / f"{case}{file_ending}").is_file() for case in cases):
        return False
    return bool(record.get("validation_mirroring", True) if record else True) == mirroring


def make_trainer(method: Method, plans: dict, preprocessed: Path, fold: int, device, seed: int = 0):
    return build_trainer(trainer_class(method, seed), plans, method.configuration, fold, preprocessed, device)


PSEUDO_DICE = "pseudo_dice.json"  # nnU-Net's online pseudo Dice of every epoch (its logger's mean_fg_dice)
CURVE_POINTS = "learning_curve_points.json"  # {images: {images, epochs, train_seconds, checkpoint}} in the run folder


def curve_checkpoint(run_dir: Path, images: int) -> Path:
    """The checkpoint kept after `images` training images (nnU-Net's checkpoint format)."""
    return Path(run_dir) / f"checkpoint_images_{images}.pth"


def nnunet_epoch_seconds(trainer, last_epoch: int) -> float:
    """nnU-Net's epoch times (its logger's timestamps, the 'Epoch time' of its log) summed over epochs 0..last."""
    starts, ends = (trainer.logger.get_value(key, None) for key in ("epoch_start_timestamps", "epoch_end_timestamps"))
    return float(sum(end - start for start, end in zip(starts[:last_epoch + 1], ends[:last_epoch + 1])))


def _attach_curve_checkpoints(trainer, points: tuple, run_dir: Path) -> None:
    """Keep a checkpoint at the end of the first epoch after which each of `points` training images were seen,
    with nnU-Net's seconds of the epochs so far (its logger's epoch timestamps), so one training gives the
    whole learning curve. The learning rate follows the run's own schedule: a point inside the run is that
    run's state there, not a run trained for that many images."""
    per_epoch = int(trainer.num_iterations_per_epoch) * int(trainer.configuration_manager.batch_size)
    total = int(trainer.num_epochs) * per_epoch
    wanted = {-(-int(n) // per_epoch) - 1: int(n) for n in sorted(set(points), reverse=True) if int(n) < total}
    if not wanted:
        return
    wanted[int(trainer.num_epochs) - 1] = total  # the final point: its seconds on the same clock, no extra checkpoint
    on_epoch_end = trainer.on_epoch_end

    def on_epoch_end_with_curve():
        on_epoch_end()
        epoch = int(trainer.current_epoch) - 1  # nnU-Net counted the finished epoch
        if epoch not in wanted or getattr(trainer, "local_rank", 0) != 0:  # DDP: rank 0 saves, as nnU-Net does
            return
        images = wanted[epoch]
        target = curve_checkpoint(run_dir, images) if images < total else run_dir / "checkpoint_final.pth"
        if images < total:
            trainer.save_checkpoint(str(target))  # atomic (`_write_checkpoints_atomically`)
            if not target.is_file():  # nnU-Net's checkpointing is disabled
                return
        saved = load_json(run_dir / CURVE_POINTS) or {}
        saved[str(images)] = {"images": (epoch + 1) * per_epoch, "epochs": epoch + 1,
                              "train_seconds": nnunet_epoch_seconds(trainer, epoch), "checkpoint": target.name}
        atomic_write_json(run_dir / CURVE_POINTS, saved)

    trainer.on_epoch_end = on_epoch_end_with_curve


def _write_checkpoints_atomically(trainer) -> None:
    """nnU-Net's save_checkpoint writes its file in place; a job preempted or requeued during the write left a
    truncated checkpoint_latest.pth that the resumed job could not load (EOFError). Each checkpoint is now
    written beside its name and renamed over it when whole (the hook is wrapped on this instance only)."""
    save_checkpoint = trainer.save_checkpoint

    def save_checkpoint_atomically(filename: str) -> None:
        target = Path(filename)
        partial = target.with_name(f".{target.name}.partial")
        save_checkpoint(str(partial))
        # nnU-Net writes on DDP rank 0 only; another rank must not rename rank 0's file while it is written
        if getattr(trainer, "local_rank", 0) == 0 and partial.is_file():  # absent with checkpointing disabled
            os.replace(partial, target)

    trainer.save_checkpoint = save_checkpoint_atomically


def _attach_epoch_bar(trainer, bar: tqdm) -> None:
    """Advance `bar` at the end of every epoch (the hook is wrapped on this instance only)."""
    on_epoch_end = trainer.on_epoch_end

    def on_epoch_end_with_bar():
        on_epoch_end()
        with contextlib.suppress(Exception):
            bar.set_postfix(loss=f"{trainer.logger.get_value('train_losses', step=-1):.3f}", refresh=False)
        bar.update(1)

    trainer.on_epoch_end = on_epoch_end_with_bar


def validate_with_trainer(trainer, mirroring: bool) -> float:
    """nnU-Net's own validation of the trainer's fold (perform_actual_validation); its seconds."""
    if not mirroring:
        trainer.inference_allowed_mirroring_axes = None  # after checkpoint_final: the checkpoint keeps its axes
    start = time.perf_counter()
    trainer.perform_actual_validation(False)
    return time.perf_counter() - start


def _train(trainer, spec: RunSpec, budget: Budget, run_dir: Path, resume: bool) -> tuple[dict, float, int | None]:
    """Train one process's trainer (from checkpoint_latest.pth when resuming); (budget, seconds, resumed epoch)."""
    budget.apply(trainer)
    if spec.save_every:
        trainer.save_every = int(spec.save_every)
    resumed_from = None
    _write_checkpoints_atomically(trainer)
    if resume:
        trainer.load_checkpoint(str(run_dir / "checkpoint_latest.pth"))  # nnUNetv2_train --c
        resumed_from = int(trainer.current_epoch)
    used = trainer_budget(trainer)
    _attach_curve_checkpoints(trainer, spec.curve_images, run_dir)
    with tqdm(total=trainer.num_epochs, initial=trainer.current_epoch, desc=f"train {spec.name}", unit="epoch",
              leave=False) as bar:
        _attach_epoch_bar(trainer, bar)
        start = time.perf_counter()
        trainer.run_training()
    seconds = time.perf_counter() - start
    if getattr(trainer, "local_rank", 0) == 0:
        atomic_write_json(run_dir / PSEUDO_DICE, {"mean_fg_dice": [float(v) for v in trainer.logger.get_value(
            "mean_fg_dice", None)], "images_per_epoch": int(used["iterations"]) * int(used["batch_size"])})
    return used, seconds, resumed_from


def _ddp_worker(rank: int, spec: RunSpec, plans: dict, preprocessed: Path, run_dir: Path, budget: Budget,
                resume: bool, world_size: int) -> None:
    """One rank of nnU-Net's DDP training (`-num_gpus N`), set up with nnU-Net's own helpers."""
    import torch
    from nnunetv2.run.run_training import cleanup_ddp, setup_ddp

    setup_ddp(rank, world_size)
    torch.cuda.set_device(torch.device("cuda", rank))
    trainer = make_trainer(METHODS[spec.method], plans, preprocessed, spec.fold, torch.device("cuda"), spec.seed)
    used, seconds, resumed = _train(trainer, spec, budget, run_dir, resume)
    validation_seconds = validate_with_trainer(trainer, spec.mirroring)
    if rank == 0:
        atomic_write_json(run_dir / "sam_benchmark_ddp.json", {"budget": used, "train_seconds": seconds,
                                                               "resumed_from_epoch": resumed,
                                                               "validation_seconds": validation_seconds})
    cleanup_ddp()


def _train_and_validate_ddp(spec, plans, preprocessed, run_dir, budget, resume) -> tuple:
    import torch.multiprocessing as mp

    if spec.device != "cuda":
        raise BenchmarkError(f"{spec.num_gpus} GPUs per run need -device cuda (nnU-Net's DDP is CUDA only)")
    (run_dir / "sam_benchmark_ddp.json").unlink(missing_ok=True)
    mp.spawn(_ddp_worker, args=(spec, plans, preprocessed, run_dir, budget, resume, spec.num_gpus),
             nprocs=spec.num_gpus, join=True)
    done = load_json(run_dir / "sam_benchmark_ddp.json")
    return done["budget"], done["train_seconds"], done["resumed_from_epoch"], done["validation_seconds"]


def train_and_validate(spec: RunSpec, log_file: Path) -> MethodResult:
    """Train spec.method on spec.fold (or reuse / resume, see `benchmark.reuse`) and make sure nnU-Net's
    validation predictions of the fold exist. nnU-Net's console output goes to `log_file`."""
    import torch

    method = METHODS[spec.method]
    name, preprocessed, results = nnunet_dirs(spec.dataset)
    plans = load_plans(preprocessed, method)
    run_dir = nnunet_run_dir(results, method, spec.fold, spec.seed)
    on_disk = _run_on_disk(run_dir, plans, method.configuration)
    configuration = plans["configurations"][method.configuration]
    images_per_step = int(configuration["batch_size"])
    if method.configuration == SAM_3D_CONFIGURATION:
        # ours_3d (issue #18): a stack of D slices is D images of the 2D SAM methods (the encoder runs each),
        # so the equal-images rule counts slices (stock 3d_fullres keeps counting patches)
        images_per_step *= int(configuration["patch_size"][0])
    budget = spec.budget.for_batch_size(images_per_step)
    decision = decide(on_disk, budget, spec.retrain)
    if decision.action == "refuse":
        raise BenchmarkError(f"{run_dir} {decision.reason}")
    drop_stale_record(spec, decision.action, on_disk.found_budget)
    record, device = on_disk.record, torch.device(spec.device)
    file_ending = load_json(preprocessed / "dataset.json")["file_ending"]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    train_seconds = record.get("train_seconds") if (decision.action == "reuse" and record) else None
    resumed_from, validation_seconds = None, None
    # line-buffered: the log shows each of nnU-Net's lines as it is printed (a run takes minutes to hours)
    with open(log_file, "a", buffering=1) as log, contextlib.redirect_stdout(log):
        if device.type == "cpu":
            torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        if decision.action == "reuse":
            budget_used = on_disk.found_budget
            cases = validation_cases(preprocessed, spec.fold)
            if validation_complete(run_dir, cases, file_ending, record, spec.mirroring):
                status, validation_seconds = "reused", (record or {}).get("validation_seconds")
            else:
                status = "validated"
                trainer = make_trainer(method, plans, preprocessed, spec.fold, device, spec.seed)
                trainer.load_checkpoint(str(run_dir / "checkpoint_final.pth"))
                validation_seconds = validate_with_trainer(trainer, spec.mirroring)
        else:
            resume = decision.action == "resume"
            status = "resumed" if resume else "trained"
            if not resume:
                for stale in (RUN_RECORD, "checkpoint_final.pth", "checkpoint_latest.pth", CURVE_POINTS, PSEUDO_DICE,
                              *(p.name for p in run_dir.glob("checkpoint_images_*.pth")),
                              *(p.name for p in run_dir.glob(".checkpoint_*.pth.partial"))):
                    (run_dir / stale).unlink(missing_ok=True)
                for stale_folder in ("validation", "learning_curve"):
                    shutil.rmtree(run_dir / stale_folder, ignore_errors=True)
                atomic_write_json(run_dir / TRAINING_MARKER, {"budget": budget.to_dict(), "method": method.name})
            if spec.num_gpus > 1:
                budget_used, train_seconds, resumed_from, validation_seconds = _train_and_validate_ddp(
                    spec, plans, preprocessed, run_dir, budget, resume)
            else:
                trainer = make_trainer(method, plans, preprocessed, spec.fold, device, spec.seed)
                budget_used, train_seconds, resumed_from = _train(trainer, spec, budget, run_dir, resume)
                validation_seconds = validate_with_trainer(trainer, spec.mirroring)
    if status != "reused":
        _write_run_record(run_dir, spec, method, name, status, budget_used, train_seconds, validation_seconds,
                          resumed_from, record)
    return MethodResult(method.name, method.label, method.trainer_name, method.plans, method.configuration,
                        spec.fold, str(run_dir), status, budget_used, train_seconds, validation_seconds,
                        str(run_dir / "validation"), resumed_from, spec.seed)


def drop_stale_record(spec: RunSpec, action: str, found_budget: dict | None) -> None:
    """A record in OUT means finished. A run that trains or resumes loses it at once; a reused run keeps the
    record of the same training (same budget and seed) until its re-evaluation replaces it atomically, so a
    re-run interrupted while re-evaluating never loses a finished run's result."""
    path = spec.layout.run_record(spec.method, spec.fold)
    old = load_json(path)
    same_training = isinstance(old, dict) and old.get("budget") == found_budget and old.get("seed", 0) == spec.seed
    if action != "reuse" or not same_training:
        path.unlink(missing_ok=True)


def _write_run_record(run_dir, spec, method, dataset_name, status, budget_used, train_seconds,
                      validation_seconds, resumed_from, record) -> None:
    """nnU-Net run folder's record (reuse rules read it); the training marker goes once it is written."""
    trained_here = status in ("trained", "resumed")
    atomic_write_json(run_dir / RUN_RECORD, {
        "method": method.name, "trainer": method.trainer_name, "plans": method.plans,
        "configuration": method.configuration, "fold": spec.fold, "dataset": dataset_name, "budget": budget_used,
        "device": spec.device, "num_gpus": spec.num_gpus, "train_seconds": train_seconds,
        "validation_seconds": validation_seconds, "validation_mirroring": spec.mirroring,
        "resumed_from_epoch": resumed_from, "seed": spec.seed,
        "trained_by": "nnunet_sam_adapter.benchmark.runner" if trained_here
        else (record or {}).get("trained_by", "nnUNetv2_train"),
    })
    (run_dir / TRAINING_MARKER).unlink(missing_ok=True)


# ------------------------------------------------------------------ evaluation

def evaluate_run(result: MethodResult, spec: RunSpec) -> None:
    """Evaluate the run's validation predictions into OUT/fold_F/evaluation/METHOD (sets result.summary)."""
    from nnunet_sam_adapter.evaluation.folders import evaluate_folders

    _, preprocessed, _ = nnunet_dirs(spec.dataset)
    dataset_json = load_json(preprocessed / "dataset.json")
    cases = validation_cases(preprocessed, spec.fold)
    prediction_dir = Path(result.validation_dir)
    missing = [c for c in cases if not (prediction_dir / f"{c}{dataset_json['file_ending']}").is_file()]
    if missing:
        raise BenchmarkError(f"{spec.name}: no validation prediction for {', '.join(missing)} in {prediction_dir}")
    evaluation_dir = spec.layout.evaluation_dir(spec.method, spec.fold)
    summary = evaluate_folders(preprocessed / "gt_segmentations", prediction_dir, evaluation_dir,
                               dataset_json=dataset_json, num_processes=spec.num_processes, allow_missing=True,
                               show_progress=False)
    if sorted(summary["cases"]) != cases:
        raise BenchmarkError(f"{spec.name}: evaluated {summary['cases']}, expected the fold's validation cases {cases}")
    result.evaluation_dir = str(evaluation_dir)
    result.summary = {"volume": summary["volume"], "slice": summary["slice"], "classes": summary["classes"],
                      "cases": cases}


def run_extra_evaluations(result: MethodResult, spec: RunSpec) -> None:
    """spec.evaluations (dotted paths) -> result.extra; one that fails is recorded with its error."""
    for path in spec.evaluations:
        function = pydoc.locate(path)
        try:
            if function is None:
                raise BenchmarkError(f"evaluation {path} cannot be imported")
            result.extra[path] = function(result, spec)
        except Exception as error:  # an extra table entry must not discard the run
            result.extra[path] = {"error": f"{type(error).__name__}: {error}"}


# ------------------------------------------------------------------ the job

def _job_id() -> str | None:
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID"):
        if os.environ.get(name):
            if name == "SLURM_ARRAY_JOB_ID":
                return f"{os.environ[name]}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
            return os.environ[name]
    return None


def write_state(spec: RunSpec, state: str, **extra) -> None:
    atomic_write_json(spec.layout.run_state(spec.method, spec.fold), {
        "state": state, "method": spec.method, "fold": spec.fold, "job_id": _job_id(), "host": socket.gethostname(),
        "pid": os.getpid(), "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0")), "time": time.time(),
        "log": str(spec.layout.log_file(spec.method, spec.fold)), **extra})


def run_method_fold(spec: RunSpec) -> dict:
    """Train/reuse + validate + evaluate one (method, fold); writes and returns its record (asdict(MethodResult))."""
    if spec.method not in METHODS:
        raise BenchmarkError(f"unknown method {spec.method}; expected one of {', '.join(METHODS)}")
    layout = spec.layout
    log_file = layout.log_file(spec.method, spec.fold)
    log_file.parent.mkdir(parents=True, exist_ok=True)  # before anything can fail: the failure is logged there
    write_state(spec, "running")  # its record (OUT/.../runs/METHOD.json) goes once the decision is made
    try:
        result = train_and_validate(spec, log_file)
        evaluate_run(result, spec)
        run_extra_evaluations(result, spec)
    except BaseException as error:
        line = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
        with open(log_file, "a") as log:
            traceback.print_exc(file=log)
        write_state(spec, "failed", error=line)
        raise
    record = asdict(result)
    atomic_write_json(layout.run_record(spec.method, spec.fold), record)
    write_state(spec, "finished", status=result.status)
    return record
