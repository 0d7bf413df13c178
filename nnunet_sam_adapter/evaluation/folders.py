"""Evaluate a folder of predicted segmentations against a folder of references (nnU-Net layout).

Both folders hold `CASE<file_ending>` label maps (nnU-Net naming, default ".nii.gz", read with
SimpleITK). Every case gets the volume and the slice protocol of `nnunet_sam_adapter.evaluation.metrics`; the
results are written atomically to OUT (default PRED/sam_evaluation):

- metrics_volume.csv   one row per case and class: dice, hd95 (mm), ref_voxels, pred_voxels
- metrics_slices.csv   one row per case, class and slice with the class in reference or prediction
- metrics_cases.csv    one row per case and class: the volume scores and the mean of its slice scores
- summary.json / .csv  mean, std, median and count per class for both protocols (the slice summary
                       is over all slices of all cases, as the paper averages over its 2D images)

Dice is a fraction in [0, 1]; HD95 is in mm. Inputs are only read. A reference or prediction holding a
label outside dataset.json's labels (or, without one, outside the labels of the references) is refused
with the case, the file and the labels: such voxels would otherwise count as background.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_sam_adapter.atomic_io import atomic_write_text, csv_text
from nnunet_sam_adapter.data.images import InputError, geometry_differences, read_image
from nnunet_sam_adapter.evaluation.metrics import (
    ClassSpec,
    case_metrics,
    classes_from_dataset_json,
    slice_case_means,
    slice_metrics,
    summarize,
)

PathLike = Union[str, os.PathLike]
DEFAULT_FILE_ENDING = ".nii.gz"
DEFAULT_OUTPUT_SUBDIR = "sam_evaluation"


class EvaluationError(ValueError):
    """Bad evaluation input: missing/extra cases, geometry mismatch, unreadable file."""


def evaluate_folders(
    reference_dir: PathLike,
    prediction_dir: PathLike,
    output_dir: PathLike | None = None,
    dataset_json: PathLike | Mapping | None = None,
    num_processes: int = 1,
    *,
    allow_missing: bool = False,
    cases: Sequence[str] | None = None,
    slice_axis: int = 0,
    show_progress: bool = True,
) -> dict:
    """Evaluate PRED against REF in both protocols, write the CSVs and summary, return the summary.

    dataset_json: a dict or a path; when None, PRED/dataset.json is used if present (nnUNetv2_predict
    writes one there), otherwise every non-zero label found in the references is a class
    ("label_<value>"). It gives the classes (labels and regions), the "file_ending" and the "ignore"
    label (voxels whose reference is the ignore label count as background in both).
    allow_missing: evaluate the cases present in both folders instead of raising on missing or extra
    cases. cases: evaluate exactly these (each needs a reference and a prediction; other files in the
    folders are left out), e.g. one fold's validation cases in a folder that holds several folds.
    slice_axis: numpy axis of the slice protocol (0 = z, nnU-Net's 2d slicing).
    Raises EvaluationError on bad input.
    """
    reference_dir, prediction_dir = Path(reference_dir), Path(prediction_dir)
    output_dir = Path(output_dir) if output_dir is not None else prediction_dir / DEFAULT_OUTPUT_SUBDIR
    dataset = _load_dataset_json(dataset_json, prediction_dir)
    file_ending = dataset.get("file_ending", DEFAULT_FILE_ENDING) if dataset else DEFAULT_FILE_ENDING
    ignore_label = dataset.get("labels", {}).get("ignore") if dataset else None
    if cases is None:
        cases = _matching_cases(reference_dir, prediction_dir, file_ending, allow_missing)
    else:
        cases = _named_cases(reference_dir, prediction_dir, file_ending, cases)

    jobs = [
        (case, reference_dir / f"{case}{file_ending}", prediction_dir / f"{case}{file_ending}") for case in cases
    ]
    with _CaseRunner(num_processes, len(jobs), show_progress) as runner:
        if dataset:
            classes = classes_from_dataset_json(dataset)
        else:
            found = runner.map(_labels_in_reference, [job[1] for job in jobs], "labels")
            classes = {f"label_{value}": value for value in sorted(set().union(*found))}
        if not classes:
            raise EvaluationError(f"no classes to evaluate: the references in {reference_dir} hold only background")
        allowed = allowed_labels(dataset, classes)
        results = runner.map(_evaluate_case, [(*job, classes, ignore_label, slice_axis, allowed) for job in jobs],
                             "evaluate")
    volume_rows = [row for case_volume, _ in results for row in case_volume]
    slice_rows = [row for _, case_slices in results for row in case_slices]
    summary = {
        "reference_dir": str(reference_dir),
        "prediction_dir": str(prediction_dir),
        "file_ending": file_ending,
        "cases": list(cases),
        "classes": {name: list(spec) if isinstance(spec, tuple) else spec for name, spec in classes.items()},
        "slice_axis": slice_axis,
        "units": {"dice": "fraction in [0, 1]", "hd95": "mm"},
        "volume": summarize(volume_rows),
        "slice": summarize(slice_rows),
    }
    _write_outputs(output_dir, volume_rows, slice_rows, summary)
    return summary


def format_summary_table(summary: Mapping) -> str:
    """Plain-text table of the summary: Dice (%) and HD95 (mm) mean +- std per class and protocol."""
    header = f"{'class':<22}{'protocol':<10}{'n':>6}  {'Dice (%)':>15}  {'HD95 (mm)':>17}"
    lines = [header, "-" * len(header)]
    for name in summary["classes"]:
        for protocol in ("volume", "slice"):
            stats = summary[protocol].get(name)
            if stats is None:
                lines.append(f"{name:<22}{protocol:<10}{0:>6}  {'-':>15}  {'-':>17}")
                continue
            dice, hd95 = stats["dice"], stats["hd95"]
            lines.append(
                f"{name:<22}{protocol:<10}{dice['count']:>6}  "
                f"{100 * dice['mean']:>7.2f} +- {100 * dice['std']:<5.2f}  "
                f"{hd95['mean']:>8.2f} +- {hd95['std']:<6.2f}"
            )
    return "\n".join(lines)


def allowed_labels(dataset: Mapping | None, classes: Mapping[str, ClassSpec]) -> tuple[tuple[int, ...], str]:
    """(the label values a reference or prediction may hold, where that set comes from): background, every
    label and region value of dataset.json (its "ignore" label included), or, without a dataset.json, the
    labels found in the references. A label outside it would be scored as background without a word."""
    if dataset:
        values = {0}
        for value in dataset["labels"].values():
            values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else (value,)))
        return tuple(sorted(values)), "dataset.json labels"
    values = {0} | {int(v) for spec in classes.values() for v in (spec if isinstance(spec, tuple) else (spec,))}
    return tuple(sorted(values)), "labels found in the references"


def _check_labels(case: str, role: str, path: Path, array: np.ndarray, allowed: tuple[tuple[int, ...], str]) -> None:
    values, source = allowed
    extra = sorted(int(v) for v in np.setdiff1d(np.unique(array), np.asarray(values)))
    if extra:
        raise EvaluationError(f"case {case}: {path}: {role} has label(s) {extra} outside the allowed set "
                              f"{list(values)} ({source}): expected only those labels")


def _load_dataset_json(dataset_json: PathLike | Mapping | None, prediction_dir: Path) -> dict | None:
    if isinstance(dataset_json, Mapping):
        return dict(dataset_json)
    path = Path(dataset_json) if dataset_json is not None else prediction_dir / "dataset.json"
    if dataset_json is None and not path.is_file():
        return None
    try:
        with open(path) as f:
            dataset = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise EvaluationError(f"cannot read dataset.json {path}: {error}") from error
    if "labels" not in dataset:
        raise EvaluationError(f"dataset.json {path} has no 'labels' entry (expected nnU-Net v2 format)")
    return dataset


def _case_ids(folder: Path, file_ending: str, role: str) -> list[str]:
    if not folder.is_dir():
        raise EvaluationError(f"{role} folder {folder} does not exist")
    return sorted(p.name[: -len(file_ending)] for p in folder.iterdir() if p.is_file() and p.name.endswith(file_ending))


def _named_cases(reference_dir: Path, prediction_dir: Path, file_ending: str, cases: Sequence[str]) -> list[str]:
    absent = [str(folder / f"{case}{file_ending}") for case in cases for folder in (reference_dir, prediction_dir)
              if not (folder / f"{case}{file_ending}").is_file()]
    if absent:
        raise EvaluationError(f"{len(absent)} file(s) of the cases to evaluate are missing, expected "
                              + ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else ""))
    if not cases:
        raise EvaluationError(f"no cases to evaluate in {prediction_dir}")
    return sorted(cases)


def _matching_cases(reference_dir: Path, prediction_dir: Path, file_ending: str, allow_missing: bool) -> list[str]:
    references = _case_ids(reference_dir, file_ending, "reference")
    predictions = _case_ids(prediction_dir, file_ending, "prediction")
    if not references:
        raise EvaluationError(f"no reference files CASE{file_ending} in {reference_dir}")
    missing = sorted(set(references) - set(predictions))
    extra = sorted(set(predictions) - set(references))
    both = sorted(set(references) & set(predictions))
    if (missing or extra) and not allow_missing:
        problems = []
        if missing:
            problems.append(
                f"{len(missing)} case(s) have a reference but no prediction, expected "
                + ", ".join(str(prediction_dir / f"{c}{file_ending}") for c in missing[:5])
                + (" ..." if len(missing) > 5 else "")
            )
        if extra:
            problems.append(
                f"{len(extra)} prediction(s) have no reference, expected "
                + ", ".join(str(reference_dir / f"{c}{file_ending}") for c in extra[:5])
                + (" ..." if len(extra) > 5 else "")
            )
        raise EvaluationError(
            "; ".join(problems) + " (pass allow_missing / --allow_missing to evaluate only the common cases)"
        )
    if not both:
        raise EvaluationError(f"no case has both a reference in {reference_dir} and a prediction in {prediction_dir}")
    return both


def _read_image(case: str, path: Path, role: str) -> sitk.Image:
    """A 2D or 3D label map read completely (data/images.py), or an EvaluationError naming case and file."""
    try:
        return read_image(case, path, role, label_map=True, dimensions=(2, 3))
    except InputError as error:
        raise EvaluationError(f"case {case}: cannot read {role} file {path}: {error.problem}") from None


def _check_geometry(case: str, reference: sitk.Image, prediction: sitk.Image, ref_path: Path, pred_path: Path) -> None:
    """Same grid within the one set of tolerances of data/images.py; the message names the property."""
    differences = geometry_differences(reference, prediction)
    if differences:
        name, expected, found, tolerance = differences[0]
        raise EvaluationError(
            f"case {case}: prediction {pred_path} has {name} {found}, expected {expected} as in reference "
            f"{ref_path} (tolerance {tolerance})"
        )


def _labels_in_reference(path: Path) -> set[int]:
    array = sitk.GetArrayFromImage(_read_image(path.name, path, "reference"))
    return {int(v) for v in np.unique(array) if v != 0}


def _evaluate_case(
    case: str,
    ref_path: Path,
    pred_path: Path,
    classes: Mapping[str, ClassSpec],
    ignore_label: int | None,
    slice_axis: int,
    allowed: tuple[tuple[int, ...], str] | None = None,
) -> tuple[list[dict], list[dict]]:
    reference_image = _read_image(case, ref_path, "reference")
    prediction_image = _read_image(case, pred_path, "prediction")
    _check_geometry(case, reference_image, prediction_image, ref_path, pred_path)
    reference = sitk.GetArrayFromImage(reference_image)
    prediction = sitk.GetArrayFromImage(prediction_image)
    if allowed is not None:
        _check_labels(case, "reference", ref_path, reference, allowed)
        _check_labels(case, "prediction", pred_path, prediction, allowed)
    if ignore_label is not None:
        ignored = reference == ignore_label
        reference = np.where(ignored, 0, reference)
        prediction = np.where(ignored, 0, prediction)
    spacing_zyx = reference_image.GetSpacing()[::-1]
    try:
        volume_rows = case_metrics(reference, prediction, spacing_zyx, classes)
        slice_rows = slice_metrics(reference, prediction, spacing_zyx, classes, axis=slice_axis)
    except ValueError as error:  # e.g. a 4D image: metrics take 2D or 3D label maps
        raise EvaluationError(f"case {case}: cannot evaluate {pred_path} against {ref_path}: {error}") from error
    return [{"case": case, **row} for row in volume_rows], [{"case": case, **row} for row in slice_rows]


def _call(args):
    function, job = args
    return function(*job) if isinstance(job, tuple) else function(job)


def _single_thread_worker() -> None:
    import torch

    torch.set_num_threads(1)


class _CaseRunner:
    """Maps a function over per-case jobs with a tqdm bar; one spawn pool (as nnU-Net uses) for all maps."""

    def __init__(self, num_processes: int, num_jobs: int, show_progress: bool):
        self.num_processes = max(1, min(int(num_processes), num_jobs))
        self.show_progress = show_progress
        self.pool = None

    def __enter__(self) -> "_CaseRunner":
        if self.num_processes > 1:
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(self.num_processes, initializer=_single_thread_worker)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def map(self, function, jobs: Sequence, description: str) -> list:
        """`function(*job)` (or `function(job)`) for each job, results in job order."""
        bar = dict(total=len(jobs), desc=description, unit="case", disable=not self.show_progress)
        tasks = [(function, job) for job in jobs]
        results = self.pool.imap(_call, tasks) if self.pool is not None else map(_call, tasks)
        return list(tqdm(results, **bar))


def _case_rows(volume_rows: Sequence[Mapping], slice_rows: Sequence[Mapping]) -> list[dict]:
    slices_by_case: dict[str, list[Mapping]] = {}
    for row in slice_rows:
        slices_by_case.setdefault(row["case"], []).append(row)
    means_by_case = {case: slice_case_means(rows) for case, rows in slices_by_case.items()}
    rows = []
    for row in volume_rows:
        # A class absent from every slice of ref and pred has no slice score (empty cells).
        no_slices = {"n_slices": 0, "dice": "", "hd95": ""}
        means = means_by_case.get(row["case"], {}).get(row["class"], no_slices)
        rows.append(
            {
                "case": row["case"],
                "class": row["class"],
                "volume_dice": row["dice"],
                "volume_hd95": row["hd95"],
                "ref_voxels": row["ref_voxels"],
                "pred_voxels": row["pred_voxels"],
                "n_slices": means["n_slices"],
                "slice_dice_mean": means["dice"],
                "slice_hd95_mean": means["hd95"],
            }
        )
    return rows


def _write_outputs(output_dir: Path, volume_rows: list[dict], slice_rows: list[dict], summary: dict) -> None:
    summary_rows = [
        {"protocol": protocol, "class": name, "metric": metric, **stats}
        for protocol in ("volume", "slice")
        for name, per_metric in summary[protocol].items()
        for metric, stats in per_metric.items()
    ]
    outputs = {
        "metrics_volume.csv": csv_text(volume_rows, ["case", "class", "dice", "hd95", "ref_voxels", "pred_voxels"]),
        "metrics_slices.csv": csv_text(slice_rows, ["case", "class", "slice", "dice", "hd95"]),
        "metrics_cases.csv": csv_text(
            _case_rows(volume_rows, slice_rows),
            ["case", "class", "volume_dice", "volume_hd95", "ref_voxels", "pred_voxels", "n_slices",
             "slice_dice_mean", "slice_hd95_mean"],
        ),
        "summary.csv": csv_text(summary_rows, ["protocol", "class", "metric", "mean", "std", "median", "count"]),
        "summary.json": json.dumps(summary, indent=2) + "\n",
    }
    for name, text in outputs.items():
        atomic_write_text(output_dir / name, text)
