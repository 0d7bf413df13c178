"""Runs the paper's methods and the baselines on one cross-validation fold and collects their metrics.

For each method: train through nnU-Net's trainer API (or reuse a finished run with the same budget),
let nnU-Net predict the fold's validation cases (the same cases for every method: nnU-Net keeps one
splits_final.json per dataset), evaluate them with `evaluation.evaluate_folders` (volume and slice
protocols) and count the parameters of the network built from the plans. `tables` and `figures`
turn the results into the paper's Tables 1-3 and plots.

Output folder (`run_benchmark`):
    results.json              every number below, machine-readable
    tables.md, table1.csv, table2.csv, table3.csv
    metrics.png, overlays.png
    evaluation/<method>/      evaluate_folders' per-case CSVs and summary
    logs/<method>.log         nnU-Net's console output of that method's training / validation

Reuse: a run folder (nnU-Net's `Trainer__Plans__configuration/fold_F`) with `checkpoint_final.pth` is
finished. Its budget is read from our run record (`sam_benchmark_run.json`, written last), or from
nnU-Net's own `debug.json` for runs trained with `nnUNetv2_train`. It is reused when no budget is
requested or the budgets agree, and the plans it was trained with (nnU-Net's copy next to the fold
folders) equal the current ones. Otherwise a run made by the benchmark is retrained, and a run
trained outside the benchmark is never overwritten without `retrain=True`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pydoc
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from nnunet_sam_adapter.data.atomic_io import atomic_write_json
from nnunet_sam_adapter.methods import DEFAULT_METHODS, METHODS, SAM_PLANS_NAME, Method

RUN_RECORD = "sam_benchmark_run.json"


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class Budget:
    """Training budget set on the trainer instance; None keeps the trainer's own value (nnU-Net: 1000 x 250).

    Validation iterations per epoch (nnU-Net's online pseudo-Dice, not the final validation) default
    to a fifth of the training iterations, nnU-Net's own 250:50 ratio.
    """

    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None

    def __post_init__(self):
        for name in ("epochs", "iterations", "val_iterations"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"budget {name} must be >= 1, got {value}")
        if self.val_iterations is None and self.iterations is not None:
            object.__setattr__(self, "val_iterations", max(1, round(self.iterations / 5)))

    @property
    def requested(self) -> bool:
        return self.epochs is not None or self.iterations is not None

    def apply(self, trainer) -> None:
        if self.epochs is not None:
            trainer.num_epochs = int(self.epochs)
        if self.iterations is not None:
            trainer.num_iterations_per_epoch = int(self.iterations)
        if self.val_iterations is not None:
            trainer.num_val_iterations_per_epoch = int(self.val_iterations)

    def matches(self, found: dict | None) -> bool:
        """True when every requested field equals the budget a run was trained with."""
        if not self.requested:
            return True
        if not found:
            return False
        return all(getattr(self, k) is None or found.get(k) == getattr(self, k) for k in ("epochs", "iterations"))


def trainer_budget(trainer) -> dict:
    """The budget a trainer instance will train with."""
    return {"epochs": int(trainer.num_epochs), "iterations": int(trainer.num_iterations_per_epoch),
            "val_iterations": int(trainer.num_val_iterations_per_epoch)}


def describe_budget(budget: dict | None) -> str:
    if not budget:
        return "unknown"
    return f"{budget['epochs']} epochs x {budget['iterations']} iterations"


@dataclass
class MethodResult:
    """What one method produced on the fold."""

    method: str
    label: str
    trainer: str
    plans: str
    configuration: str
    run_dir: str
    status: str                 # 'trained', 'reused' or 'validated' (training reused, validation re-run)
    budget: dict
    train_seconds: float | None
    validation_seconds: float | None
    validation_dir: str
    evaluation_dir: str = ""
    summary: dict = field(default_factory=dict)


# ------------------------------------------------------------------ nnU-Net folders and plans

def _nnunet_dirs(dataset: int | str) -> tuple[str, Path, Path]:
    """(dataset name, preprocessed folder, results folder) from nnU-Net's env vars."""
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    for env in (nnUNet_preprocessed, nnUNet_results):
        if not env.is_set():
            raise BenchmarkError(f"environment variable {env.env_var_name} is not set: the benchmark trains and "
                                 f"predicts through nnU-Net (see nnU-Net's documentation/setting_up_paths.md)")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as error:
        raise BenchmarkError(f"dataset {dataset} not found: {error}") from error
    return name, Path(str(nnUNet_preprocessed)) / name, Path(str(nnUNet_results)) / name


def _load_plans(preprocessed: Path, method: Method) -> dict:
    plans_file = preprocessed / f"{method.plans}.json"
    if not plans_file.is_file():
        how = ("nnUNetv2_sam_plan_and_preprocess -d ID ..." if method.plans == SAM_PLANS_NAME
               else f"nnUNetv2_sam_plan_and_preprocess -d ID ... --stock {method.configuration}")
        raise BenchmarkError(f"method {method.name} needs plans {plans_file}: run {how}")
    with open(plans_file) as f:
        plans = json.load(f)
    if method.configuration not in plans["configurations"]:
        raise BenchmarkError(f"method {method.name} needs configuration {method.configuration} in {plans_file}: "
                             f"run nnUNetv2_sam_plan_and_preprocess -d ID ... --stock {method.configuration}")
    return plans


def _load_json(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def trainer_class(method: Method) -> type:
    found = pydoc.locate(method.trainer)
    if found is None:
        raise BenchmarkError(f"trainer class {method.trainer} of method {method.name} cannot be imported")
    return found


def validation_cases(preprocessed: Path, fold: int) -> list[str]:
    """The fold's validation case IDs from nnU-Net's splits_final.json (written by the first training)."""
    splits = _load_json(preprocessed / "splits_final.json")
    if splits is None:
        raise BenchmarkError(f"{preprocessed / 'splits_final.json'} is missing: no method has been trained yet")
    if not 0 <= fold < len(splits):
        raise BenchmarkError(f"fold {fold} not in {preprocessed / 'splits_final.json'} ({len(splits)} folds)")
    return sorted(splits[fold]["val"])


# ------------------------------------------------------------------ training / validation

def _found_budget(run_dir: Path, record: dict | None) -> dict | None:
    """Budget a finished run was trained with: our record, else nnU-Net's debug.json."""
    if record:
        return record.get("budget")
    debug = _load_json(run_dir / "debug.json")
    try:
        return {"epochs": int(debug["num_epochs"]), "iterations": int(debug["num_iterations_per_epoch"]),
                "val_iterations": int(debug["num_val_iterations_per_epoch"])}
    except (TypeError, KeyError, ValueError):
        return None


def _validation_complete(run_dir: Path, cases: list[str], file_ending: str, record: dict | None,
                         mirroring: bool) -> bool:
    folder = run_dir / "validation"
    if not (folder / "summary.json").is_file():
        return False
    if not all((folder / f"{case}{file_ending}").is_file() for case in cases):
        return False
    return bool(record.get("validation_mirroring", True) if record else True) == mirroring


def _make_trainer(method: Method, plans: dict, preprocessed: Path, fold: int, device):
    dataset_json = _load_json(preprocessed / "dataset.json")
    plans = {**plans, "continue_training": False}  # nnU-Net's trainer pops this key
    return trainer_class(method)(plans=plans, configuration=method.configuration, fold=fold,
                                 dataset_json=dataset_json, device=device)


def _attach_epoch_bar(trainer, bar: tqdm) -> None:
    """Advance `bar` at the end of every epoch (the hook is wrapped on this instance only)."""
    on_epoch_end = trainer.on_epoch_end

    def on_epoch_end_with_bar():
        on_epoch_end()
        with contextlib.suppress(Exception):
            bar.set_postfix(loss=f"{trainer.logger.get_value('train_losses', step=-1):.3f}", refresh=False)
        bar.update(1)

    trainer.on_epoch_end = on_epoch_end_with_bar


def _validate(trainer, mirroring: bool) -> float:
    if not mirroring:
        trainer.inference_allowed_mirroring_axes = None  # after checkpoint_final: the checkpoint keeps its axes
    start = time.perf_counter()
    trainer.perform_actual_validation(False)
    return time.perf_counter() - start


def train_and_validate(method: Method, dataset: int | str, fold: int, budget: Budget, device,
                       log_file: Path, retrain: bool = False, mirroring: bool = True) -> MethodResult:
    """Train `method` on the fold (or reuse a finished run, see the module docstring) and make sure
    nnU-Net's validation predictions of the fold exist. nnU-Net's console output goes to `log_file`."""
    import torch

    name, preprocessed, results = _nnunet_dirs(dataset)
    plans = _load_plans(preprocessed, method)
    run_dir = results / method.folder_name / f"fold_{fold}"
    record = _load_json(run_dir / RUN_RECORD)
    finished = (run_dir / "checkpoint_final.pth").is_file()
    found = _found_budget(run_dir, record) if finished else None
    same_plans = _load_json(run_dir.parent / "plans.json") == plans  # nnU-Net copies the plans it trained with
    if finished and not retrain and record is None and not (budget.matches(found) and same_plans):
        why = (f"was trained with other plans than {method.plans}.json now holds (re-plan with the same "
               f"settings to reuse it)" if not same_plans else
               f"has another budget ({describe_budget(found)}) than requested ({describe_budget(asdict(budget))}): "
               f"run without --epochs/--iterations to reuse it")
        raise BenchmarkError(f"{run_dir} holds a finished {method.trainer_name} run trained outside the benchmark "
                             f"that {why}, or pass --retrain to overwrite it")
    reuse = finished and not retrain and same_plans and budget.matches(found)
    file_ending = _load_json(preprocessed / "dataset.json")["file_ending"]

    log_file.parent.mkdir(parents=True, exist_ok=True)
    train_seconds = record.get("train_seconds") if (reuse and record) else None
    with open(log_file, "a") as log, contextlib.redirect_stdout(log):
        if device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        if reuse:
            cases = validation_cases(preprocessed, fold)
            if _validation_complete(run_dir, cases, file_ending, record, mirroring):
                status, validation_seconds = "reused", (record or {}).get("validation_seconds")
            else:
                status = "validated"
                trainer = _make_trainer(method, plans, preprocessed, fold, device)
                trainer.load_checkpoint(str(run_dir / "checkpoint_final.pth"))
                validation_seconds = _validate(trainer, mirroring)
            budget_used = found
        else:
            status = "trained"
            for stale in (RUN_RECORD, "checkpoint_final.pth"):
                (run_dir / stale).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "validation", ignore_errors=True)
            trainer = _make_trainer(method, plans, preprocessed, fold, device)
            budget.apply(trainer)
            budget_used = trainer_budget(trainer)
            with tqdm(total=trainer.num_epochs, desc=f"train {method.name}", unit="epoch", leave=False) as bar:
                _attach_epoch_bar(trainer, bar)
                start = time.perf_counter()
                trainer.run_training()
                train_seconds = time.perf_counter() - start
            validation_seconds = _validate(trainer, mirroring)
    if status != "reused":
        atomic_write_json(run_dir / RUN_RECORD, {
            "method": method.name, "trainer": method.trainer_name, "plans": method.plans,
            "configuration": method.configuration, "fold": fold, "dataset": name, "budget": budget_used,
            "device": str(device), "train_seconds": train_seconds, "validation_seconds": validation_seconds,
            "validation_mirroring": mirroring, "trained_by": "nnunet_sam_adapter.benchmark.runner"
            if status == "trained" else (record or {}).get("trained_by", "nnUNetv2_train"),
        })
    return MethodResult(method.name, method.label, method.trainer_name, method.plans, method.configuration,
                        str(run_dir), status, budget_used, train_seconds, validation_seconds,
                        str(run_dir / "validation"))


# ------------------------------------------------------------------ parameters (Table 3)

def network_parameters(method: Method, dataset: int | str) -> dict | None:
    """Total / trainable / percent parameters of the network `method`'s trainer builds from the plans
    (None when the plans or configuration do not exist). Built on the meta device where possible."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_sam_adapter.model.parameters import parameter_report

    _, preprocessed, _ = _nnunet_dirs(dataset)
    try:
        plans = _load_plans(preprocessed, method)
    except BenchmarkError:
        return None
    dataset_json = _load_json(preprocessed / "dataset.json")
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration(method.configuration)
    inputs = determine_num_input_channels(plans_manager, configuration, dataset_json)
    outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    build = trainer_class(method).build_network_architecture
    try:
        with torch.device("meta"):
            network = build(plans_manager, configuration, inputs, outputs, method.deep_supervision)
    except Exception:  # some modules (LiteMedSAM's TinyViT) cannot be built on meta
        network = build(plans_manager, configuration, inputs, outputs, method.deep_supervision)
    return {"label": method.label, **parameter_report(network)}


def sam_description(dataset: int | str) -> dict | None:
    """Backbone and weights of the SAM plans (None without SAM plans)."""
    from nnunet_sam_adapter.model.checkpoints import default_checkpoint

    _, preprocessed, _ = _nnunet_dirs(dataset)
    plans = _load_json(preprocessed / f"{SAM_PLANS_NAME}.json")
    if not plans:
        return None
    sam = plans["configurations"]["2d"].get("sam", {})
    weights = sam.get("checkpoint") or default_checkpoint(sam.get("backbone", ""))
    return {"backbone": sam.get("backbone"), "input_size": sam.get("input_size"),
            "adapter_depth": sam.get("adapter_depth"), "batch_size": sam.get("batch_size"),
            "weights": weights or "RANDOM (no pretrained weights: the numbers do not reflect the method)"}


# ------------------------------------------------------------------ the whole benchmark

def run_benchmark(dataset: int | str, methods=DEFAULT_METHODS, fold: int = 0, budget: Budget = Budget(),
                  output_dir: str | os.PathLike | None = None, device: str = "cpu", retrain: bool = False,
                  mirroring: bool = True, overlay_cases: int = 3, num_processes: int = 1) -> dict:
    """Train/reuse, validate and evaluate `methods` on `fold`; write tables, figures and results.json
    into `output_dir` (default `$nnUNet_results/DATASET/sam_benchmark/fold_F`). Returns the results."""
    import torch

    from nnunet_sam_adapter.evaluation.folders import evaluate_folders
    from nnunet_sam_adapter.benchmark.figures import write_figures
    from nnunet_sam_adapter.benchmark.tables import write_tables

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BenchmarkError(f"unknown method(s) {', '.join(unknown)}; expected some of {', '.join(METHODS)}")
    name, preprocessed, results_dir = _nnunet_dirs(dataset)
    for method in methods:  # fail before hours of training, not after
        _load_plans(preprocessed, METHODS[method])
    output = Path(output_dir) if output_dir else results_dir / "sam_benchmark" / f"fold_{fold}"
    output.mkdir(parents=True, exist_ok=True)
    torch_device = torch.device(device)
    dataset_json = _load_json(preprocessed / "dataset.json")

    method_results: list[MethodResult] = []
    for method_name in tqdm(methods, desc="benchmark", unit="method"):
        method = METHODS[method_name]
        log_file = output / "logs" / f"{method_name}.log"
        try:
            result = train_and_validate(method, dataset, fold, budget, torch_device, log_file, retrain, mirroring)
        except BenchmarkError:
            raise
        except Exception as error:
            raise BenchmarkError(f"method {method_name} failed ({type(error).__name__}: {error}); "
                                 f"nnU-Net's output is in {log_file}") from error
        tqdm.write(f"{method_name}: {result.status} ({describe_budget(result.budget)})")
        method_results.append(result)

    cases = validation_cases(preprocessed, fold)
    for result in tqdm(method_results, desc="evaluate", unit="method"):
        prediction_dir = Path(result.validation_dir)
        missing = [c for c in cases if not (prediction_dir / f"{c}{dataset_json['file_ending']}").is_file()]
        if missing:
            raise BenchmarkError(f"method {result.method}: no validation prediction for {', '.join(missing)} in "
                                 f"{prediction_dir}")
        evaluation_dir = output / "evaluation" / result.method
        summary = evaluate_folders(preprocessed / "gt_segmentations", prediction_dir, evaluation_dir,
                                   dataset_json=dataset_json, num_processes=num_processes, allow_missing=True,
                                   show_progress=False)
        if sorted(summary["cases"]) != cases:
            raise BenchmarkError(f"method {result.method}: evaluated {summary['cases']}, expected the fold's "
                                 f"validation cases {cases}")
        result.evaluation_dir = str(evaluation_dir)
        result.summary = {"volume": summary["volume"], "slice": summary["slice"], "classes": summary["classes"]}

    parameters = {}
    for method in tqdm(METHODS.values(), desc="parameters", unit="network", leave=False):
        report = network_parameters(method, dataset)
        if report is not None:
            parameters[method.name] = report

    results = {
        "dataset": name, "fold": fold, "device": device, "validation_cases": cases,
        "requested_budget": asdict(budget) if budget.requested else None,
        "test_time_mirroring": mirroring, "sam": sam_description(dataset),
        "methods": {r.method: asdict(r) for r in method_results}, "parameters": parameters,
    }
    results["tables"] = write_tables(results, output)
    images_dir = _raw_images_dir(name)
    results["figures"] = write_figures(results, output, images_dir, preprocessed / "gt_segmentations",
                                       dataset_json, overlay_cases)
    if images_dir is None or "overlays.png" not in results["figures"]:
        tqdm.write("overlays.png skipped: the raw images (nnUNet_raw/DATASET/imagesTr) are not available")
    atomic_write_json(output / "results.json", results)
    return results


def _raw_images_dir(dataset_name: str) -> Path | None:
    from nnunetv2.paths import nnUNet_raw

    return Path(str(nnUNet_raw)) / dataset_name / "imagesTr" if nnUNet_raw.is_set() else None
