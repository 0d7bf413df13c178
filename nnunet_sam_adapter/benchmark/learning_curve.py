"""The learning-curve points of one benchmark run: its checkpoints inside the run, validated and scored.

An extra evaluation of a run (`RunSpec.evaluations`, added by `--curve-images`): for each requested point
N below the run's own budget, the checkpoint the runner kept after N training images (`runner.curve_checkpoint`)
is loaded into the run's trainer, nnU-Net validates the fold's validation cases with it into
RUN_DIR/learning_curve/images_N/validation, and those predictions are scored raw and after nnU-Net's
postprocessing (determined on them, as for the final row) into OUT/fold_F/evaluation/METHOD/learning_curve/
images_N[/postprocessed]. The run's final budget is the last point: its scores are the run's own rows.
Finished points are reused (their predictions are newer than their checkpoint).
"""

from __future__ import annotations

import time
from pathlib import Path

from nnunet_sam_adapter.atomic_io import atomic_write_json
from nnunet_sam_adapter.benchmark.layout import load_plans
from nnunet_sam_adapter.benchmark.runner import (CURVE_POINTS, PSEUDO_DICE, curve_checkpoint, make_trainer,
                                                 validate_with_trainer, validation_complete)
from nnunet_sam_adapter.methods import METHODS
from nnunet_sam_adapter.paths import load_json, nnunet_dirs, validation_cases
from nnunet_sam_adapter.reporting.learning_curves import LEARNING_CURVE_EVALUATION  # noqa: F401 (this function's key)
from nnunet_sam_adapter.training.budget import images_seen, logged_epoch_seconds

CURVE_FOLDER = "learning_curve"
# a point's validation seconds and whether it mirrored (a record as validation_complete reads it), in its folder
POINT_TIMING = "timing.json"


def _scores(summary: dict, evaluation_dir, **extra) -> dict:
    return {"evaluation_dir": str(evaluation_dir), **extra,
            "summary": {"volume": summary["volume"], "slice": summary["slice"], "classes": summary["classes"],
                        "cases": sorted(summary["cases"])}}


def _validate_point(result, spec, images: int, checkpoint: Path, folder: Path, cases: list[str],
                    file_ending: str) -> float | None:
    """nnU-Net's validation with the checkpoint into FOLDER/validation, its seconds and mirroring recorded in
    FOLDER/timing.json at once; None when already there (predicted after the checkpoint, with spec.mirroring)."""
    import torch

    validation, timing = folder / "validation", folder / POINT_TIMING
    done = (validation_complete(folder, cases, file_ending, load_json(timing), spec.mirroring)
            and (validation / "summary.json").stat().st_mtime > checkpoint.stat().st_mtime)
    if done:
        return None
    method = METHODS[spec.method]
    _, preprocessed, _ = nnunet_dirs(spec.dataset)
    trainer = make_trainer(method, load_plans(preprocessed, method), preprocessed, spec.fold,
                           torch.device(spec.device), spec.seed)
    trainer.load_checkpoint(str(checkpoint))
    trainer.output_folder = str(folder)  # nnU-Net validates into OUTPUT_FOLDER/validation
    seconds = validate_with_trainer(trainer, spec.mirroring)
    atomic_write_json(timing, {"validation_seconds": seconds, "validation_mirroring": spec.mirroring})
    return seconds


def benchmark_learning_curve(result, spec) -> dict:
    """{'final_images', 'final_train_seconds', 'pseudo_dice', 'images_per_epoch', 'points': {N: point}}; a point is {'images', 'epochs',
    'train_seconds', 'validation_seconds', 'raw': scores, 'pp': scores} or {'error': why}."""
    from nnunet_sam_adapter.evaluation.folders import evaluate_folders
    from nnunet_sam_adapter.evaluation.postprocessing import BENCHMARK_EVALUATION, postprocess_and_evaluate

    run_dir = Path(result.run_dir)
    _, preprocessed, _ = nnunet_dirs(spec.dataset)
    dataset_json = load_json(preprocessed / "dataset.json")
    cases = validation_cases(preprocessed, spec.fold)
    final = images_seen(result.budget)
    saved = load_json(run_dir / CURVE_POINTS) or {}
    trained = load_json(run_dir / PSEUDO_DICE) or {}
    postprocess = BENCHMARK_EVALUATION in spec.evaluations
    points = {}
    for n in sorted(int(n) for n in spec.curve_images):
        if final is None or n >= final:
            continue  # the run's own rows are its final point
        entry, checkpoint = saved.get(str(n)), curve_checkpoint(run_dir, n)
        if not entry or not checkpoint.is_file():
            points[str(n)] = {"error": f"no checkpoint after {n} training images in {run_dir} (the run was trained "
                                       f"without this --curve-images point: --retrain trains it with it)"}
            continue
        folder = run_dir / CURVE_FOLDER / f"images_{n}"
        start = time.perf_counter()
        seconds = _validate_point(result, spec, n, checkpoint, folder, cases, dataset_json["file_ending"])
        evaluation_dir = spec.layout.evaluation_dir(spec.method, spec.fold) / CURVE_FOLDER / f"images_{n}"
        raw = evaluate_folders(preprocessed / "gt_segmentations", folder / "validation", evaluation_dir,
                               dataset_json=dataset_json, num_processes=spec.num_processes, allow_missing=True,
                               show_progress=False)
        point = {**entry, "validation_seconds": seconds if seconds is not None else
                 (load_json(folder / POINT_TIMING) or {}).get("validation_seconds"),
                 "raw": _scores(raw, evaluation_dir)}
        if postprocess:
            model_dir = run_dir.parent
            done = postprocess_and_evaluate(folder / "validation", preprocessed / "gt_segmentations",
                                            model_dir / "plans.json", model_dir / "dataset.json",
                                            evaluation_dir / "postprocessed", spec.num_processes)
            point["pp"] = _scores(done["summary"], evaluation_dir / "postprocessed", steps=done["steps"])
        point["evaluation_seconds"] = time.perf_counter() - start
        points[str(n)] = point
    # the final point's training seconds on the points' clock (nnU-Net's epoch times), not the run's wall time
    final_seconds = (saved.get(str(final)) or {}).get("train_seconds") or logged_epoch_seconds(run_dir)
    return {"final_images": final, "final_train_seconds": final_seconds, "pseudo_dice": trained.get("mean_fg_dice"),
            "images_per_epoch": trained.get("images_per_epoch"), "points": points}
