"""nnU-Net's postprocessing on a validation folder: a planted far-off blob is removed and HD95 drops."""
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.evaluation.folders import evaluate_folders
from nnunet_sam_adapter.evaluation.postprocessing import postprocess_and_evaluate

DATASET_JSON = {"channel_names": {"0": "T2"}, "labels": {"background": 0, "tumor": 1}, "numTraining": 3,
                "file_ending": ".nii.gz"}
# The keys of nnU-Net's plans that postprocessing reads (reader/writer, label manager), as nnU-Net writes them.
PLANS = {"dataset_name": "Dataset999_PP", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "label_manager": "LabelManager", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
         "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "configurations": {}}


def _write(array, path):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path))


def _validation_folder(tmp_path):
    """gt_segmentations/ and fold_0/validation/ as nnU-Net writes them; every prediction = its reference plus a
    4x4x4 blob in the far corner (8% of the prediction, >5% of its surface: HD95 sees it)."""
    gt, validation = tmp_path / "gt_segmentations", tmp_path / "fold_0" / "validation"
    gt.mkdir(parents=True)
    validation.mkdir(parents=True)
    for i in range(3):
        reference = np.zeros((24, 40, 40), np.uint8)
        reference[4:11, 6 + i:18 + i, 6:18] = 1
        prediction = reference.copy()
        prediction[18:22, 33:37, 33:37] = 1
        _write(reference, gt / f"case_{i}.nii.gz")
        _write(prediction, validation / f"case_{i}.nii.gz")
    return gt, validation


def test_postprocessing_removes_far_off_blob_and_hd95_drops(tmp_path, monkeypatch):
    """Through the benchmark's hook: the run's validation folder as nnU-Net leaves it (plans.json and dataset.json
    next to fold_0), then the raw and the postprocessed rows of the tables."""
    import json
    from types import SimpleNamespace

    from nnunet_sam_adapter import paths
    from nnunet_sam_adapter.reporting.tables import TABLE1_METHODS, metric_rows
    from nnunet_sam_adapter.evaluation.postprocessing import benchmark_postprocessing, postprocessed_record

    gt, validation = _validation_folder(tmp_path)
    (tmp_path / "plans.json").write_text(json.dumps(PLANS))
    (tmp_path / "dataset.json").write_text(json.dumps(DATASET_JSON))
    monkeypatch.setattr(paths, "nnunet_dirs", lambda dataset: ("Dataset999_PP", tmp_path, tmp_path / "results"))
    before = {p.name: p.read_bytes() for p in validation.iterdir()}
    raw = evaluate_folders(gt, validation, tmp_path / "eval_raw", dataset_json=DATASET_JSON, show_progress=False)
    run = SimpleNamespace(run_dir=str(tmp_path / "fold_0"), validation_dir=str(validation),
                          evaluation_dir=str(tmp_path / "eval_raw"))
    entry = benchmark_postprocessing(run, SimpleNamespace(dataset="999", num_processes=1))

    assert entry["steps"] and entry["steps"][0].startswith("remove_all_but_largest_component_from_segmentation")
    raw_tumor, pp_tumor = raw["volume"]["tumor"], entry["summary"]["volume"]["tumor"]
    assert raw_tumor["hd95"]["mean"] > 15  # the blob is ~25 mm from the tumour
    assert pp_tumor["hd95"]["mean"] == 0.0 and pp_tumor["dice"]["mean"] == 1.0
    assert raw_tumor["dice"]["mean"] < 0.97
    # nnU-Net's choice is kept for nnUNetv2_apply_postprocessing; the run's folder is untouched.
    assert (tmp_path / "eval_raw" / "postprocessed" / "nnunet_postprocessing" / "postprocessing.pkl").is_file()
    assert {p.name: p.read_bytes() for p in validation.iterdir()} == before

    record = {"method": "ours", "label": "Ours", "budget": None, "summary": raw,
              "extra": {"nnunet_sam_adapter.evaluation.postprocessing.benchmark_postprocessing": entry}}
    results = {"methods": {"ours": record, "ours_pp": postprocessed_record(record)}}
    rows = {row["method"]: row for row in metric_rows(results, TABLE1_METHODS)}
    assert list(rows) == ["ours", "ours_pp"]
    assert rows["ours"]["hd95_mm_volume_mean"] > 15 and rows["ours_pp"]["hd95_mm_volume_mean"] == 0.0
    assert "postprocessing" in rows["ours_pp"]["label"]


@pytest.mark.slow  # nnU-Net's spawn pools: ~1-2 min on a loaded 2-core machine
def test_postprocessing_keeps_raw_predictions_when_removal_hurts(tmp_path):
    """A second true tumour component: keeping only the largest would lose it, so nnU-Net chooses nothing."""
    gt, validation = _validation_folder(tmp_path)
    for path in gt.iterdir():  # the "blob" is a real second lesion in every reference
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        reference[18:22, 33:37, 33:37] = 1
        _write(reference, path)
    result = postprocess_and_evaluate(validation, gt, PLANS, DATASET_JSON, tmp_path / "eval_pp")
    assert result["steps"] == []
    assert result["summary"]["volume"]["tumor"]["dice"]["mean"] == 1.0
