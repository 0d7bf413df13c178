"""Cross-validation pooling, paired statistics, missing-run reporting, reuse rules and executor options,
on small fixed per-case metrics (no training): every number checked against a hand computation or scipy."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import submitit
from scipy import stats

from nnunet_sam_adapter.reporting import crossval
from nnunet_sam_adapter.training.budget import Budget
from nnunet_sam_adapter.benchmark.executors import (ExecutorOptions, local_gpu_parameters, slurm_parameters,
                                                    time_minutes)
from nnunet_sam_adapter.benchmark.layout import BenchmarkError
from nnunet_sam_adapter.benchmark.runner import RunSpec
from nnunet_sam_adapter.reporting.figures import flair_channel
from nnunet_sam_adapter.benchmark.layout import OutputLayout
from nnunet_sam_adapter.benchmark.collect import collect_runs
from nnunet_sam_adapter.benchmark.reuse import RunOnDisk, decide
from nnunet_sam_adapter.reporting.statistics import holm, paired_comparison
from nnunet_sam_adapter.reporting.tables import tables_markdown, write_tables
from nnunet_sam_adapter.atomic_io import atomic_write_json
from nnunet_sam_adapter.evaluation.metrics import summarize

# (fold, case) -> volume (dice, hd95) per method; slices: two per case with fixed scores.
VOLUME = {
    "ours": {(0, "c1"): (0.90, 2.0), (0, "c2"): (0.80, 4.0), (1, "c3"): (0.70, 6.0), (1, "c4"): (0.85, 3.0),
             (1, "c5"): (0.60, 9.0)},
    "nnunet_2d": {(0, "c1"): (0.85, 3.0), (0, "c2"): (0.82, 4.5), (1, "c3"): (0.50, 8.0), (1, "c4"): (0.80, 3.5),
                  (1, "c5"): (0.40, 12.0)},
}


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _slice_scores(dice: float, hd95: float) -> list[tuple[float, float]]:
    return [(dice, hd95), (dice / 2, hd95 + 1)]


def _write_run(layout: OutputLayout, method: str, fold: int) -> dict:
    cases = {case: v for (f, case), v in VOLUME[method].items() if f == fold}
    folder = layout.evaluation_dir(method, fold)
    volume = [{"case": c, "class": "tumor", "dice": d, "hd95": h, "ref_voxels": 1, "pred_voxels": 1}
              for c, (d, h) in cases.items()]
    slices = [{"case": c, "class": "tumor", "slice": i, "dice": sd, "hd95": sh}
              for c, (d, h) in cases.items() for i, (sd, sh) in enumerate(_slice_scores(d, h))]
    _write_csv(folder / "metrics_volume.csv", volume)
    _write_csv(folder / "metrics_slices.csv", slices)
    _write_csv(folder / "metrics_cases.csv", [{"case": c, "class": "tumor", "volume_dice": d, "volume_hd95": h,
                                               "ref_voxels": 1, "pred_voxels": 1, "n_slices": 2,
                                               "slice_dice_mean": 0.75 * d, "slice_hd95_mean": h + 0.5}
                                              for c, (d, h) in cases.items()])
    record = {"method": method, "label": method.upper(), "trainer": "T", "plans": "P", "configuration": "2d",
              "fold": fold, "status": "trained", "budget": {"epochs": 2, "iterations": 4, "batch_size": 4},
              "evaluation_dir": str(folder), "validation_dir": str(folder),
              "summary": {"classes": {"tumor": [1]}, "cases": sorted(cases),  # as evaluate_folders summarises
                          "volume": summarize(volume), "slice": summarize(slices)}}
    atomic_write_json(layout.run_record(method, fold), record)
    return record


@pytest.fixture
def layout(tmp_path):
    layout = OutputLayout(tmp_path / "out")
    for method in VOLUME:
        for fold in (0, 1):
            _write_run(layout, method, fold)
    return layout


def test_pooled_numbers_equal_a_hand_computation(layout):
    finished, missing = collect_runs(layout, ["ours", "nnunet_2d"], [0, 1])
    assert missing == {0: {}, 1: {}}
    pooled = crossval.pool_method({f: finished[f]["ours"] for f in (0, 1)})
    dice = [d for d, _ in VOLUME["ours"].values()]
    hd95 = [h for _, h in VOLUME["ours"].values()]
    volume = pooled["summary"]["volume"]["tumor"]
    assert volume["dice"]["mean"] == pytest.approx(sum(dice) / 5)
    assert volume["dice"]["std"] == pytest.approx(math.sqrt(sum((d - sum(dice) / 5) ** 2 for d in dice) / 5))
    assert volume["hd95"]["mean"] == pytest.approx(sum(hd95) / 5)
    assert volume["dice"]["count"] == 5
    # The slice protocol averages over all slices of all cases of both folds (10 slices).
    slices = [s for d, h in VOLUME["ours"].values() for s, _ in _slice_scores(d, h)]
    assert pooled["summary"]["slice"]["tumor"]["dice"]["mean"] == pytest.approx(sum(slices) / 10)
    assert pooled["summary"]["slice"]["tumor"]["dice"]["count"] == 10
    assert pooled["folds"] == [0, 1] and sorted(pooled["summary"]["cases"]) == ["c1", "c2", "c3", "c4", "c5"]
    # Per-fold table: each fold's own mean.
    rows = {(r["fold"], r["method"]): r for r in crossval.per_fold_rows(finished)}
    assert rows[(1, "ours")]["dice_pct_volume"] == pytest.approx(100 * (0.70 + 0.85 + 0.60) / 3)
    assert rows[(0, "nnunet_2d")]["n_cases"] == 2


def test_paired_statistics_match_scipy_and_holm_by_hand(layout):
    finished, _ = collect_runs(layout, ["ours", "nnunet_2d"], [0, 1])
    pooled = {m: crossval.pool_method({f: finished[f][m] for f in (0, 1)}) for m in ("ours", "nnunet_2d")}
    rows = {r["metric"]: r for r in crossval.comparisons(pooled)}
    cases = sorted(c for _, c in VOLUME["ours"])
    ours = {c: v for (_, c), v in VOLUME["ours"].items()}
    base = {c: v for (_, c), v in VOLUME["nnunet_2d"].items()}
    for index, metric, scale in ((0, "volume Dice (%)", 100), (1, "volume HD95 (mm)", 1)):
        x = [scale * ours[c][index] for c in cases]
        y = [scale * base[c][index] for c in cases]
        row = rows[metric]
        assert row["n_pairs"] == 5
        assert row["mean_diff"] == pytest.approx(np.mean(np.subtract(x, y)))
        assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(x, y).pvalue)
        assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
    # Two comparisons: Holm multiplies the smaller p by 2, the larger by 1, keeping the order monotone.
    p = sorted(r["p_wilcoxon"] for r in rows.values())
    assert sorted(r["p_holm"] for r in rows.values()) == pytest.approx([min(1, 2 * p[0]), max(min(1, 2 * p[0]), p[1])])


def test_postprocessed_rows_are_compared_like_with_like(layout):
    finished, _ = collect_runs(layout, ["ours", "nnunet_2d"], [0, 1])
    pooled = {m: crossval.pool_method({f: finished[f][m] for f in (0, 1)}) for m in ("ours", "nnunet_2d")}
    pooled = {**pooled, "ours_pp": pooled["ours"], "nnunet_2d_pp": pooled["nnunet_2d"]}
    pairs = {(r["reference"], r["baseline"]) for r in crossval.comparisons(pooled)}
    assert pairs == {("ours", "nnunet_2d"), ("ours_pp", "nnunet_2d_pp")}


def test_holm_and_edge_cases():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, math.nan, 0.01]) == pytest.approx([0.5, math.nan, 0.02], nan_ok=True)
    same = paired_comparison({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})
    assert same["p_wilcoxon"] == 1.0 and same["mean_diff"] == 0.0
    assert math.isnan(paired_comparison({"a": 1.0}, {"a": 0.0})["p_wilcoxon"])
    assert paired_comparison({"a": 1.0, "b": 3.0}, {"b": 1.0, "c": 0.0})["n_pairs"] == 1  # only common cases pair


def test_missing_run_is_reported_not_dropped(layout, tmp_path):
    layout.run_record("nnunet_2d", 1).unlink()
    atomic_write_json(layout.run_state("nnunet_2d", 1), {"state": "failed", "error": "RuntimeError: out of memory",
                                                         "log": "/x/nnunet_2d.log"})
    finished, missing = collect_runs(layout, ["ours", "nnunet_2d", "early_fusion"], [0, 1])
    assert "nnunet_2d" not in finished[1]
    assert missing[1]["nnunet_2d"].startswith("failed: RuntimeError: out of memory")
    assert missing[0]["early_fusion"] == "not run" and missing[1]["early_fusion"] == "not run"
    pooled = {m: crossval.pool_method({f: finished[f][m] for f in (0, 1) if m in finished[f]})
              for m in ("ours", "nnunet_2d")}
    results = {"dataset": "D", "fold": 0, "folds": [0, 1], "device": "cpu", "validation_cases": ["c1"],
               "test_time_mirroring": False, "budget_rule": Budget(2, 4).rule(), "sam": None, "methods": pooled,
               "missing": {f"{m}/fold_{f}": why for f in (0, 1) for m, why in missing[f].items()},
               "per_fold": crossval.per_fold_rows(finished), "stats": crossval.comparisons(pooled),
               "parameters": {"swinunetr_2d": {"label": "MONAI SwinUNETR 2D", "error": "not built for these plans: "
                                               "PatchSizeError: SwinUNETR needs ... [64, 48]"},
                              "ours": {"label": "Ours", "total": 10, "trainable": 5, "percent": 50.0}}}
    text = tables_markdown(results)
    assert "Missing: nnunet_2d/fold_1 (failed: RuntimeError: out of memory" in text
    assert "not available: fold_1: failed: RuntimeError" in text       # Table 2 row of nnU-Net
    assert "not available: fold_0: not run" in text                    # early fusion, Tables 1 and 2
    assert "PatchSizeError" in text and "[64, 48]" in text             # Table 3 row says why, no crash
    assert "equal iterations" in text and "2x4x4 = 32" in text          # budget rule + images seen
    pairs = {r["metric"]: r["n_pairs"] for r in results["stats"]}
    assert pairs == {"volume Dice (%)": 2, "volume HD95 (mm)": 2}      # only fold 0 pairs remain
    written = write_tables(results, tmp_path / "tables")
    assert {"tables.md", "table1.csv", "table2.csv", "table3.csv", "per_fold.csv", "stats.csv"} <= set(written)


def test_flair_channel_spellings():
    assert flair_channel({"channel_names": {"0": "t1n", "1": "t2f", "2": "t1c", "3": "t2w"}}) == 1
    assert flair_channel({"channel_names": {"0": "T1", "1": "FLAIR", "2": "T2"}}) == 1
    assert flair_channel({"channel_names": {"0": "CT", "1": "PET"}}) == 1  # none: the last channel


def test_reuse_rules():
    budget = Budget(2, 4)
    ran = dict(found_budget={"epochs": 2, "iterations": 4}, same_plans=True)
    assert decide(RunOnDisk(True, {"x": 1}, **ran), budget).action == "reuse"
    assert decide(RunOnDisk(True, None, found_budget={"epochs": 5, "iterations": 4}, same_plans=True),
                  budget).action == "refuse"                         # hand-trained, other budget
    assert decide(RunOnDisk(True, {"x": 1}, found_budget={"epochs": 5, "iterations": 4}, same_plans=True),
                  budget).action == "train"                          # ours, other budget
    started = {"budget": {"epochs": 2, "iterations": 4}}
    assert decide(RunOnDisk(False, None, None, True, started, has_latest=True), budget).action == "resume"
    assert decide(RunOnDisk(False, None, None, True, started, has_latest=False), budget).action == "train"
    assert decide(RunOnDisk(False, None, None, True, started, has_latest=True, latest_complete=False),
                  budget).action == "train"                          # truncated checkpoint_latest.pth
    assert decide(RunOnDisk(False, None, None, True, None, has_latest=True), budget).action == "refuse"
    assert decide(RunOnDisk(False, None, None, True, None, has_latest=True), budget, retrain=True).action == "train"


def test_fair_budget_and_executor_options():
    fair = Budget(epochs=10, images_per_method=9600)
    assert fair.for_batch_size(24) == Budget(10, 40)
    assert fair.for_batch_size(4) == Budget(10, 240)
    assert "equal images seen" in fair.rule()
    assert time_minutes("90") == 90 and time_minutes("02:30:00") == 150 and time_minutes("1-00:00") == 1440
    with pytest.raises(ValueError):
        ExecutorOptions("slurm", slurm_time="soon")
    params = slurm_parameters(ExecutorOptions("slurm", slurm_partition="gpu", slurm_gpus_per_job=2, slurm_mem="64G",
                                              slurm_array_parallelism=3, slurm_extra={"qos": "high"}))
    assert params["slurm_partition"] == "gpu" and params["gpus_per_node"] == 2 and params["slurm_mem"] == "64G"
    assert params["slurm_array_parallelism"] == 3 and params["slurm_additional_parameters"] == {"qos": "high"}


def test_pooled_postprocessed_label_names_each_folds_choice(layout):
    from nnunet_sam_adapter.evaluation.postprocessing import BENCHMARK_EVALUATION, postprocessed_record

    finished, _ = collect_runs(layout, ["ours"], [0, 1])
    records = {}
    for fold, steps in ((0, ["remove_all_but_largest_component"]), (1, [])):
        raw = finished[fold]["ours"]
        entry = {"steps": steps, "evaluation_dir": raw["evaluation_dir"], "summary": raw["summary"]}
        records[fold] = postprocessed_record({**raw, "extra": {BENCHMARK_EVALUATION: entry}})
    assert records[1]["label"] == "OURS + nnU-Net postprocessing (none chosen)"
    pooled = crossval.pool_method(records)
    assert pooled["label"] == "OURS + nnU-Net postprocessing (per fold: largest component, none chosen)"
    assert crossval.pool_method({0: records[0]})["label"] == "OURS + nnU-Net postprocessing (largest component)"


def test_the_variant_is_compared_with_the_baselines_but_not_again_with_ours(layout):
    finished, _ = collect_runs(layout, ["ours", "nnunet_2d"], [0, 1])
    pooled = {m: crossval.pool_method({f: finished[f][m] for f in (0, 1)}) for m in ("ours", "nnunet_2d")}
    pooled["ours_plus"] = pooled["ours"]
    pairs = [(r["reference"], r["baseline"]) for r in crossval.comparisons(pooled)]
    assert sorted(set(pairs)) == [("ours", "nnunet_2d"), ("ours", "ours_plus"), ("ours_plus", "nnunet_2d")]
    assert len(pairs) == 6  # x 2 metrics, Holm-adjusted together


def test_reuse_compares_the_plans_of_the_runs_configuration_only():
    """Re-planning that adds a configuration (3d_sam) keeps 2d runs reusable; a change to 2d does not."""
    from nnunet_sam_adapter.benchmark.runner import plans_of_configuration

    trained = {"plans_name": "nnUNetSAMPlans", "configurations": {"2d": {"patch_size": [64, 64], "batch_size": 4}}}
    replanned = {**trained, "configurations": {**trained["configurations"], "3d_sam": {"patch_size": [4, 64, 64]}}}
    assert plans_of_configuration(trained, "2d") == plans_of_configuration(replanned, "2d")
    assert plans_of_configuration(trained, "3d_sam") != plans_of_configuration(replanned, "3d_sam")
    changed = {**trained, "configurations": {"2d": {"patch_size": [64, 64], "batch_size": 8}}}
    assert plans_of_configuration(trained, "2d") != plans_of_configuration(changed, "2d")
    other_global = {**trained, "plans_name": "other"}
    assert plans_of_configuration(trained, "2d") != plans_of_configuration(other_global, "2d")
    assert plans_of_configuration(None, "2d") is None


def test_truncated_checkpoint_is_seen_and_checkpoints_are_written_whole(tmp_path):
    """A job stopped while nnU-Net wrote checkpoint_latest.pth (CI: EOFError after a requeue) leaves a stub:
    the run starts again instead of failing, and the benchmark's trainers write checkpoints atomically."""
    import torch

    from nnunet_sam_adapter.benchmark.reuse import checkpoint_is_complete
    from nnunet_sam_adapter.benchmark.runner import _write_checkpoints_atomically

    whole = tmp_path / "checkpoint_latest.pth"
    torch.save({"network_weights": {"w": torch.zeros(64, 64)}, "current_epoch": 3}, whole)
    assert checkpoint_is_complete(whole)
    stub = tmp_path / "stub.pth"
    stub.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert not checkpoint_is_complete(stub) and not checkpoint_is_complete(tmp_path / "absent.pth")

    class Trainer:  # nnU-Net's save_checkpoint writes in place; this one is killed halfway
        local_rank = 0

        def save_checkpoint(self, filename):
            Path(filename).write_bytes(b"PK\x03\x04 half")
            raise KeyboardInterrupt

    trainer = Trainer()
    _write_checkpoints_atomically(trainer)
    before = whole.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(str(whole))
    assert whole.read_bytes() == before and checkpoint_is_complete(whole)


def test_local_runs_see_the_gpus_of_the_benchmark(tmp_path):
    """submitit's LocalExecutor hides every GPU from its jobs unless told which to show: a `-device cuda` run
    under --executor local gets the benchmark's own CUDA_VISIBLE_DEVICES (a real local job reports it)."""
    cuda, cpu = (RunSpec("501", "ours", 0, str(tmp_path), device=d) for d in ("cuda", "cpu"))
    assert local_gpu_parameters([cpu], {"CUDA_VISIBLE_DEVICES": "0"}) == {}
    assert local_gpu_parameters([cpu, cuda], {}, device_count=2) == {"gpus_per_node": 2, "visible_gpus": (0, 1)}
    assert local_gpu_parameters([cuda], {"CUDA_VISIBLE_DEVICES": "3,5"}) == {"gpus_per_node": 2,
                                                                            "visible_gpus": (3, 5)}
    assert local_gpu_parameters([cuda], {"CUDA_VISIBLE_DEVICES": ""}) == {"gpus_per_node": 0, "visible_gpus": ()}
    with pytest.raises(BenchmarkError, match="by index"):
        local_gpu_parameters([cuda], {"CUDA_VISIBLE_DEVICES": "GPU-8e7c1d2a"})
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=2, **local_gpu_parameters([cuda], {"CUDA_VISIBLE_DEVICES": "3,5"}))
    assert executor.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result() == "3,5"  # the job's own environment


def test_a_killed_local_run_is_reported_as_killed(tmp_path):
    """A run whose process is killed (OOM killer, kill -9) leaves no result and no Python error: the failure line
    says so and names the run's log, not submitit's last output line (a progress bar)."""
    from nnunet_sam_adapter.benchmark.executors import _error_line

    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=2)
    job = executor.submit(eval, "__import__('os').kill(__import__('os').getpid(), 9)")  # SIGKILL, as the OOM killer
    with pytest.raises(submitit.core.utils.UncompletedJobError) as raised:
        job.result()
    spec = RunSpec("501", "nnunet_3d_fullres", 0, str(tmp_path / "out"))
    line = _error_line(spec, raised.value)
    assert line.startswith("its process ended without a result or a Python error: killed from outside"), line
    assert line.endswith(f"log: {spec.layout.log_file('nnunet_3d_fullres', 0)}")
