"""The whole benchmark: check the inputs (`benchmark.preflight`, before any run), dispatch every (method, fold) run through an executor, then
write each fold's tables and figures and, for a cross-validation, the pooled ones in OUT/crossval.

`run_benchmark(BenchmarkSettings(dataset, fold=F))` is the one-fold form (its folder is OUT itself);
`folds=[...]` is the cross-validation (OUT/fold_F per fold). `aggregate_only` skips the runs and reports
what is finished; `only` runs some of the command's runs and reports all that are finished (e.g. the
runs a device machine did not finish, trained here with the same command).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nnunet_sam_adapter.training.budget import Budget
from nnunet_sam_adapter.benchmark.executors import ExecutorOptions, run_specs
from nnunet_sam_adapter.benchmark.layout import (BenchmarkError, OutputLayout, fold_coverage_note, load_plans,
                                                 resolve_folds, seed_root)
from nnunet_sam_adapter.benchmark.collect import collect_runs, damaged_runs
from nnunet_sam_adapter.benchmark.preflight import preflight
from nnunet_sam_adapter.reporting.learning_curves import LEARNING_CURVE_EVALUATION
from nnunet_sam_adapter.benchmark.runner import RunSpec
from nnunet_sam_adapter.evaluation.postprocessing import with_postprocessed
from nnunet_sam_adapter.methods import DEFAULT_METHODS, METHODS
from nnunet_sam_adapter.paths import SPLITS_FILE, load_json, load_splits, nnunet_dirs, raw_images_dir, validation_cases
from nnunet_sam_adapter.reporting.outputs import write_outputs


def check_methods(methods, preprocessed: Path) -> None:
    """Unknown names and missing plans fail before hours of training, not after."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BenchmarkError(f"unknown method(s) {', '.join(unknown)}; expected some of {', '.join(METHODS)}")
    for method in methods:
        load_plans(preprocessed, METHODS[method])


def output_layout(results_dir: Path, output_dir, folds: list[int] | None, fold: int) -> OutputLayout:
    if folds is None:
        return OutputLayout(Path(output_dir) if output_dir else results_dir / "sam_benchmark" / f"fold_{fold}", True)
    return OutputLayout(Path(output_dir) if output_dir else results_dir / "sam_benchmark", False)


@dataclass(frozen=True)
class BenchmarkSettings:
    """What `run_benchmark` runs: the dataset, methods and folds, how each run trains and is evaluated,
    where the reports go (`output_dir` None: $nnUNet_results/DATASET/sam_benchmark[/fold_F])."""

    dataset: int | str
    methods: tuple = DEFAULT_METHODS
    fold: int = 0                    # the one-fold form (folds None)
    folds: tuple | list | None = None  # the cross-validation: fold numbers or ['all']
    budget: Budget = Budget()
    output_dir: str | os.PathLike | None = None
    device: str = "cpu"
    retrain: bool = False
    mirroring: bool = True
    overlay_cases: int = 3
    num_processes: int = 1
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    aggregate_only: bool = False
    save_every: int | None = None
    evaluations: tuple = ()
    seeds: int = 1                   # seeds 0 .. N-1 of every (method, fold): seed 0 in OUT, seed K in OUT/seed_K
    curve_images: tuple = ()         # learning-curve points (training images) inside each run
    only: tuple = ()                 # run names (METHOD/fold_F[/seed_K]) to train or reuse; () = every run.
    #                                  The reports still read every run of the command that is finished.

    def __post_init__(self):
        check_repeats(self.seeds, self.curve_images)


def check_repeats(seeds: int, curve_images) -> None:
    """ValueError unless 1 <= seeds <= MAX_SEED + 1 and every curve point is a positive number of images."""
    from nnunet_sam_adapter.methods import MAX_SEED

    if not 1 <= int(seeds) <= MAX_SEED + 1:
        raise ValueError(f"--seeds must be 1-{MAX_SEED + 1} (seed trainers exist for seeds up to {MAX_SEED}), got {seeds}")
    if any(int(n) < 1 for n in curve_images):
        raise ValueError(f"--curve-images must be positive numbers of training images, got {list(curve_images)}")


def only_runs(specs: list[RunSpec], only) -> list[RunSpec]:
    """The specs named in `only` (all of them when it is empty); a name that is not one of the command's runs
    is a BenchmarkError before anything runs (e.g. a seed the command's --seeds does not train)."""
    if not only:
        return specs
    names, wanted = [spec.name for spec in specs], set(only)
    unknown = [name for name in dict.fromkeys(only) if name not in names]
    if unknown:
        raise BenchmarkError(f"--only {' '.join(unknown)}: not among this command's runs ({', '.join(names)})")
    return [spec for spec in specs if spec.name in wanted]


def run_benchmark(settings: BenchmarkSettings) -> dict:
    """Run (or reuse) every (method, fold), then report. Returns the last report's results (the pooled one
    for a cross-validation) with 'failed' = {run: error line} and 'fold_results' for each fold."""
    s = settings
    methods, folds = list(s.methods), None if s.folds is None else list(s.folds)
    name, preprocessed, results_dir = nnunet_dirs(s.dataset)
    check_methods(methods, preprocessed)
    dataset_json = load_json(preprocessed / "dataset.json")
    split_existed = load_splits(preprocessed) is not None
    fold_list = resolve_folds(preprocessed, dataset_json, [s.fold] if folds is None else folds)
    if not split_existed:
        print(f"no {SPLITS_FILE} in {preprocessed}: wrote nnU-Net's default split (5 folds, seed 12345)")
    if note := fold_coverage_note(load_splits(preprocessed), fold_list):
        print(note)
    # every executor: nothing is dispatched (nor the output folder made) unless every run can read its inputs.
    # --aggregate-only reads finished results only (each checked as it is read, benchmark/collect.py).
    if not s.aggregate_only:
        preflight(name[len("Dataset"):].split("_")[0], preprocessed, dataset_json, methods, fold_list)
    layout = output_layout(results_dir, s.output_dir, None if folds is None else fold_list, s.fold)
    seed_layouts = [OutputLayout(seed_root(layout.root, seed), layout.single_fold) for seed in range(s.seeds)]
    # the learning-curve evaluation also gives the seeds report its seconds and pseudo Dice (cheap without points)
    evaluations = tuple(s.evaluations) + ((LEARNING_CURVE_EVALUATION,) if s.curve_images or s.seeds > 1 else ())
    specs = [RunSpec(str(s.dataset), method, f, str(seed_layout.root), layout.single_fold, s.budget, s.device,
                     s.retrain, s.mirroring, save_every=s.save_every, num_processes=s.num_processes,
                     evaluations=evaluations, seed=seed, curve_images=tuple(sorted(set(map(int, s.curve_images)))))
             for seed, seed_layout in enumerate(seed_layouts) for f in fold_list for method in methods]
    to_run = only_runs(specs, s.only)
    layout.root.mkdir(parents=True, exist_ok=True)
    failed = {} if s.aggregate_only else run_specs(to_run, s.executor, layout)
    if not s.aggregate_only and not s.executor.wait and s.executor.kind == "slurm":
        return {"submitted": [spec.name for spec in to_run], "failed": failed, "layout": str(layout.root)}
    context = {"dataset": name, "device": s.device, "test_time_mirroring": s.mirroring, "budget": s.budget,
               "preprocessed": preprocessed, "dataset_json": dataset_json, "overlay_cases": s.overlay_cases}
    per_seed = [report(seed_layout, methods, fold_list, context, {}, seed)
                for seed, seed_layout in enumerate(seed_layouts)]
    results = {**per_seed[0], "failed": {**failed, **{k: v for r in per_seed for k, v in r["failed"].items()}}}
    if s.seeds > 1 or s.curve_images:
        from nnunet_sam_adapter.reporting.learning_curves import write_learning_curves

        finished_per_seed = [collect_runs(seed_layout, methods, fold_list)[0] for seed_layout in seed_layouts]
        try:  # a failing report never costs the finished runs (their records and tables are written)
            results["learning_curves"] = write_learning_curves(finished_per_seed, methods, fold_list, context,
                                                               layout.root / "learning_curves")
        except Exception as error:  # noqa: BLE001
            results.setdefault("report_errors", {})["learning_curves"] = f"{type(error).__name__}: {error}"
            print(f"learning curves not written: {type(error).__name__}: {error}")
    return results


def _base_results(context: dict, dataset: str, folds: list[int], cases: list[str], methods=()) -> dict:
    from nnunet_sam_adapter.reporting.parameters import all_network_parameters, sam_description

    budget = context["budget"]
    return {"dataset": context["dataset"], "fold": folds[0], "folds": folds, "device": context["device"],
            "validation_cases": cases, "requested_budget": asdict(budget) if budget.requested else None,
            "budget_rule": budget.rule(), "test_time_mirroring": context["test_time_mirroring"],
            "sam": sam_description(dataset), "parameters": all_network_parameters(dataset, methods)}


def report(layout: OutputLayout, methods, folds: list[int], context: dict, failed: dict, seed: int = 0) -> dict:
    """Per-fold outputs, then (for several folds or the --folds form) the pooled ones in OUT/crossval, of one
    seed's folder (`layout`, seed `seed`)."""
    from nnunet_sam_adapter.reporting import crossval
    from nnunet_sam_adapter.reporting.figures import write_figures
    from nnunet_sam_adapter.reporting.tables import write_tables

    finished, missing = collect_runs(layout, methods, folds)
    failed = {**failed, **damaged_runs(missing, seed)}  # never reported from, and the command exits non-zero
    dataset = context["dataset"]
    base = _base_results(context, dataset, folds, [], methods)
    fold_results = {}
    for f in folds:
        results = {**base, "fold": f, "folds": [f], "validation_cases": validation_cases(context["preprocessed"], f),
                   "methods": finished[f], "missing": missing[f]}
        images = raw_images_dir(dataset)
        writers = {"figures": lambda r, out: write_figures(r, out, images, context["preprocessed"] / "gt_segmentations",
                                                           context["dataset_json"], context["overlay_cases"]),
                   "tables": write_tables}  # last: tables.md names a figure that could not be drawn
        write_outputs(results, layout.fold_dir(f), writers if finished[f] else {"tables": write_tables})
        fold_results[f] = results
    if layout.single_fold:
        return {**fold_results[folds[0]], "failed": failed}
    by_method = {m: {f: finished[f][m] for f in folds if m in finished[f]} for m in with_postprocessed(methods)}
    pooled = {m: crossval.pool_method(records) for m, records in by_method.items() if records}
    results = {**base, "validation_cases": sorted(c for f in folds for c in validation_cases(context["preprocessed"], f)),
               "methods": pooled, "missing": {f"{m}/fold_{f}": why for f in folds for m, why in missing[f].items()},
               "per_fold": crossval.per_fold_rows(finished), "stats": crossval.comparisons(pooled)}
    writers = {"figures": lambda r, out: write_figures(r, out, None, "", {}, 0), "tables": write_tables}
    write_outputs(results, layout.crossval_dir, writers if pooled else {"tables": write_tables})
    return {**results, "failed": failed, "fold_results": fold_results}
