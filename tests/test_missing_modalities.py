"""Missing modalities end to end (issue 11), through the real commands on a tiny backbone:

convert + plan + nnUNetv2_train SAMCrossModalMissingModalityTrainer_debug -> nnUNetv2_sam_register
--allow-missing on cases with only T2 + FLAIR (and without T2) -> nnUNetv2_predict; the 15-subset
evaluation, whose full-set row is the normal validation result.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.data.synthetic import write_brats_dataset
from console import run
from planned_dataset import DATASET_ID, DATASET_NAME

pytestmark = pytest.mark.slow

PHANTOM = {"shape_zyx": (12, 64, 64), "misalign": False}  # new cases (any grid: registration resamples)
# The debug budget without test-time mirroring (as nnU-Net's nnUNetTrainerNoMirroring): 4x fewer forward
# passes in the 16 predictions of each validation case.
TRAINER = "SAMCrossModalMissingModalityTrainer_debugNoMirroring"
TRAINER_MODULE = """
from nnunet_sam_adapter.trainers.sam_trainers_short import SAMCrossModalMissingModalityTrainer_debug


class SAMCrossModalMissingModalityTrainer_debugNoMirroring(SAMCrossModalMissingModalityTrainer_debug):
    # Without the fast start: it starts every class at the same input-independent output, which the
    # 8-iteration debug budget barely moves, and the subset comparison needs an input-dependent network.
    fast_start = False
    lr_scales = {}

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None
"""
PLANS = ["-p", "nnUNetSAMPlans"]


@pytest.fixture(scope="module")
def trained(planned_dataset, tmp_path_factory):
    """The session's planned dataset, trained once with modality dropout (results of its own)."""
    root = tmp_path_factory.mktemp("missing")
    env = planned_dataset.env_with_results("missing_modalities")
    (root / "trainers").mkdir()
    (root / "trainers" / "no_mirroring_trainers.py").write_text(TRAINER_MODULE)
    env["nnUNet_extTrainer"] += os.pathsep + str(root / "trainers")
    # --npz: nnU-Net keeps the validation softmax, so the full-set row can be compared beyond the labels
    run(["nnUNetv2_train", DATASET_ID, "2d", "0", "-tr", TRAINER, *PLANS, "-device", "cpu", "--npz"], env)
    return {"root": root, "env": env}


def _new_cases_without(trained, name: str, removed: tuple[str, ...]) -> tuple[Path, list[str]]:
    folder = trained["root"] / name
    cases = write_brats_dataset(folder, n_cases=1, seed=700, **PHANTOM)
    for case in cases:
        for modality in removed:
            (folder / case / f"{case}_{modality}.nii.gz").unlink()
    return folder, cases


def test_register_allow_missing_then_predict_t2_flair_only(trained):
    root, env = trained["root"], trained["env"]
    new, cases = _new_cases_without(trained, "t2_flair_only", ("t1", "t1ce"))

    refused = subprocess.run(["nnUNetv2_sam_register", "-i", str(new), "-o", str(root / "refused")], env=env,
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "missing modality t1" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr

    run(["nnUNetv2_sam_register", "-i", new, "-o", root / "registered", "--allow-missing", "-np", "1"], env)
    case = cases[0]
    t2 = sitk.ReadImage(str(new / case / f"{case}_t2.nii.gz"))
    for channel in (0, 1):  # T1, T1ce: zeros on T2's grid
        image = sitk.ReadImage(str(root / "registered" / f"{case}_{channel:04d}.nii.gz"))
        assert image.GetSize() == t2.GetSize() and np.allclose(image.GetOrigin(), t2.GetOrigin())
        assert not sitk.GetArrayFromImage(image).any()
    report = json.loads((root / "registered" / "registration_reports" / f"{case}.json").read_text())
    assert report["missing_modalities"] == ["t1", "t1ce"] and report["reference"] == "t2"

    run(["nnUNetv2_predict", "-i", root / "registered", "-o", root / "pred", "-d", DATASET_ID, "-c", "2d",
         "-tr", TRAINER, *PLANS, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    prediction = sitk.ReadImage(str(root / "pred" / f"{case}.nii.gz"))
    assert prediction.GetSize() == t2.GetSize()
    assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1}


def test_register_allow_missing_without_t2_uses_the_flair_grid(trained):
    root, env = trained["root"], trained["env"]
    new, cases = _new_cases_without(trained, "no_t2", ("t2", "t1"))
    case = cases[0]
    flair = new / case / f"{case}_flair.nii.gz"
    run(["nnUNetv2_sam_register", "-i", new, "-o", root / "registered_no_t2", "--allow-missing", "-np", "1"], env)
    report = json.loads((root / "registered_no_t2" / "registration_reports" / f"{case}.json").read_text())
    assert report["reference"] == "flair" and report["missing_modalities"] == ["t1", "t2"]
    # FLAIR is the reference: copied unchanged; T2 written as zeros on its grid
    assert (root / "registered_no_t2" / f"{case}_0003.nii.gz").read_bytes() == flair.read_bytes()
    t2 = sitk.ReadImage(str(root / "registered_no_t2" / f"{case}_0002.nii.gz"))
    assert t2.GetSize() == sitk.ReadImage(str(flair)).GetSize() and not sitk.GetArrayFromImage(t2).any()


def test_15_subsets_full_set_equals_the_normal_validation(trained):
    root, env = trained["root"], trained["env"]
    out = root / "mm_eval"
    # mirroring=True as nnUNetv2_train's validation; the trainer allows no mirroring axes, so neither mirrors
    code = ("from dataclasses import replace; from nnunet_sam_adapter.methods import METHODS; "
            "from nnunet_sam_adapter.evaluation.missing_modalities import evaluate_missing_modalities as e; "
            f"m = replace(METHODS['ours_missing'], trainer='trainers.{TRAINER}'); "
            f"e({DATASET_ID}, [m], folds=(0,), output_dir={str(out)!r}, mirroring=True, save_probabilities=True, "
            f"postprocessing={{'ours_missing': {{0: {str(root / 'pp.pkl')!r}}}}})")
    # a postprocessing choice as nnU-Net writes it (its own function): keep the largest tumour component
    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.postprocessing.remove_connected_components import (
        remove_all_but_largest_component_from_segmentation as largest)
    save_pickle(([largest], [{"labels_or_regions": [1]}]), str(root / "pp.pkl"))
    # another fold's prediction already in the folder (folds are predicted into one folder per subset): fold 0's
    # table must not score it
    gt = Path(env["nnUNet_preprocessed"]) / DATASET_NAME / "gt_segmentations"
    fold = next(Path(env["nnUNet_results"]).glob(f"{DATASET_NAME}/{TRAINER}__*/fold_0"))
    validation_cases = {p.name for p in (fold / "validation").glob("*.nii.gz")}
    other_fold = next(p for p in sorted(gt.glob("*.nii.gz")) if p.name not in validation_cases)
    (out / "predictions" / "ours_missing" / "T2+FLAIR").mkdir(parents=True)
    shutil.copy(other_fold, out / "predictions" / "ours_missing" / "T2+FLAIR" / other_fold.name)
    run([sys.executable, "-c", code], env)
    with open(out / "missing_modalities.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "ours_missing"]
    assert {int(r["n_volume"]) for r in rows if r["subset"] != "mean"} == {len(validation_cases)}
    # the same subsets after the fold's postprocessing, each file = nnU-Net's own postprocessing of the raw one
    postprocessed = [r for r in rows if r["variant"] == "postprocessed"]
    rows = [r for r in rows if r["variant"] == "raw"]
    assert [r["subset"] for r in postprocessed] == [r["subset"] for r in rows]
    assert "after nnU-Net's postprocessing" in (out / "missing_modalities.md").read_text()
    for subset in ("T2+FLAIR", "T1+T1ce+T2+FLAIR"):
        for case in validation_cases:
            raw = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "predictions" / "ours_missing" / subset / case)))
            kept = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "postprocessed" / "ours_missing" / subset / case)))
            assert np.array_equal(kept, largest(raw, [1])), (subset, case)
    subsets = [r["subset"] for r in rows if r["subset"] != "mean"]
    assert len(subsets) == 15 == len(set(subsets))
    assert {r["subset"] for r in rows} - set(subsets) == {"mean"}
    assert "●" in (out / "missing_modalities.md").read_text() and (out / "missing_modalities.png").stat().st_size

    predictions = out / "predictions" / "ours_missing"
    validations = sorted((fold / "validation").glob("*.nii.gz"))
    assert validations
    for validation in validations:
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(predictions / "T1+T1ce+T2+FLAIR" / validation.name)))
        assert np.array_equal(ours, sitk.GetArrayFromImage(sitk.ReadImage(str(validation))))
        # the softmax too: same data, weights and tiling; a subset is a different input
        npz = validation.name.replace(".nii.gz", ".npz")
        normal = np.load(fold / "validation" / npz)["probabilities"]
        assert np.allclose(np.load(predictions / "T1+T1ce+T2+FLAIR" / npz)["probabilities"], normal, atol=1e-5)
        assert not np.allclose(np.load(predictions / "T2+FLAIR" / npz)["probabilities"], normal, atol=1e-3)
    normal = json.loads((fold / "validation" / "summary.json").read_text())
    full_row = next(r for r in rows if r["subset"] == "T1+T1ce+T2+FLAIR")
    assert float(full_row["dice_pct_volume"]) == pytest.approx(100 * normal["foreground_mean"]["Dice"], abs=0.01)
