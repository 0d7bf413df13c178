"""nnUNetv2_sam_benchmark end to end on a tiny synthetic dataset (issue 4): two SAM methods + stock
nnU-Net 2d with debug-sized budgets write Tables 1-3 and the figures, and a second run reuses every
finished method instead of retraining it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from console import read_csv, run
from planned_dataset import DATASET_ID, DATASET_NAME

pytestmark = pytest.mark.slow

METHODS = ["ours", "early_fusion", "nnunet_2d"]
BUDGET = ["--epochs", "2", "--iterations", "3"]


@pytest.fixture(scope="module")
def benchmarked(planned_dataset, tmp_path_factory):
    """Run the benchmark once on the session's planned dataset; returns paths, env and the console output."""
    root = tmp_path_factory.mktemp("benchmark")
    env = planned_dataset.env_with_results("benchmark")
    out = root / "bench"
    command = ["nnUNetv2_sam_benchmark", "-d", DATASET_ID, "--methods", *METHODS, "-f", "0", *BUDGET,
               "-o", out, "-device", "cpu", "--no-mirroring", "--overlay-cases", "2"]
    first = run(command, env)
    return {"root": root, "env": env, "out": out, "command": command, "first": first}


@pytest.fixture
def in_benchmark_env(benchmarked, monkeypatch):
    """This process sees the benchmark's nnU-Net folders (for tests that call the runner in-process)."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer"):
        monkeypatch.setenv(name, str(benchmarked["env"][name]))


def test_writes_tables_figures_and_results(benchmarked):
    out = benchmarked["out"]
    for name in ("tables.md", "table1.csv", "table2.csv", "table3.csv", "metrics.png", "overlays.png",
                 "results.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    # every method's raw row and its row after nnU-Net's postprocessing (METHOD_pp)
    assert set(results["methods"]) == set(METHODS) | {f"{m}_pp" for m in METHODS}
    assert all(entry["status"] == "trained" for entry in results["methods"].values())
    assert all(entry["budget"]["epochs"] == 2 and entry["budget"]["iterations"] == 3
               for entry in results["methods"].values())
    # Every method was evaluated on the same validation cases of fold 0.
    cases = results["validation_cases"]
    assert cases
    for method in METHODS:
        evaluated = {row["case"] for row in read_csv(out / "evaluation" / method / "metrics_volume.csv")}
        assert evaluated == set(cases), method

    table1 = {row["method"]: row for row in read_csv(out / "table1.csv")}
    assert set(table1) == {"ours", "early_fusion", "ours_pp", "early_fusion_pp"}
    table2 = {row["method"] for row in read_csv(out / "table2.csv")}
    assert table2 == {"ours", "early_fusion", "nnunet_2d", "ours_pp", "early_fusion_pp", "nnunet_2d_pp"}
    for row in table1.values():  # numbers come from the evaluation of this run
        summary = results["methods"][row["method"]]["summary"]
        assert float(row["dice_pct_volume_mean"]) == pytest.approx(100 * summary["volume"]["tumor"]["dice"]["mean"],
                                                                   abs=1e-3)
        assert 0 <= float(row["dice_pct_slice_mean"]) <= 100
        assert float(row["hd95_mm_slice_mean"]) >= 0
        assert int(row["n_cases"]) == len(cases)

    # Table 3 covers every method whose network the plans can build, not only the trained ones.
    table3 = {row["method"]: row for row in read_csv(out / "table3.csv")}
    assert {"ours", "early_fusion", "T1", "T1ce", "T2", "FLAIR", "nnunet_2d", "swinunetr_2d", "unetr_2d"} <= set(table3)
    assert float(table3["nnunet_2d"]["percent"]) == pytest.approx(100.0)
    assert 0 < float(table3["ours"]["percent"]) < 100  # frozen encoder
    assert int(table3["ours"]["total"]) > int(table3["early_fusion"]["total"])  # + adapters and a second stem

    tables = (out / "tables.md").read_text()
    for heading in ("Table 1", "Table 2", "Table 3", "slice = the paper's protocol", "backbone tiny"):
        assert heading in tables


def test_second_run_reuses_finished_methods(benchmarked):
    results_root = Path(benchmarked["env"]["nnUNet_results"])
    checkpoints = sorted(results_root.glob(f"{DATASET_NAME}/*/fold_0/checkpoint_final.pth"))
    assert len(checkpoints) == len(METHODS)
    before = {path: path.stat().st_mtime_ns for path in checkpoints}

    second = run(benchmarked["command"], benchmarked["env"])
    results = json.loads((benchmarked["out"] / "results.json").read_text())
    assert all(entry["status"] == "reused" for entry in results["methods"].values())
    assert {path: path.stat().st_mtime_ns for path in checkpoints} == before
    assert "ours: reused" in second
    assert (benchmarked["out"] / "table1.csv").is_file()


def test_rerun_interrupted_while_re_evaluating_keeps_the_finished_record(benchmarked, in_benchmark_env, monkeypatch):
    """Running the command again re-evaluates each reused run; stopped there (SIGTERM, a time limit), the
    finished run keeps its record (OUT/runs/METHOD.json): the re-run loses nothing it had."""
    from nnunet_sam_adapter.benchmark import runner
    from nnunet_sam_adapter.training.budget import Budget

    out = benchmarked["out"]
    record = out / "runs" / "nnunet_2d.json"
    before = record.read_text()

    def interrupted(result, spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate_run", interrupted)
    spec = runner.RunSpec(DATASET_ID, "nnunet_2d", 0, str(out), single_fold=True, budget=Budget(2, 3),
                          device="cpu", mirroring=False)
    with pytest.raises(KeyboardInterrupt):
        runner.run_method_fold(spec)
    assert json.loads((out / "runs" / "nnunet_2d.state.json").read_text())["state"] == "failed"
    assert record.read_text() == before
    # a run that trains again, or reuses another training than the record's, loses the record at once
    budget = json.loads(before)["budget"]
    runner.drop_stale_record(spec, "reuse", budget)
    assert record.read_text() == before
    runner.drop_stale_record(spec, "reuse", {**budget, "epochs": budget["epochs"] + 1})
    assert not record.exists()
    record.write_text(before)
    runner.drop_stale_record(spec, "train", budget)
    assert not record.exists()
    record.write_text(before)


def test_other_budget_on_a_hand_trained_run_is_refused(benchmarked):
    """A run without the benchmark's record (trained with nnUNetv2_train) is never overwritten silently."""
    fold = next(Path(benchmarked["env"]["nnUNet_results"]).glob(
        f"{DATASET_NAME}/nnUNetTrainer__nnUNetPlans__2d/fold_0"))
    (fold / "sam_benchmark_run.json").unlink()  # now it looks like an nnUNetv2_train run (debug.json: 2 x 3)
    command = ["nnUNetv2_sam_benchmark", "-d", DATASET_ID, "--methods", "nnunet_2d", "--epochs", "5",
               "--iterations", "3", "-o", benchmarked["root"] / "refused", "-device", "cpu"]
    result = subprocess.run([str(c) for c in command], env=benchmarked["env"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "trained outside the benchmark" in result.stderr and "--retrain" in result.stderr
    # The budget nnU-Net's debug.json records (2 x 3): the run and its validation predictions are reused.
    reused = run(["nnUNetv2_sam_benchmark", "-d", DATASET_ID, "--methods", "nnunet_2d", *BUDGET, "-o",
                  benchmarked["root"] / "reused", "-device", "cpu", "--overlay-cases", "0"], benchmarked["env"])
    assert "nnunet_2d: reused" in reused


def test_run_log_shows_each_line_while_the_run_trains(benchmarked, in_benchmark_env, monkeypatch):
    """OUT/logs/METHOD.log is what a user tails during a long run: nnU-Net's lines are there as they come."""
    from nnunet_sam_adapter.benchmark import runner
    from nnunet_sam_adapter.training.budget import Budget

    seen = {}

    def training(trainer, spec, budget, run_dir, resume):
        print("Epoch time: 1.0 s")
        seen["log"] = spec.layout.log_file(spec.method, spec.fold).read_text()
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_train", training)
    # seed 1: its own nnU-Net results folder, so the finished runs of the other tests stay as they are
    spec = runner.RunSpec(DATASET_ID, "nnunet_2d", 0, str(benchmarked["root"] / "log_check"), single_fold=True,
                          budget=Budget(2, 3), device="cpu", mirroring=False, seed=1)
    with pytest.raises(KeyboardInterrupt):
        runner.run_method_fold(spec)
    assert "Epoch time: 1.0 s" in seen["log"]
