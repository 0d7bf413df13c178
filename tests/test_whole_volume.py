"""Whole-volume prediction time (`nnUNetv2_sam_speed --whole-volume`, issue #21): nnU-Net's own
`nnUNetv2_predict` on one volume per row, and the split of its time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from console import fails, tree_hashes
from nnunet_sam_adapter.cli.speed import main as speed_main
from nnunet_sam_adapter.speed.report import performance_page
from nnunet_sam_adapter.speed.whole_volume import (parse_row, run_whole_volume_benchmark,
                                                    whole_volume_markdown, write_whole_volume_outputs)
from planned_dataset import DATASET_NAME


def _use_env(monkeypatch, env: dict) -> None:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, env[name])


def test_rows_are_method_colon_dataset(capsys):
    assert parse_row("ours:601").key == "ours@601" and parse_row("ours:601").command == "nnUNetv2_predict"
    batched = parse_row("ours:601:nnUNetv2_sam_predict")
    assert batched.command == "nnUNetv2_sam_predict" and batched.key == "ours@601@nnUNetv2_sam_predict"
    for bad, said in (("ours", "METHOD:DATASET"), ("ours:", "METHOD:DATASET"), ("nope:601", "unknown method"),
                      ("ours:601:predict", "unknown command")):
        with pytest.raises(ValueError, match=said):
            parse_row(bad)
    assert "unknown method 'nope'" in fails(capsys, speed_main, "--whole-volume", "nope:601")


def test_missing_dataset_is_one_line(tmp_path, monkeypatch, capsys):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    line = fails(capsys, speed_main, "--whole-volume", "nnunet_2d:977", "-o", tmp_path / "out")
    assert "dataset 977" in line and "convert and plan it first" in line


@pytest.mark.slow
def test_whole_volume_times_nnunet_predict_and_splits_the_time(planned_dataset, tmp_path, monkeypatch):
    env = planned_dataset.env_with_results("whole_volume")
    _use_env(monkeypatch, env)
    raw = Path(env["nnUNet_raw"]) / DATASET_NAME
    before = tree_hashes(raw)
    rows = [parse_row(f"ours:{planned_dataset.dataset_id}"), parse_row(f"nnunet_2d:{planned_dataset.dataset_id}")]
    report = run_whole_volume_benchmark(rows, tmp_path / "out", mirroring_modes=(False,), progress=lambda *_: None)

    assert tree_hashes(raw) == before  # the dataset's images are read, never changed
    first_case = sorted(raw.glob("imagesTr/*_0000.nii.gz"))[0]
    case = first_case.name[: -len("_0000.nii.gz")]
    shape = sitk.ReadImage(str(first_case)).GetSize()
    for result in report["rows"]:
        assert result["case"] == case and tuple(result["image_size_xyz"]) == shape
        assert result["no_mirroring"]["wall_s"] > 0 and result["no_mirroring"]["peak_mb"] > 100
        assert "mirroring" not in result
        prediction = tmp_path / "out" / "predictions" / result["row"].replace("@", "_") / "no_mirroring"
        assert sitk.ReadImage(str(prediction / f"{case}.nii.gz")).GetSize() == shape  # nnU-Net's export ran
        profile = result["profile"]
        # 12 slices, one tile per slice: the 2d network runs once per slice (batch 1: nnU-Net's predictor)
        assert profile["network_forwards"] == 12 and profile["cases"] == 1
        assert profile["encoder_s"] > 0 and profile["decoder_s"] > 0 and profile["preprocessing_s"] > 0
        parts = sum(profile[k] for k in ("preprocessing_s", "encoder_s", "decoder_s", "sliding_window_s", "export_s"))
        assert parts == pytest.approx(profile["total_s"], rel=1e-6)
    assert report["reference"] == f"nnunet_2d@{planned_dataset.dataset_id}"
    for checkpoint in Path(env["nnUNet_results"]).glob("*/*/fold_0/checkpoint_final.pth"):
        # nnU-Net's predictor mirrors only along the axes the checkpoint names (set while training starts)
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        assert tuple(saved["inference_allowed_mirroring_axes"]) == (0, 1), checkpoint

    write_whole_volume_outputs(report, tmp_path / "out", tmp_path / "docs" / "performance.md")
    page = (tmp_path / "docs" / "performance.md").read_text()
    assert "## Whole-volume prediction" in page and "| nnU-Net 2d | nnUNetPlans | 2d, 64x48 |" in page
    assert (tmp_path / "docs" / "performance_volume.json").is_file()
    assert "## CPU\n\nNot run yet" in page  # the other sections keep their own reports


def test_page_and_ratios_from_a_saved_report():
    row = {"label": "x", "plans": "nnUNetSAMPlans", "backbone": "vit_b", "configuration": "2d", "patch_size": [256, 256],
           "row": "ours@1", "method": "ours", "case": "c", "image_size_xyz": [240, 240, 155],
           "no_mirroring": {"wall_s": 30.0, "peak_mb": 3000.0}}
    reference = {**row, "label": "nnU-Net 2d", "plans": "nnUNetPlans", "backbone": None, "row": "nnunet_2d@1",
                 "method": "nnunet_2d", "no_mirroring": {"wall_s": 20.0, "peak_mb": 1500.0}}
    report = {"environment": {"cpu": "cpu", "cpu_cores": 2, "torch": "t", "nnunetv2": "n", "date": "d"},
              "rows": [row, reference], "reference": "nnunet_2d@1", "total_wall_s": 60.0}
    table = whole_volume_markdown(report)
    assert "| x | nnUNetSAMPlans (vit_b) | 2d, 256x256 | 30.0 | 1.50 | 3000 | not run |" in table
    assert "| nnU-Net 2d | nnUNetPlans | 2d, 256x256 | 20.0 | 1.00 | 1500 |" in table
    assert "Not run yet" in performance_page(None, None, None).split("## Whole-volume")[1]


def test_a_failing_row_keeps_the_rows_measured_before_it(tmp_path, monkeypatch):
    """A long run that fails on its 2nd row keeps the 1st in OUT/whole_volume.json (for --append)."""
    from nnunet_sam_adapter.speed import whole_volume

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))

    def measure(row, *_args):
        if row.method == "ours":
            raise whole_volume.WholeVolumeError(f"row {row.key}: nnUNetv2_predict failed")
        return {"row": row.key, "method": row.method}

    monkeypatch.setattr(whole_volume, "measure_row", measure)
    with pytest.raises(whole_volume.WholeVolumeError, match="kept in .*whole_volume.json"):
        run_whole_volume_benchmark([parse_row("nnunet_2d:1"), parse_row("ours:1")], tmp_path, progress=lambda *_: None)
    kept = json.loads((tmp_path / "whole_volume.json").read_text())
    assert [r["row"] for r in kept["rows"]] == ["nnunet_2d@1"] and kept["reference"] == "nnunet_2d@1"


def test_a_stopped_run_keeps_every_row_it_finished(tmp_path, monkeypatch):
    """Interrupted during its 2nd row (Ctrl-C, SIGTERM, a killed job: no exception of ours to catch), the run has
    already saved the 1st row in OUT/whole_volume.json."""
    from nnunet_sam_adapter.speed import whole_volume

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))

    def measure(row, *_args):
        if row.method == "ours":
            raise KeyboardInterrupt
        return {"row": row.key, "method": row.method}

    monkeypatch.setattr(whole_volume, "measure_row", measure)
    with pytest.raises(KeyboardInterrupt):
        run_whole_volume_benchmark([parse_row("nnunet_2d:1"), parse_row("ours:1")], tmp_path, progress=lambda *_: None)
    kept = json.loads((tmp_path / "whole_volume.json").read_text())
    assert [r["row"] for r in kept["rows"]] == ["nnunet_2d@1"]


def test_a_truncated_input_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """nnU-Net's reader predicts on a cut .nii.gz without a word; the timing refuses it before predicting."""
    import numpy as np

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    images = tmp_path / "nnUNet_raw" / "Dataset978_Cut" / "imagesTr"
    images.mkdir(parents=True)
    (images.parent / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "FLAIR"}, "labels": {"background": 0, "tumor": 1}, "numTraining": 1,
        "file_ending": ".nii.gz"}))
    rng = np.random.default_rng(0)
    for channel in (0, 1):
        sitk.WriteImage(sitk.GetImageFromArray(rng.random((12, 64, 48)).astype(np.float32)),
                        str(images / f"case_{channel:04d}.nii.gz"))
    flair = images / "case_0001.nii.gz"
    flair.write_bytes(flair.read_bytes()[: flair.stat().st_size // 2])
    line = fails(capsys, speed_main, "--whole-volume", "nnunet_2d:978", "-o", tmp_path / "out")
    assert str(flair) in line and "truncated" in line
