"""The cross-validation end to end on a tiny synthetic dataset whose stock 2d patch is [64, 48]:
the local executor (2 methods x 2 folds, --status, --aggregate-only with a missing run) and, on the
local SLURM cluster, `--executor slurm` (job array, pooled tables) and a requeued running job that
resumes from nnU-Net's checkpoint_latest.pth and finishes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from console import read_csv
from planned_dataset import DATASET_ID, DATASET_NAME
from slurm_cluster import wait_for_state

pytestmark = pytest.mark.slow

METHODS = ["ours", "nnunet_2d"]
ROWS = [*METHODS, *(f"{m}_pp" for m in METHODS)]  # raw rows and rows after nnU-Net's postprocessing
TINY = ["-device", "cpu", "--no-mirroring", "--overlay-cases", "1"]


@pytest.fixture(scope="module")
def dataset(planned_dataset, tmp_path_factory):
    """The session's planned dataset (SAM plans at 64 px, stock 2d plans: patch [64, 48]) and a folder."""
    return tmp_path_factory.mktemp("crossval"), planned_dataset


def own_results(dataset, name: str) -> dict:
    """The dataset's env with a results folder of its own (no run is reused across tests); training
    augments in-process, one CPU per job (0 would break nnU-Net's planner, hence only after planning)."""
    return {**dataset.env_with_results(f"crossval_{name}"), "nnUNet_n_proc_DA": "0"}


def benchmark(env, *args, check=True, timeout=2400):  # generous: the CI machine is a shared 2-core CPU
    command = ["nnUNetv2_sam_benchmark", "-d", DATASET_ID, *map(str, args)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{(result.stdout + result.stderr)[-4000:]}"
    return result


def check_pooled_tables(out: Path, folds=(0, 1)) -> None:
    crossval = out / "crossval"
    tables = (crossval / "tables.md").read_text()
    assert "folds 0, 1 pooled" in tables
    per_fold = read_csv(crossval / "per_fold.csv")
    assert {(int(r["fold"]), r["method"]) for r in per_fold} == {(f, m) for f in folds for m in ROWS}
    stats = read_csv(crossval / "stats.csv")
    assert {(r["reference"], r["baseline"]) for r in stats} == {("ours", "nnunet_2d"), ("ours_pp", "nnunet_2d_pp")}
    cases = sum(len(json.loads((out / f"fold_{f}" / "results.json").read_text())["validation_cases"]) for f in folds)
    assert all(int(r["n_pairs"]) == cases for r in stats)
    table2 = {r["method"]: r for r in read_csv(crossval / "table2.csv")}
    assert set(table2) == set(ROWS) and all(int(r["n_cases"]) == cases for r in table2.values())
    assert all(int(r["images_seen"]) == int(r["batch_size"]) * 2 * 2 for r in table2.values())
    # Table 3 is written although SwinUNETR cannot be built on the [64, 48] patch: its row says why.
    table3 = {r["method"]: r for r in read_csv(crossval / "table3.csv")}
    assert "PatchSizeError" in table3["swinunetr_2d"]["note"] and "[64, 48]" in table3["swinunetr_2d"]["note"]
    assert (crossval / "metrics.png").is_file()
    for f in folds:
        assert (out / f"fold_{f}" / "tables.md").is_file() and (out / f"fold_{f}" / "metrics.png").is_file()


def test_local_executor_crossval_status_and_missing_run(dataset):
    root, planned = dataset
    env = own_results(planned, "results_local")
    out = root / "out_local"
    common = ["--methods", *METHODS, "--folds", "0", "1", "--epochs", "2", "--iterations", "2", "-o", out, *TINY]
    benchmark(env, *common, "--executor", "local", "--max-parallel", "2")
    check_pooled_tables(out)

    status = benchmark(env, *common, "--status").stdout
    assert status.count(" finished ") == 4 and "runs: 4 finished" in status, status

    # A missing run is reported, not dropped: by --status, and by --aggregate-only in the tables.
    (out / "fold_1" / "runs" / "nnunet_2d.json").unlink()
    status = benchmark(env, *common, "--status").stdout
    assert "runs: 3 finished, 1 not run" in status, status
    aggregated = benchmark(env, *common, "--aggregate-only").stdout
    assert "Missing: nnunet_2d/fold_1" in aggregated
    tables = (out / "crossval" / "tables.md").read_text()
    assert "Missing: nnunet_2d/fold_1" in tables and "not available: fold_1" in tables
    per_fold = {(int(r["fold"]), r["method"]) for r in read_csv(out / "crossval" / "per_fold.csv")}
    assert (1, "nnunet_2d") not in per_fold and (0, "nnunet_2d") in per_fold


def _slurm_options(cluster) -> list:
    return ["--executor", "slurm", "--slurm-partition", cluster.partition, "--slurm-gpus-per-job", "0",
            "--slurm-cpus-per-job", "1", "--slurm-time", "15"]


def test_slurm_executor_crossval(dataset, slurm_cluster):
    root, planned = dataset
    env = own_results(planned, "results_slurm")
    out = root / "out_slurm"
    benchmark(env, "--methods", *METHODS, "--folds", "0", "1", "--epochs", "2", "--iterations", "2", "-o", out,
              *TINY, *_slurm_options(slurm_cluster))
    check_pooled_tables(out)
    submitted = json.loads((out / "jobs" / "submitted.json").read_text())
    assert len(submitted) == 4 and all(e["executor"] == "slurm" for e in submitted.values())
    assert len({e["job_id"].split("_")[0] for e in submitted.values()}) == 1  # one job array
    for fold in (0, 1):
        for method in METHODS:
            state = json.loads((out / f"fold_{fold}" / "runs" / f"{method}.state.json").read_text())
            assert state["state"] == "finished" and state["job_id"] == submitted[f"{method}/fold_{fold}"]["job_id"]


def test_requeued_slurm_run_resumes_from_nnunet_checkpoint(dataset, slurm_cluster):
    root, planned = dataset
    env = own_results(planned, "results_requeue")
    out = root / "out_requeue"
    common = ["--methods", "nnunet_2d", "--folds", "0", "--epochs", "10", "--iterations", "2", "-o", out, *TINY]
    benchmark(env, *common, "--save-every", "1", "--no-wait", *_slurm_options(slurm_cluster))
    job_id = json.loads((out / "jobs" / "submitted.json").read_text())["nnunet_2d/fold_0"]["job_id"]
    wait_for_state(job_id, "RUNNING", timeout_s=120)
    run_dir = Path(env["nnUNet_results"]) / DATASET_NAME / "nnUNetTrainer__nnUNetPlans__2d" / "fold_0"
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoint_latest.pth").is_file():
        assert time.monotonic() < deadline, "no checkpoint_latest.pth within 240 s"
        time.sleep(0.5)
    assert not (run_dir / "checkpoint_final.pth").is_file(), "finished before the requeue: raise --epochs"
    subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True)

    record_path = out / "fold_0" / "runs" / "nnunet_2d.json"
    deadline = time.monotonic() + 400
    while not record_path.is_file():
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id.split("_")[0]], capture_output=True)
            pytest.fail(f"no result 400 s after the requeue:\n{benchmark(env, *common, '--status').stdout}")
        time.sleep(1)
    record = json.loads(record_path.read_text())
    state = json.loads((out / "fold_0" / "runs" / "nnunet_2d.state.json").read_text())
    assert record["status"] == "resumed" and record["resumed_from_epoch"] >= 1, record
    assert state["restarts"] == 1 and state["state"] == "finished"
    assert record["budget"]["epochs"] == 10 and (run_dir / "checkpoint_final.pth").is_file()
    status = benchmark(env, *common, "--status").stdout
    assert "runs: 1 finished" in status, status
