"""`nnUNetv2_sam_evaluate` / `evaluate_folders` on tiny NIfTI folders: outputs, class sources, errors."""
import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.cli.evaluate import main
from nnunet_sam_adapter.evaluation.folders import EvaluationError, evaluate_folders

SPACING_XYZ = (0.5, 1.0, 2.0)  # SimpleITK order; numpy (z, y, x) spacing is (2.0, 1.0, 0.5)
REGION_DATASET_JSON = {
    "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
    "labels": {"background": 0, "whole tumor": [1, 2], "enhancing tumor": 2},
    "regions_class_order": [1, 2],
    "numTraining": 2,
    "file_ending": ".nii.gz",
}


def write_label_map(path: Path, array: np.ndarray, spacing=SPACING_XYZ, origin=(0.0, 0.0, 0.0), direction=None):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def reference_case() -> np.ndarray:
    """(z, y, x) = (12, 16, 16): label 1 cube z 2..9, label 2 core z 4..7."""
    labels = np.zeros((12, 16, 16), dtype=np.uint8)
    labels[2:10, 4:12, 4:12] = 1
    labels[4:8, 6:10, 6:10] = 2
    return labels


@pytest.fixture
def folders(tmp_path):
    """case_a: perfect prediction; case_b: prediction shifted by 2 voxels along x (0.5 mm each)."""
    ref, pred = tmp_path / "labelsTr", tmp_path / "pred"
    labels = reference_case()
    write_label_map(ref / "case_a.nii.gz", labels)
    write_label_map(pred / "case_a.nii.gz", labels)
    write_label_map(ref / "case_b.nii.gz", labels)
    write_label_map(pred / "case_b.nii.gz", np.roll(labels, 2, axis=2))
    return ref, pred


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def console_script() -> str:
    script = Path(sys.executable).parent / "nnUNetv2_sam_evaluate"
    found = str(script) if script.exists() else shutil.which("nnUNetv2_sam_evaluate")
    if found is None:
        pytest.skip("console script nnUNetv2_sam_evaluate is not installed (pip install -e .)")
    return found


def test_console_script_writes_all_outputs(folders):
    ref, pred = folders
    (pred / "dataset.json").write_text(json.dumps(REGION_DATASET_JSON))  # as nnUNetv2_predict writes it
    inputs_before = digest(ref), digest(pred)
    result = subprocess.run(
        [console_script(), "-ref", str(ref), "-pred", str(pred), "-np", "2"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "whole tumor" in result.stdout and "enhancing tumor" in result.stdout and "Dice (%)" in result.stdout
    assert (digest(ref), digest(pred)) == inputs_before  # inputs are only read

    out = pred / "sam_evaluation"
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics_cases.csv", "metrics_slices.csv", "metrics_volume.csv", "summary.csv", "summary.json",
    ]
    volume = {(r["case"], r["class"]): r for r in read_csv(out / "metrics_volume.csv")}
    assert len(volume) == 4
    assert float(volume["case_a", "whole tumor"]["dice"]) == pytest.approx(1.0)
    # whole tumour: an 8-voxel cube shifted by 2 along x -> Dice 6/8, HD95 2 * 0.5 mm
    assert float(volume["case_b", "whole tumor"]["dice"]) == pytest.approx(6 / 8)
    assert float(volume["case_b", "whole tumor"]["hd95"]) == pytest.approx(1.0)
    assert float(volume["case_b", "enhancing tumor"]["dice"]) == pytest.approx(2 / 4)
    assert int(volume["case_b", "whole tumor"]["ref_voxels"]) == 8 * 8 * 8

    slices = read_csv(out / "metrics_slices.csv")
    assert len(slices) == 2 * (8 + 4)  # per case: 8 whole-tumour slices and 4 enhancing-tumour slices
    cases = {(r["case"], r["class"]): r for r in read_csv(out / "metrics_cases.csv")}
    assert int(cases["case_b", "whole tumor"]["n_slices"]) == 8
    assert float(cases["case_b", "whole tumor"]["slice_hd95_mean"]) == pytest.approx(1.0)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == ["case_a", "case_b"]
    assert summary["volume"]["whole tumor"]["dice"]["mean"] == pytest.approx((1 + 6 / 8) / 2)
    assert summary["slice"]["whole tumor"]["dice"]["count"] == 16
    assert summary["slice"]["whole tumor"]["hd95"]["median"] == pytest.approx(0.5)
    summary_rows = read_csv(out / "summary.csv")
    assert len(summary_rows) == 2 * 2 * 2  # protocols x classes x metrics

    # the parallel console run matches a serial in-process run, written elsewhere
    serial = evaluate_folders(ref, pred, output_dir=pred.parent / "serial", show_progress=False)
    assert serial == summary
    for name in ("metrics_volume.csv", "metrics_slices.csv", "metrics_cases.csv", "summary.csv"):
        assert (out / name).read_text() == (pred.parent / "serial" / name).read_text()


def test_rerun_is_idempotent(folders):
    ref, pred = folders
    evaluate_folders(ref, pred, show_progress=False)
    first = digest(pred / "sam_evaluation")
    evaluate_folders(ref, pred, show_progress=False)
    assert digest(pred / "sam_evaluation") == first
    assert not [p for p in (pred / "sam_evaluation").iterdir() if p.name.startswith(".")]  # no temp files left


def test_classes_from_references_without_dataset_json(folders, tmp_path):
    ref, pred = folders
    summary = evaluate_folders(ref, pred, output_dir=tmp_path / "out", show_progress=False)
    assert summary["classes"] == {"label_1": 1, "label_2": 2}
    assert summary["volume"]["label_2"]["dice"]["count"] == 2


def test_djfile_gives_classes_and_file_ending(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    labels = reference_case()
    write_label_map(ref / "c1.nrrd", labels)
    write_label_map(pred / "c1.nrrd", labels)
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({**REGION_DATASET_JSON, "file_ending": ".nrrd"}))
    main(["-ref", str(ref), "-pred", str(pred), "-o", str(tmp_path / "out"), "-djfile", str(dataset_json)])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cases"] == ["c1"] and list(summary["classes"]) == ["whole tumor", "enhancing tumor"]
    assert summary["volume"]["enhancing tumor"]["dice"]["mean"] == pytest.approx(1.0)


def test_ignore_label_voxels_do_not_count(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    labels = reference_case()
    labels[0, :4, :4] = 3  # "ignore" in the reference
    prediction = reference_case()
    prediction[0, :4, :4] = 1  # a false positive inside the ignored voxels
    write_label_map(ref / "c1.nii.gz", labels)
    write_label_map(pred / "c1.nii.gz", prediction)
    dataset = {"labels": {"background": 0, "tumour": 1, "core": 2, "ignore": 3}, "file_ending": ".nii.gz"}
    summary = evaluate_folders(ref, pred, tmp_path / "out", dataset_json=dataset, show_progress=False)
    assert summary["volume"]["tumour"]["dice"]["mean"] == pytest.approx(1.0)
    assert list(summary["classes"]) == ["tumour", "core"]


def run_cli_expecting_error(capsys, ref: Path, pred: Path, *extra: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["-ref", str(ref), "-pred", str(pred), *extra])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_missing_prediction_is_an_error(folders, capsys):
    ref, pred = folders
    (pred / "case_b.nii.gz").unlink()
    message = run_cli_expecting_error(capsys, ref, pred)
    assert "reference but no prediction" in message and str(pred / "case_b.nii.gz") in message


def test_extra_prediction_is_an_error_unless_allowed(folders, capsys, tmp_path):
    ref, pred = folders
    write_label_map(pred / "case_c.nii.gz", reference_case())
    message = run_cli_expecting_error(capsys, ref, pred)
    assert "no reference" in message and str(ref / "case_c.nii.gz") in message
    summary = evaluate_folders(ref, pred, tmp_path / "out", allow_missing=True, show_progress=False)
    assert summary["cases"] == ["case_a", "case_b"]


def test_named_cases_score_only_those_and_each_must_exist(folders, tmp_path):
    """One fold's cases in a folder that also holds other folds' predictions."""
    ref, pred = folders
    write_label_map(ref / "case_c.nii.gz", reference_case())
    write_label_map(pred / "case_c.nii.gz", np.zeros((12, 16, 16)))  # another fold's, scores 0
    summary = evaluate_folders(ref, pred, tmp_path / "out", cases=["case_a", "case_b"], show_progress=False)
    assert summary["cases"] == ["case_a", "case_b"] and summary["volume"]["label_1"]["dice"]["count"] == 2
    with pytest.raises(EvaluationError, match="case_d"):
        evaluate_folders(ref, pred, tmp_path / "out2", cases=["case_a", "case_d"], show_progress=False)


@pytest.mark.parametrize(
    "change, expected",
    [
        (dict(array=np.zeros((12, 16, 17))), "size"),
        (dict(spacing=(0.5, 1.0, 2.5)), "spacing"),
        (dict(origin=(0.0, 3.0, 0.0)), "origin"),
        (dict(direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)), "direction"),
    ],
)
def test_geometry_mismatch_is_an_error(folders, capsys, change, expected):
    ref, pred = folders
    array = change.pop("array", reference_case())
    write_label_map(pred / "case_b.nii.gz", array, **change)
    message = run_cli_expecting_error(capsys, ref, pred)
    assert f"case case_b: prediction {pred / 'case_b.nii.gz'} has {expected}" in message
    assert str(ref / "case_b.nii.gz") in message


def test_geometry_within_tolerance_is_accepted(folders, tmp_path):
    ref, pred = folders
    write_label_map(pred / "case_b.nii.gz", reference_case(), spacing=(0.5, 1.0, 2.0 + 1e-6), origin=(1e-5, 0, 0))
    summary = evaluate_folders(ref, pred, tmp_path / "out", show_progress=False)
    assert summary["volume"]["label_1"]["dice"]["mean"] == pytest.approx(1.0)


def test_unreadable_file_is_an_error(folders, capsys):
    ref, pred = folders
    (pred / "case_a.nii.gz").write_bytes(b"not a nifti file")
    message = run_cli_expecting_error(capsys, ref, pred)
    assert f"case case_a: cannot read prediction file {pred / 'case_a.nii.gz'}" in message


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(EvaluationError, match="reference folder .* does not exist"):
        evaluate_folders(tmp_path / "nope", tmp_path, show_progress=False)
