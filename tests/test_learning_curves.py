"""Seeds and learning curves of the benchmark (issue #22): `--seeds N` trains each (method, fold) N times in
nnU-Net's own folders of the `<Trainer>_seed<k>` variants, `--curve-images` keeps checkpoints inside each run and
scores them like the final one, and OUT/learning_curves pools seeds and points (mean +- sd over seeds, paired
statistics on each case's seed mean, the first images with a pseudo Dice above the plateau)."""

from __future__ import annotations

import subprocess

import pytest
import torch

from console import read_csv
from planned_dataset import DATASET_ID
from nnunet_sam_adapter.methods import MAX_SEED, METHODS
from nnunet_sam_adapter.reporting.learning_curves import comparisons, plateau_images, summary_rows


def test_every_registered_trainer_has_seed_variants_that_seed_torch():
    from nnunet_sam_adapter.trainers.seed_trainers import make_seed_variant

    for method in METHODS.values():
        for seed in range(1, MAX_SEED + 1):
            variant = method.trainer_class(seed)
            assert variant.__name__ == f"{method.trainer_name}_seed{seed}" and issubclass(variant, method.trainer_class())
            assert method.seed_folder_name(seed).startswith(f"{method.trainer_name}_seed{seed}__")
    assert METHODS["ours"].trainer_class(0) is METHODS["ours"].trainer_class()

    class Base:
        def __init__(self, plans, configuration, fold, dataset_json, device=None):
            self.first_draw = torch.rand(3)

    draws = [make_seed_variant(Base, seed)({}, "2d", 0, {}).first_draw for seed in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_plateau_images_is_the_first_epoch_above_the_threshold():
    def record(dice):
        return {"extra": {"nnunet_sam_adapter.benchmark.learning_curve.benchmark_learning_curve":
                          {"pseudo_dice": dice, "images_per_epoch": 40}}}

    assert plateau_images(record([0.0, 0.05, 0.3, 0.7])) == 120
    assert plateau_images(record([0.0, 0.1])) == "never"  # strictly above 0.1
    assert plateau_images({"extra": {}}) is None


def _points(scores_by_seed: dict) -> dict:
    """{(method, seed, images, 'pp'): entry} from {(method, seed): {case: dice}} at 400 images."""
    return {(m, s, 400, "pp"): {"cases": {"1": {c: (d, 10.0) for c, d in cases.items()}}, "train_seconds": 1.0,
                                "folds": [0]}
            for (m, s), cases in scores_by_seed.items()}


def test_statistics_pair_each_cases_mean_over_seeds():
    cases = [f"c{i}" for i in range(6)]
    points = _points({("ours", 0): {c: 70.0 for c in cases}, ("ours", 1): {c: 80.0 for c in cases},
                      ("nnunet_2d", 0): {c: 74.0 + i for i, c in enumerate(cases)}})
    rows = [r for r in comparisons(points) if r["metric"].startswith("volume Dice")]
    assert len(rows) == 1 and rows[0]["reference"] == "ours" and rows[0]["baseline"] == "nnunet_2d"
    assert rows[0]["seeds_reference"] == 2 and rows[0]["seeds_baseline"] == 1 and rows[0]["n_pairs"] == 6
    assert rows[0]["mean_a"] == pytest.approx(75.0) and rows[0]["mean_diff"] == pytest.approx(75.0 - 76.5)
    from nnunet_sam_adapter.reporting.learning_curves import curve_rows

    summary = {r["method"]: r for r in summary_rows(curve_rows(points))}
    assert summary["ours"]["dice_mean"] == pytest.approx(75.0) and summary["ours"]["seeds"] == 2
    assert summary["ours"]["dice_sd"] == pytest.approx(7.0710678)


def _curve_command(out) -> list[str]:
    return ["nnUNetv2_sam_benchmark", "-d", DATASET_ID, "-f", "0", "--methods", "ours", "nnunet_2d", "--seeds", "2",
            "--curve-images", "8", "--epochs", "2", "--iterations", "2", "-device", "cpu", "--no-mirroring",
            "--overlay-cases", "0", "-o", str(out)]


@pytest.fixture(scope="module")
def curve_run(planned_dataset, tmp_path_factory):
    """ours and nnU-Net 2d, 2 seeds, 2 epochs x 2 iterations x batch 4 = 16 images, a curve point at 8."""
    out = tmp_path_factory.mktemp("curves") / "bench"
    env = {**planned_dataset.env_with_results("learning_curves"), "nnUNet_n_proc_DA": "0"}
    result = subprocess.run(_curve_command(out), env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return out, env, result.stdout


@pytest.mark.slow  # 4 short trainings and 8 validations: behind the marker CI runs (make test-all)
def test_seeds_train_in_their_own_nnunet_folders_with_curve_checkpoints(curve_run):
    out, env, stdout = curve_run
    from pathlib import Path

    results = next(Path(env["nnUNet_results"]).glob("Dataset904_*"))
    for trainer in ("nnUNetTrainer", "nnUNetTrainer_seed1", "SAMCrossModalTrainer", "SAMCrossModalTrainer_seed1"):
        plans = "nnUNetSAMPlans" if trainer.startswith("SAM") else "nnUNetPlans"
        fold = results / f"{trainer}__{plans}__2d" / "fold_0"
        assert (fold / "checkpoint_final.pth").is_file() and (fold / "checkpoint_images_8.pth").is_file(), fold
        assert (fold / "learning_curve" / "images_8" / "validation" / "summary.json").is_file()
    assert (out / "runs" / "ours.json").is_file() and (out / "seed_1" / "runs" / "ours.json").is_file()
    assert "learning_curves.md" in stdout


@pytest.mark.slow
def test_learning_curve_tables_pool_seeds_and_points(curve_run):
    out, _, _ = curve_run
    rows = read_csv(out / "learning_curves" / "learning_curves.csv")
    found = {(r["method"], int(r["seed"]), int(r["images"]), r["variant"]) for r in rows}
    assert found == {(m, s, n, v) for m in ("ours", "nnunet_2d") for s in (0, 1) for n in (8, 16) for v in ("raw", "pp")}
    stats = read_csv(out / "learning_curves" / "stats.csv")
    assert {(int(r["images"]), r["baseline"], r["seeds_reference"]) for r in stats} == {(8, "nnunet_2d", "2"),
                                                                                        (16, "nnunet_2d", "2")}
    page = (out / "learning_curves" / "learning_curves.md").read_text()
    assert "± " in page and "pseudo Dice > 0.1" in page
    assert (out / "learning_curves" / "learning_curves.png").stat().st_size > 0


@pytest.mark.slow
def test_the_same_command_again_validates_no_curve_point_again(curve_run):
    """Idempotent re-run: every run and curve point is reused, no prediction rewritten (the points were made
    without mirroring; a point's record says so, or the re-run would predict them all again)."""
    out, env, _ = curve_run
    from pathlib import Path

    points = sorted(Path(env["nnUNet_results"]).glob("Dataset904_*/*/fold_0/learning_curve/images_8/validation"))
    assert len(points) == 4
    before = {f: f.stat().st_mtime_ns for folder in points for f in folder.iterdir()}
    result = subprocess.run(_curve_command(out), env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert {f: f.stat().st_mtime_ns for folder in points for f in folder.iterdir()} == before
    assert result.stdout.count(": reused (fold 0") == 4, result.stdout[-4000:]


def test_a_failing_learning_curve_report_exits_non_zero_with_one_line(monkeypatch, capsys):
    """run_benchmark caught the report's error after the runs (pipeline.py): the command names it, exits 1."""
    import nnunet_sam_adapter.benchmark.pipeline as pipeline
    from nnunet_sam_adapter.cli import benchmark as cli

    monkeypatch.setattr(pipeline, "run_benchmark", lambda settings: {
        "failed": {}, "tables": {}, "report_errors": {"learning_curves": "ValueError: broken figure"}})
    args = cli.build_parser().parse_args(["-d", "1", "--seeds", "2", "-device", "cpu"])
    assert cli._benchmark(args, ["ours"], 0, None, None) == 1
    assert "learning curves not written (ValueError: broken figure)" in capsys.readouterr().err


def test_the_figure_title_says_how_many_seeds_its_points_average():
    """A one-seed run's figure claims no sd over seeds (its points are single runs)."""
    from nnunet_sam_adapter.reporting.learning_curves import figure_title

    def rows(*seeds):
        return [{"variant": "pp", "seeds": n} for n in seeds]

    assert figure_title(rows(1, 1)) == "after nnU-Net's postprocessing; one seed, no sd"
    assert figure_title(rows(2, 2)) == "after nnU-Net's postprocessing; mean ± sd over 2 seeds"
    assert figure_title(rows(4, 2)) == "after nnU-Net's postprocessing; mean ± sd over 2-4 seeds"
    assert figure_title([{"variant": "raw", "seeds": 1}]) == "raw; one seed, no sd"
