"""Where the benchmark reads and writes: each method's plans and run folder, nnU-Net's splits (written once,
before any job) and the output tree. nnU-Net's folders and identifiers themselves are in `paths.py`.

Output tree of a cross-validation (`--folds`), OUT = -o or $nnUNet_results/DATASET/sam_benchmark:

    OUT/fold_F/                 per-fold tables, figures, results.json (as the one-fold form writes them)
    OUT/fold_F/runs/M.json      the finished (method M, fold F) run: budget, timings, evaluation summary
    OUT/fold_F/runs/M.state.json  written by the job itself: running (job id, host) or failed (error line)
    OUT/fold_F/logs/M.log       nnU-Net's console output of that run
    OUT/fold_F/evaluation/M/    per-case metrics of that run (evaluation.folders)
    OUT/crossval/               pooled tables, per-fold table, stats.csv, metrics.png
    OUT/jobs/                   submitit's job folders (scripts, stdout/stderr) and submitted.json

With `--seeds N` seed 0 has that tree in OUT itself and each seed K >= 1 in OUT/seed_K; OUT/learning_curves/
holds what is pooled over the seeds and the learning-curve points (reporting/learning_curves.py).

The one-fold form (`-f F`) keeps its fold folder at OUT itself (-o, default .../sam_benchmark/fold_F).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nnunet_sam_adapter.methods import SAM_PLANS_NAME, Method
from nnunet_sam_adapter.paths import SPLITS_FILE, load_plans_json, load_splits


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class OutputLayout:
    """Paths of the benchmark's outputs; `single_fold` = the one-fold form (fold folder = root)."""

    root: Path
    single_fold: bool = False

    def fold_dir(self, fold: int) -> Path:
        return self.root if self.single_fold else self.root / f"fold_{fold}"

    def run_record(self, method: str, fold: int) -> Path:
        return self.fold_dir(fold) / "runs" / f"{method}.json"

    def run_state(self, method: str, fold: int) -> Path:
        return self.fold_dir(fold) / "runs" / f"{method}.state.json"

    def log_file(self, method: str, fold: int) -> Path:
        return self.fold_dir(fold) / "logs" / f"{method}.log"

    def evaluation_dir(self, method: str, fold: int) -> Path:
        return self.fold_dir(fold) / "evaluation" / method

    @property
    def crossval_dir(self) -> Path:
        return self.root / "crossval"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"


def load_plans(preprocessed: Path, method: Method) -> dict:
    plans_file = preprocessed / f"{method.plans}.json"
    if not plans_file.is_file():
        how = ("nnUNetv2_sam_plan_and_preprocess -d ID ..." if method.plans == SAM_PLANS_NAME
               else f"nnUNetv2_sam_plan_and_preprocess -d ID ... --stock {method.configuration}")
        raise BenchmarkError(f"method {method.name} needs plans {plans_file}: run {how}")
    plans = load_plans_json(plans_file)
    if plans is None:
        raise BenchmarkError(f"{plans_file} is not readable nnU-Net plans JSON: re-run nnUNetv2_sam_plan_and_preprocess")
    if method.configuration not in plans["configurations"]:
        raise BenchmarkError(f"method {method.name} needs configuration {method.configuration} in {plans_file}: "
                             f"run nnUNetv2_sam_plan_and_preprocess -d ID ... --stock {method.configuration}")
    return plans


def trainer_class(method: Method, seed: int = 0) -> type:
    try:
        return method.trainer_class(seed)
    except (ImportError, ValueError) as error:
        raise BenchmarkError(str(error)) from None


def nnunet_run_dir(results: Path, method: Method, fold: int, seed: int = 0) -> Path:
    """nnU-Net's run folder: RESULTS/DATASET/Trainer__Plans__configuration/fold_F (seed k >= 1: the trainer's
    `_seed<k>` variant's folder, trainers/seed_trainers.py)."""
    return results / method.seed_folder_name(seed) / f"fold_{fold}"


def seed_root(root: Path, seed: int) -> Path:
    """Output folder of one seed: OUT itself for seed 0 (a one-seed benchmark's tree), OUT/seed_K for K >= 1."""
    return Path(root) if seed == 0 else Path(root) / f"seed_{seed}"


def ensure_splits(preprocessed: Path, dataset_json: dict) -> list:
    """nnU-Net's splits_final.json, written as nnU-Net's trainer writes it when missing (5-fold KFold,
    seed 12345, sorted case IDs) before any job starts, so parallel jobs never race to create it."""
    splits = load_splits(preprocessed)
    if splits is not None:
        return splits
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    from nnunet_sam_adapter.atomic_io import atomic_write_json

    identifiers = sorted(p.name[: -len(dataset_json["file_ending"])]
                         for p in (preprocessed / "gt_segmentations").glob(f"*{dataset_json['file_ending']}"))
    if not identifiers:
        raise BenchmarkError(f"{preprocessed / 'gt_segmentations'} holds no cases: run nnUNetv2_sam_plan_and_preprocess")
    splits = generate_crossval_split(identifiers, seed=12345, n_splits=5)
    atomic_write_json(preprocessed / SPLITS_FILE, splits)
    return splits


def fold_coverage_note(splits: list, folds: list[int]) -> str | None:
    """For a cross-validation (2+ folds): a note when the folds validate fewer cases than the split holds,
    e.g. folds 0 1 2 of nnU-Net's default 5-fold split (written when there is no splits_final.json)."""
    if len(folds) < 2:
        return None
    every = {case for fold in splits for part in ("train", "val") for case in fold.get(part, [])}
    validated = {case for fold in folds for case in splits[fold].get("val", [])}
    if len(validated) >= len(every):
        return None
    return (f"note: folds {', '.join(map(str, folds))} of splits_final.json ({len(splits)} folds) validate "
            f"{len(validated)} of {len(every)} cases; --folds all validates every case once, or write a "
            f"splits_final.json with {len(folds)} folds")


def resolve_folds(preprocessed: Path, dataset_json: dict, folds: list) -> list[int]:
    """['all'] -> every fold of splits_final.json; otherwise the integers, checked against it."""
    splits = ensure_splits(preprocessed, dataset_json)
    if folds == ["all"]:
        return list(range(len(splits)))
    wanted = [int(f) for f in folds]
    bad = [f for f in wanted if not 0 <= f < len(splits)]
    if bad:
        raise BenchmarkError(f"fold(s) {', '.join(map(str, bad))} not in {preprocessed / 'splits_final.json'} "
                             f"({len(splits)} folds: 0-{len(splits) - 1})")
    return list(dict.fromkeys(wanted))
