"""nnU-Net's own postprocessing on a method's validation predictions, and the evaluation of its result.

nnU-Net decides on validation predictions whether "keep only the largest connected component" (of the
whole foreground, then per label or region) raises the mean Dice without lowering any class's
(`nnunetv2.postprocessing.remove_connected_components.determine_postprocessing`, what
`nnUNetv2_determine_postprocessing` and `nnUNetv2_find_best_configuration` run), and writes the choice
as `postprocessing.pkl`; `nnUNetv2_apply_postprocessing -pp_pkl_file ...` applies it to new predictions.
Here nnU-Net decides on a copy of the predictions, so the run's folder stays as nnU-Net wrote it:

    OUT/                      (written whole, then moved into place)
        CASE.nii.gz           the raw predictions (copied) + nnU-Net's summary.json of them
        postprocessing.pkl    nnU-Net's choice (pp functions + kwargs), for nnUNetv2_apply_postprocessing
        postprocessing.json   nnU-Net's before/after Dice
        postprocessed/        the predictions with the choice applied (what is evaluated as "postprocessed")

Note: like nnU-Net's own cross-validation numbers, the choice is made on the cases it is then scored on.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from nnunet_sam_adapter.atomic_io import atomic_folder

POSTPROCESSED_SUBDIR = "postprocessed"


class PostprocessingError(ValueError):
    """A validation folder nnU-Net's postprocessing cannot run on (the message names the folder and file)."""


def describe_postprocessing(pp_fns, pp_fn_kwargs) -> list[str]:
    """nnU-Net's chosen steps as text, e.g. ['remove_all_but_largest_component_from_segmentation(labels_or_regions=[1])']
    (empty: nnU-Net keeps the raw predictions)."""
    return [f"{fn.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
            for fn, kwargs in zip(pp_fns, pp_fn_kwargs)]


def determine_postprocessing_on_copy(prediction_dir, reference_dir, plans: Mapping | str | os.PathLike,
                                     dataset_json: Mapping | str | os.PathLike, output_dir,
                                     num_processes: int = 1) -> dict:
    """Copy the predictions of `prediction_dir` to `output_dir`, let nnU-Net's `determine_postprocessing`
    choose on them against `reference_dir` (nnU-Net's gt_segmentations), keep its postprocessed files.

    plans / dataset_json: dicts or JSON paths (nnU-Net's results folder holds plans.json and dataset.json).
    Returns {'steps': [...], 'pkl': path, 'postprocessed_dir': path}. Re-running replaces `output_dir`.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing

    prediction_dir, reference_dir, output_dir = Path(prediction_dir), Path(reference_dir), Path(output_dir)
    if not isinstance(plans, Mapping):
        plans = _read_json_or_refuse(load_json, plans, "plans")
    if not isinstance(dataset_json, Mapping):
        dataset_json = _read_json_or_refuse(load_json, dataset_json, "dataset.json")
    plans, dataset_json = dict(plans), dict(dataset_json)
    ending = dataset_json.get("file_ending", ".nii.gz")
    predictions = sorted(p for p in prediction_dir.glob(f"*{ending}") if not p.name.startswith("."))
    if not predictions:
        raise PostprocessingError(f"{prediction_dir}: expected predicted segmentations CASE{ending} (nnU-Net's "
                                  f"fold_F/validation), found none")
    missing = [p.name for p in predictions if not (reference_dir / p.name).is_file()]
    if missing:
        raise PostprocessingError(f"{reference_dir}: no reference segmentation for {', '.join(missing)} "
                                  f"(expected nnU-Net's gt_segmentations of the preprocessed dataset)")

    with atomic_folder(output_dir) as staging:
        for path in predictions:
            shutil.copy2(path, staging / path.name)
        pp_fns, pp_fn_kwargs = determine_postprocessing(str(staging), str(reference_dir), plans, dataset_json,
                                                        num_processes=num_processes, keep_postprocessed_files=True)
    return {"steps": describe_postprocessing(pp_fns, pp_fn_kwargs), "pkl": str(output_dir / "postprocessing.pkl"),
            "postprocessed_dir": str(output_dir / POSTPROCESSED_SUBDIR)}


def postprocess_and_evaluate(prediction_dir, reference_dir, plans, dataset_json, output_dir,
                             num_processes: int = 1) -> dict:
    """nnU-Net's postprocessing (above) into `output_dir`/nnunet_postprocessing, then `evaluate_folders`
    on the postprocessed predictions into `output_dir` (volume and slice protocols).

    Returns {'steps', 'pkl', 'postprocessed_dir', 'summary'} (summary: evaluate_folders' dict).
    """
    from nnunet_sam_adapter.evaluation.folders import evaluate_folders

    output_dir = Path(output_dir)
    choice = determine_postprocessing_on_copy(prediction_dir, reference_dir, plans, dataset_json,
                                              output_dir / "nnunet_postprocessing", num_processes)
    dataset = dict(dataset_json) if isinstance(dataset_json, Mapping) else None
    summary = evaluate_folders(reference_dir, choice["postprocessed_dir"], output_dir,
                               dataset_json=dataset if dataset is not None else dataset_json,
                               num_processes=num_processes, allow_missing=True, show_progress=False)
    return {**choice, "summary": summary}


def _read_json_or_refuse(load_json, path, what: str) -> dict:
    try:
        return load_json(str(path))
    except (OSError, ValueError) as error:
        raise PostprocessingError(f"{path}: cannot read the {what} JSON ({error})") from error


# ------------------------------------------------------------------ the benchmark's raw and postprocessed rows

BENCHMARK_EVALUATION = "nnunet_sam_adapter.evaluation.postprocessing.benchmark_postprocessing"
POSTPROCESSED_SUFFIX = "_pp"  # table key of a method's postprocessed row: "ours" -> "ours_pp"


def benchmark_postprocessing(result, spec) -> dict:
    """Extra evaluation of a benchmark run (`RunSpec.evaluations`): nnU-Net's postprocessing determined on
    the run's validation predictions (plans.json / dataset.json as nnU-Net copied them next to the fold
    folders), the postprocessed predictions evaluated into EVALUATION_DIR/postprocessed."""
    from nnunet_sam_adapter.paths import nnunet_dirs

    _, preprocessed, _ = nnunet_dirs(spec.dataset)
    model_dir = Path(result.run_dir).parent
    output = Path(result.evaluation_dir) / "postprocessed"
    done = postprocess_and_evaluate(result.validation_dir, preprocessed / "gt_segmentations",
                                    model_dir / "plans.json", model_dir / "dataset.json", output, spec.num_processes)
    summary = done["summary"]
    return {"steps": done["steps"], "pkl": done["pkl"], "evaluation_dir": str(output),
            "summary": {"volume": summary["volume"], "slice": summary["slice"], "classes": summary["classes"],
                        "cases": sorted(summary["cases"])}}


def postprocessing_choice(record: Mapping | None) -> str | None:
    """The postprocessing.pkl nnU-Net chose for a benchmark run (its record), None when it has none."""
    entry = ((record or {}).get("extra") or {}).get(BENCHMARK_EVALUATION)
    return None if not entry or "error" in entry or not entry.get("pkl") else entry["pkl"]


def postprocessed_record(record: Mapping) -> dict | None:
    """A benchmark run record -> a record of the same run scored after postprocessing (method key
    METHOD_pp, label '... + nnU-Net postprocessing'); None when the run has no postprocessed evaluation."""
    entry = (record.get("extra") or {}).get(BENCHMARK_EVALUATION)
    if not entry or "error" in entry:
        return None
    return {**record, "method": record["method"] + POSTPROCESSED_SUFFIX,
            "label": postprocessed_label(record["label"], [entry["steps"]]), "raw_label": record["label"],
            "evaluation_dir": entry["evaluation_dir"], "summary": entry["summary"], "postprocessing": entry["steps"]}


def postprocessed_label(raw_label: str, steps_per_fold: list[list]) -> str:
    """'Ours + nnU-Net postprocessing (largest component)'; several folds: the choice of each fold."""
    choices = ["largest component" if steps else "none chosen" for steps in steps_per_fold]
    if len(set(choices)) > 1:
        return f"{raw_label} + nnU-Net postprocessing (per fold: {', '.join(choices)})"
    return f"{raw_label} + nnU-Net postprocessing ({choices[0]})"


def with_postprocessed(methods) -> tuple:
    """('ours', 'nnunet_2d') -> ('ours', 'ours_pp', 'nnunet_2d', 'nnunet_2d_pp'): raw row, then postprocessed row."""
    return tuple(key for method in methods for key in (method, method + POSTPROCESSED_SUFFIX))
