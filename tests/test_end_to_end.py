"""The user's workflow through the real console commands (issue 3), on a small synthetic dataset:

BraTS-like folders with T1/T1ce/FLAIR rigidly misaligned against T2 -> nnUNetv2_sam_convert_brats
(registration) -> nnUNetv2_sam_plan_and_preprocess (tiny backbone + tiny SAM checkpoint) ->
nnUNetv2_train (a short SAMCrossModalTrainer budget) -> nnUNetv2_sam_register + nnUNetv2_predict on held-out
cases (the SAM checkpoint moved away first) -> predictions on the T2 grid, Dice above chance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.data.synthetic import write_brats_dataset
from console import nnunet_env_in, run
from sam_checkpoint_factory import write_tiny_sam_checkpoint

pytestmark = pytest.mark.slow

DATASET_ID = "902"
PHANTOM = {"shape_zyx": (24, 64, 64)}
PLANS = ["-p", "nnUNetSAMPlans"]
TRAINER = "SAMCrossModalPlainStartTrainer_e2e"  # SAMCrossModalTrainer without the fast start (fixture)


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    return 2.0 * np.logical_and(reference, prediction).sum() / (reference.sum() + prediction.sum())


def chance_dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Expected Dice of a prediction with as many voxels placed independently of the reference:
    E[TP] = |P| |R| / N, so Dice = 2 |P| |R| / (N (|P| + |R|))."""
    n_pred, n_ref = prediction.sum(), reference.sum()
    return 2.0 * n_pred * n_ref / (reference.size * (n_pred + n_ref))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Convert, plan and train once for the tests of this module; returns paths and env."""
    root = tmp_path_factory.mktemp("e2e")
    env = nnunet_env_in(root)
    write_brats_dataset(root / "brats", n_cases=6, seed=11, **PHANTOM)
    checkpoint = write_tiny_sam_checkpoint(root / "weights" / "tiny_sam.pth", randomize=False)

    run(["nnUNetv2_sam_convert_brats", "-i", root / "brats", "-d", DATASET_ID, "-n", "SynE2E",
         "--register", "always", "-np", "2"], env)
    run(["nnUNetv2_sam_plan_and_preprocess", "-d", DATASET_ID, "--backbone", "tiny", "--checkpoint", checkpoint,
         "--input-size", "64", "--batch-size", "4", "--adapter-depth", "2", "-np", "2"], env)
    # A test budget defined the way a user would (see trainers/sam_trainers_short.py): enough iterations
    # for the tiny random encoder to beat chance reliably. Without the fast start (docs/method.md): its
    # decoder lr (0.1 x) was chosen for a pretrained decoder; the tiny checkpoint's stays at the prior in
    # 300 iterations (measured: Dice 0 on both new cases). The fast start has its own tests.
    (root / "trainers").mkdir()
    (root / "trainers" / "e2e_trainers.py").write_text(
        "from nnunet_sam_adapter.trainers.sam_trainers import SAMCrossModalTrainer\n"
        "from nnunet_sam_adapter.trainers.sam_trainers_short import make_budget_variant\n"
        "class SAMCrossModalPlainStartTrainer(SAMCrossModalTrainer):\n"
        "    fast_start = False\n"
        "    lr_scales = {}\n"
        f"{TRAINER} = make_budget_variant(SAMCrossModalPlainStartTrainer, 'e2e', 25, 12, 2)\n")
    env["nnUNet_extTrainer"] += os.pathsep + str(root / "trainers")
    log = run(["nnUNetv2_train", DATASET_ID, "2d", "0", "-tr", TRAINER, *PLANS, "-device", "cpu"], env)
    return {"root": root, "env": env, "train_log": log, "checkpoint": checkpoint}


@contextmanager
def sam_checkpoint_moved_away(trained):
    """Prediction and resuming must not need the SAM file: hide it meanwhile."""
    checkpoint = trained["checkpoint"]
    hidden = checkpoint.with_name("hidden.pth")
    shutil.move(str(checkpoint), str(hidden))
    try:
        yield
    finally:
        shutil.move(str(hidden), str(checkpoint))


def test_training_used_the_sam_checkpoint_and_logged_parameters(trained):
    results = Path(trained["env"]["nnUNet_results"])
    fold = next(results.glob(f"Dataset902_SynE2E/{TRAINER}__nnUNetSAMPlans__2d/fold_0"))
    assert (fold / "checkpoint_final.pth").is_file()
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "tiny_sam.pth (tiny)" in log
    assert "trainable" in log
    plans = json.loads((fold.parent / "plans.json").read_text())
    assert plans["configurations"]["2d"]["patch_size"] == [64, 64]
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["stream_channels"] == [[0, 1], [2, 3]]


def test_register_then_predict_new_cases(trained):
    root, env = trained["root"], trained["env"]
    new_cases = write_brats_dataset(root / "new", n_cases=2, seed=500, **PHANTOM)
    inputs_before = {p: p.read_bytes() for p in (root / "new").rglob("*") if p.is_file()}
    run(["nnUNetv2_sam_register", "-i", root / "new", "-o", root / "new_nnunet", "-np", "2"], env)
    assert {p: p.read_bytes() for p in (root / "new").rglob("*") if p.is_file()} == inputs_before
    with sam_checkpoint_moved_away(trained):
        run(["nnUNetv2_predict", "-i", root / "new_nnunet", "-o", root / "pred", "-d", DATASET_ID, "-c", "2d",
             "-tr", TRAINER, *PLANS, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], env)

    scores, chance = [], []
    for case in new_cases:
        t2 = sitk.ReadImage(str(root / "new" / case / f"{case}_t2.nii.gz"))
        prediction = sitk.ReadImage(str(root / "pred" / f"{case}.nii.gz"))
        assert prediction.GetSize() == t2.GetSize()
        assert np.allclose(prediction.GetSpacing(), t2.GetSpacing())
        assert np.allclose(prediction.GetOrigin(), t2.GetOrigin())
        assert np.allclose(prediction.GetDirection(), t2.GetDirection())
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "new" / case / f"{case}_seg.nii.gz"))) > 0
        predicted = sitk.GetArrayFromImage(prediction) > 0
        scores.append(dice(reference, predicted))
        chance.append(chance_dice(reference, predicted))
    assert np.mean(scores) > 2 * np.mean(chance), (scores, chance)


def test_predict_from_modelfolder_and_missing_modality(trained):
    root, env = trained["root"], trained["env"]
    images = Path(env["nnUNet_raw"]) / "Dataset902_SynE2E" / "imagesTr"
    case_files = sorted(images.glob("*_000?.nii.gz"))[:4]
    single = root / "single_case"
    single.mkdir()
    for f in case_files:
        shutil.copy(f, single / f.name)
    model = next(Path(env["nnUNet_results"]).glob(f"Dataset902_SynE2E/{TRAINER}__nnUNetSAMPlans__2d"))
    run(["nnUNetv2_predict_from_modelfolder", "-i", single, "-o", root / "pred_mf", "-m", model, "-f", "0",
         "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    assert len(list((root / "pred_mf").glob("*.nii.gz"))) == 1

    (single / case_files[3].name).unlink()  # FLAIR gone
    result = subprocess.run(["nnUNetv2_predict", "-i", str(single), "-o", str(root / "pred_missing"), "-d",
                             DATASET_ID, "-c", "2d", "-tr", TRAINER, *PLANS, "-f", "0",
                             "-device", "cpu", "-npp", "1", "-nps", "1"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "missing a modality" in result.stdout + result.stderr


def test_resume_with_c_restores_the_trained_weights(trained):
    """`--c` on a finished run loads nnU-Net's checkpoint (after the trainer loaded SAM's weights), so
    re-running the validation reproduces the original validation Dice exactly."""
    env = trained["env"]
    fold = next(Path(env["nnUNet_results"]).glob(f"Dataset902_SynE2E/{TRAINER}__*/fold_0"))
    summary = fold / "validation" / "summary.json"
    before, written = json.loads(summary.read_text())["foreground_mean"]["Dice"], summary.stat().st_mtime_ns
    with sam_checkpoint_moved_away(trained):
        run(["nnUNetv2_train", DATASET_ID, "2d", "0", "-tr", TRAINER, *PLANS, "-device", "cpu", "--c"], env)
    assert summary.stat().st_mtime_ns != written, "validation was not re-run"
    after = json.loads(summary.read_text())["foreground_mean"]["Dice"]
    assert after == pytest.approx(before, abs=1e-6)


def test_baseline_trainer_on_the_same_plans(trained):
    env = trained["env"]
    run(["nnUNetv2_train", DATASET_ID, "2d", "0", "-tr", "SAMSingleModalityFLAIRTrainer_debug", *PLANS,
         "-device", "cpu"], env)
    fold = next(Path(env["nnUNet_results"]).glob("Dataset902_SynE2E/SAMSingleModalityFLAIRTrainer_debug__*/fold_0"))
    assert (fold / "checkpoint_final.pth").is_file()


def test_sam_trainer_refuses_plans_without_sam_configuration(trained):
    env = trained["env"]
    run(["nnUNetv2_plan_experiment", "-d", DATASET_ID], env)  # stock nnUNetPlans, no SAM block
    result = subprocess.run(["nnUNetv2_train", DATASET_ID, "2d", "0", "-tr", "SAMCrossModalTrainer_debug",
                             "-p", "nnUNetPlans", "-device", "cpu"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "nnUNetv2_sam_plan_and_preprocess" in result.stdout + result.stderr
