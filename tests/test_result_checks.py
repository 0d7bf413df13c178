"""Issue 19, classes 2, 3 and 5 of docs/reliability.md's matrix: labels a reference never has, result files
cut short under `--aggregate-only`, and an nnU-Net input folder with a channel file missing.

Each test runs the command's ``main`` in process on small hand-written files, asserts the exit code and the
one line naming the case (or run) and the file, and that the inputs are byte-identical afterwards."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.cli import evaluate as evaluate_cli
from console import fails, tree_hashes



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


# ------------------------------------------------------------------ class 3: result files cut, --aggregate-only

# (method, fold) -> {case: (volume dice, volume hd95 mm)}; ours/fold_0's last case measured 89 mm.
SCORES = {("ours", 0): {"c1": (0.91, 3.5), "c2": (0.42, 89.25)}, ("ours", 1): {"c3": (0.88, 4.0), "c4": (0.80, 6.5)},
          ("nnunet_2d", 0): {"c1": (0.85, 5.0), "c2": (0.70, 9.0)}, ("nnunet_2d", 1): {"c3": (0.80, 7.0),
                                                                                      "c4": (0.75, 8.5)}}
DATASET = "Dataset917_ResultCheck"


@pytest.fixture
def benchmark_out(tmp_path, monkeypatch):
    """nnU-Net folders with plans and splits for 2 folds, and the finished runs of ours and nnunet_2d on both,
    written as the benchmark writes them (evaluate_folders' CSVs and summary, the run record)."""
    from nnunet_sam_adapter.atomic_io import atomic_write_json, atomic_write_text, csv_text
    from nnunet_sam_adapter.benchmark import pipeline
    from nnunet_sam_adapter.benchmark.layout import OutputLayout
    from nnunet_sam_adapter.evaluation.metrics import summarize

    for env in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(env, str(tmp_path / env))
        (tmp_path / env / DATASET).mkdir(parents=True)
    preprocessed = tmp_path / "nnUNet_preprocessed" / DATASET
    (preprocessed / "dataset.json").write_text(json.dumps({**ONE_LABEL_DATASET, "numTraining": 4}))
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": ["c3", "c4"], "val": ["c1", "c2"]},
                                                                {"train": ["c1", "c2"], "val": ["c3", "c4"]}]))
    for plans in ("nnUNetSAMPlans", "nnUNetPlans"):
        (preprocessed / f"{plans}.json").write_text(json.dumps({"plans_name": plans, "configurations": {"2d": {}}}))
    # Table 3 builds every network from the plans: not what these tests are about.
    monkeypatch.setattr(pipeline, "_base_results", lambda context, dataset, folds, cases, methods=(): {
        "dataset": context["dataset"], "fold": folds[0], "folds": folds, "device": "cpu", "validation_cases": cases,
        "requested_budget": None, "budget_rule": context["budget"].rule(), "test_time_mirroring": True,
        "sam": None, "parameters": {}})
    out = tmp_path / "out"
    layout = OutputLayout(out)
    for (method, fold), cases in SCORES.items():
        folder = layout.evaluation_dir(method, fold)
        volume = [{"case": c, "class": "tumor", "dice": d, "hd95": h, "ref_voxels": 100, "pred_voxels": 90}
                  for c, (d, h) in cases.items()]
        slices = [{"case": c, "class": "tumor", "slice": z, "dice": d, "hd95": h / 2}
                  for c, (d, h) in cases.items() for z in (3, 4)]
        per_case = [{"case": c, "class": "tumor", "volume_dice": d, "volume_hd95": h, "ref_voxels": 100,
                     "pred_voxels": 90, "n_slices": 2, "slice_dice_mean": d, "slice_hd95_mean": h / 2}
                    for c, (d, h) in cases.items()]
        atomic_write_text(folder / "metrics_volume.csv", csv_text(volume, list(volume[0])))
        atomic_write_text(folder / "metrics_slices.csv", csv_text(slices, list(slices[0])))
        atomic_write_text(folder / "metrics_cases.csv", csv_text(per_case, list(per_case[0])))
        atomic_write_json(layout.run_record(method, fold), {
            "method": method, "label": method, "trainer": "T", "plans": "P", "configuration": "2d", "fold": fold,
            "run_dir": str(tmp_path / "run"), "status": "trained", "budget": {"epochs": 2, "iterations": 4,
                                                                             "batch_size": 2},
            "train_seconds": 1.0, "validation_seconds": 1.0, "validation_dir": str(tmp_path / "run"),
            "evaluation_dir": str(folder), "extra": {},
            "summary": {"volume": summarize(volume), "slice": summarize(slices), "classes": {"tumor": 1},
                        "cases": sorted(cases)}})
    return out


def aggregate(capsys, out: Path, code: int):
    from nnunet_sam_adapter.cli import benchmark as benchmark_cli

    argv = ["-d", "917", "--methods", "ours", "nnunet_2d", "--folds", "0", "1", "-o", str(out), "--aggregate-only"]
    with pytest.raises(SystemExit) as exit_info:
        benchmark_cli.main(argv)
    assert exit_info.value.code == code
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip() and "%|" not in line]
    assert "Traceback" not in captured.err, captured.err
    return captured.out, errors, json.loads((out / "crossval" / "results.json").read_text())


def test_intact_results_aggregate(benchmark_out, capsys):
    stdout, errors, results = aggregate(capsys, benchmark_out, 0)
    assert errors == [] and "Missing" not in stdout
    pooled = results["methods"]["ours"]["summary"]["volume"]["tumor"]["hd95"]
    assert pooled["mean"] == pytest.approx((3.5 + 89.25 + 4.0 + 6.5) / 4)


def _cut_record(out: Path) -> Path:
    path = out / "fold_0" / "runs" / "ours.json"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _cut_inside_last_row(out: Path) -> Path:  # "c2,tumor,0.42,89.25,100,90\n" -> "c2,tumor,0.42,8"
    path = out / "fold_0" / "evaluation" / "ours" / "metrics_volume.csv"
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"89.25") + 1])
    return path


def _lose_last_row(out: Path) -> Path:  # cut at a line boundary: a whole case gone
    path = out / "fold_0" / "evaluation" / "ours" / "metrics_volume.csv"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    return path


def _change_a_digit(out: Path) -> Path:  # complete rows, one number differs from what the run measured
    path = out / "fold_0" / "evaluation" / "ours" / "metrics_slices.csv"
    path.write_bytes(path.read_bytes().replace(b"44.625", b"4.625", 1))
    return path


@pytest.mark.parametrize("damage, problem", [(_cut_record, "not valid JSON"),
                                             (_cut_inside_last_row, "ends inside a row"),
                                             (_lose_last_row, "1 tumor rows: expected 2"),
                                             (_change_a_digit, "mean tumor hd95")],
                         ids=["run record cut", "metrics csv cut in a row", "metrics csv row lost",
                              "metrics csv digit changed"])
def test_damaged_result_file_is_refused_by_aggregate_only(benchmark_out, capsys, damage, problem):
    path = damage(benchmark_out)
    before = tree_hashes(benchmark_out / "fold_0"), tree_hashes(benchmark_out / "fold_1")
    stdout, errors, results = aggregate(capsys, benchmark_out, 1)
    assert len(errors) == 1, errors
    line = errors[0]
    assert line.startswith("nnUNetv2_sam_benchmark: error: 1 run(s) failed (ours/fold_0: damaged: ")
    assert f"{path}: " in line and problem in line and "expected" in line
    assert f"Missing: ours/fold_0: damaged: {path}: " in stdout
    # never a number from the damaged file: ours is pooled from fold 1 alone; nnunet_2d from both folds
    ours = results["methods"]["ours"]
    assert ours["folds"] == [1] and ours["summary"]["volume"]["tumor"]["hd95"]["mean"] == pytest.approx(5.25)
    assert results["methods"]["nnunet_2d"]["folds"] == [0, 1]
    assert "ours" not in json.loads((benchmark_out / "fold_0" / "results.json").read_text())["methods"]
    after = tree_hashes(benchmark_out / "fold_0"), tree_hashes(benchmark_out / "fold_1")
    runs_and_evaluations = [{k: v for k, v in h.items() if k.startswith(("runs/", "evaluation/"))}
                            for h in (*before, *after)]
    assert runs_and_evaluations[:2] == runs_and_evaluations[2:]  # the result files read are never changed


def test_a_damaged_run_of_a_later_seed_is_named_with_its_seed(benchmark_out, capsys):
    """The failure names the run as the benchmark names it (METHOD/fold_F/seed_K), not seed 0's run."""
    from nnunet_sam_adapter.cli import benchmark as benchmark_cli

    for fold in ("fold_0", "fold_1"):
        shutil.copytree(benchmark_out / fold, benchmark_out / "seed_1" / fold)
    path = _cut_record(benchmark_out / "seed_1")
    argv = ["-d", "917", "--methods", "ours", "nnunet_2d", "--folds", "0", "1", "--seeds", "2", "-o",
            str(benchmark_out), "--aggregate-only"]
    with pytest.raises(SystemExit) as exit_info:
        benchmark_cli.main(argv)
    assert exit_info.value.code == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if "run(s) failed" in line]
    assert len(failed) == 1 and f"(ours/fold_0/seed_1: damaged: {path}: " in failed[0], failed


def test_status_names_a_damaged_run(benchmark_out, capsys):
    from nnunet_sam_adapter.cli import benchmark as benchmark_cli

    path = _cut_inside_last_row(benchmark_out)
    before = tree_hashes(benchmark_out)
    with pytest.raises(SystemExit) as exit_info:
        benchmark_cli.main(["-d", "917", "--methods", "ours", "nnunet_2d", "--folds", "0", "1", "-o",
                            str(benchmark_out), "--status"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    damaged = [i for i, line in enumerate(lines) if line.startswith("ours") and "fold 0  damaged" in line]
    assert damaged and f"error: {path}: ends inside a row" in lines[damaged[0] + 1]
    assert lines[-1] == "runs: 1 damaged, 3 finished"
    assert tree_hashes(benchmark_out) == before


def test_a_cross_validation_on_part_of_the_split_is_noted(benchmark_out, capsys):
    splits_file = benchmark_out.parent / "nnUNet_preprocessed" / DATASET / "splits_final.json"
    splits = json.loads(splits_file.read_text())
    splits_file.write_text(json.dumps([*splits, {"train": ["c1", "c2", "c3", "c4"], "val": ["c5"]}]))
    stdout, errors, _ = aggregate(capsys, benchmark_out, 0)
    assert "note: folds 0, 1 of splits_final.json (3 folds) validate 4 of 5 cases" in stdout and errors == []


def test_a_run_never_run_stays_missing(benchmark_out, capsys):
    (benchmark_out / "fold_0" / "runs" / "ours.json").unlink()
    stdout, errors, _ = aggregate(capsys, benchmark_out, 0)
    assert "Missing: ours/fold_0: not run" in stdout and errors == []


# ------------------------------------------------------------------ class 5: a case lacks a channel file

FOUR_CHANNELS = {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
                 "labels": {"background": 0, "tumor": 1}, "numTraining": 1, "file_ending": ".nii.gz"}


def _missing_channel(folder: Path) -> tuple[Path, str]:
    path = folder / "case_b_0003.nii.gz"
    path.unlink()
    return path, "missing channel 3 (FLAIR): file not found: expected one file per channel (_0000 T1, _0001 T1ce"


def _truncated_channel(folder: Path) -> tuple[Path, str]:
    path = folder / "case_b_0001.nii.gz"
    path.write_bytes(path.read_bytes()[:-200])
    return path, "T1ce is truncated or corrupt"


def _other_grid(folder: Path) -> tuple[Path, str]:
    path = folder / "case_b_0002.nii.gz"
    write_image(path, np.ones((8, 16, 16), dtype=np.float32), spacing=(1.0, 1.0, 2.0))
    return path, "T2 geometry differs from channel 0 (T1): spacing (1.0, 1.0, 2.0) vs T1 (1.0, 1.0, 1.0)"


@pytest.fixture
def input_folder(tmp_path):
    folder = tmp_path / "new_cases_nnunet"
    rng = np.random.default_rng(0)
    for case in ("case_a", "case_b", "case_c"):
        for channel in range(4):
            write_image(folder / f"{case}_{channel:04d}.nii.gz", rng.random((8, 16, 16)).astype(np.float32))
    (tmp_path / "dataset.json").write_text(json.dumps(FOUR_CHANNELS))
    return folder


def test_complete_input_folder_passes(input_folder, capsys):
    from nnunet_sam_adapter.cli import check_inputs

    check_inputs.main(["-i", str(input_folder), "-djfile", str(input_folder.parent / "dataset.json")])
    assert "3 case(s)" in capsys.readouterr().out


@pytest.mark.parametrize("damage", [_missing_channel, _truncated_channel, _other_grid],
                         ids=["missing channel", "truncated channel", "channel on another grid"])
def test_check_inputs_names_the_case_and_the_channel_file(input_folder, capsys, damage):
    from nnunet_sam_adapter.cli import check_inputs

    path, problem = damage(input_folder)
    before = tree_hashes(input_folder.parent)
    line = fails(capsys, check_inputs.main, "-i", input_folder, "-djfile", input_folder.parent / "dataset.json")
    assert line.startswith(f"nnUNetv2_sam_check_inputs: error: case case_b: {path}: "), line
    assert problem in line
    assert tree_hashes(input_folder.parent) == before


def test_check_inputs_finds_the_dataset_json_by_id(input_folder, capsys, monkeypatch, tmp_path):
    from nnunet_sam_adapter.cli import check_inputs

    for env in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(env, str(tmp_path / env))
        (tmp_path / env).mkdir()
    (tmp_path / "nnUNet_raw" / "Dataset918_Inputs").mkdir()
    (tmp_path / "nnUNet_raw" / "Dataset918_Inputs" / "dataset.json").write_text(json.dumps(FOUR_CHANNELS))
    path, problem = _missing_channel(input_folder)
    (input_folder / "case_c_0000.nii.gz").unlink()
    before = tree_hashes(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        check_inputs.main(["-i", str(input_folder), "-d", "918"])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"nnUNetv2_sam_check_inputs: error: case case_b: {path}: ")
    assert lines[1].startswith(f"nnUNetv2_sam_check_inputs: error: case case_c: {input_folder / 'case_c_0000.nii.gz'}")
    assert tree_hashes(tmp_path) == before
