"""Issue 19, classes 2, 3 and 5 of docs/reliability.md's matrix: labels a reference never has, result files
cut short under `--aggregate-only`, and an nnU-Net input folder with a channel file missing.

Each test runs the command's ``main`` in process on small hand-written files, asserts the exit code and the
one line naming the case (or run) and the file, and that the inputs are byte-identical afterwards."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.cli import evaluate as evaluate_cli


def tree_hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def fails(capsys, main, *argv, code=1) -> str:
    """Run a command's main, expect exit ``code`` and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # drop tqdm bars
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def write_image(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


# ------------------------------------------------------------------ class 2: labels the reference never has

ONE_LABEL_DATASET = {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "tumor": 1},
                     "numTraining": 1, "file_ending": ".nii.gz"}


@pytest.mark.parametrize("with_dataset_json", [True, False], ids=["dataset.json", "no dataset.json"])
def test_prediction_labels_outside_the_reference_set_are_refused(tmp_path, capsys, with_dataset_json):
    ref, pred = tmp_path / "labelsTr", tmp_path / "pred"
    reference = np.zeros((8, 16, 16), dtype=np.uint8)
    reference[2:6, 4:12, 4:12] = 1
    prediction = reference.copy()
    prediction[2:6, 4:8, 4:8] = 2
    prediction[2:6, 8:12, 8:12] = 3
    write_image(ref / "case_a.nii.gz", reference)
    write_image(pred / "case_a.nii.gz", reference)          # a good case first
    write_image(ref / "case_b.nii.gz", reference)
    write_image(pred / "case_b.nii.gz", prediction)         # labels 1-3, the dataset knows only 1
    extra = []
    if with_dataset_json:
        (tmp_path / "dataset.json").write_text(json.dumps(ONE_LABEL_DATASET))
        extra = ["-djfile", tmp_path / "dataset.json"]
    before = tree_hashes(tmp_path)
    line = fails(capsys, evaluate_cli.main, "-ref", ref, "-pred", pred, "-o", tmp_path / "out", *extra, code=2)
    assert line.startswith("nnUNetv2_sam_evaluate: error: case case_b: ")
    assert str(pred / "case_b.nii.gz") in line
    assert "label(s) [2, 3] outside the allowed set [0, 1]" in line
    assert ("dataset.json labels" if with_dataset_json else "labels found in the references") in line
    assert tree_hashes(tmp_path) == before                  # inputs byte-identical, no output written
    assert not (tmp_path / "out").exists()

