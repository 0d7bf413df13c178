"""ours_3d end to end on nnU-Net's own 3D machinery (issue #18): the SAM planner writes and preprocesses the
3d_sam configuration of the session's tiny dataset, `nnUNetv2_train ... 3d_sam ... -tr
SAMCrossModal3DTrainer_debug` trains it for a few iterations (nnU-Net's 3D data loader and augmentation) and
stock `nnUNetv2_predict -c 3d_sam` predicts held-in cases with nnU-Net's 3D sliding window."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from console import run
from planned_dataset import DATASET_ID, DATASET_NAME

TRAINER = "SAMCrossModal3DTrainer_debug"


def test_plans_hold_the_3d_configuration_and_its_preprocessed_data(planned_dataset):
    preprocessed = Path(planned_dataset.env["nnUNet_preprocessed"]) / DATASET_NAME
    plans = json.loads((preprocessed / "nnUNetSAMPlans.json").read_text())
    assert set(plans["configurations"]) == {"2d", "3d_sam"}
    config = plans["configurations"]["3d_sam"]
    # 3 mm phantoms, 2d batch 4: D = min(8, batch 4) = 4 slices of the 64 px SAM input, one stack per batch
    assert config["patch_size"] == [4, 64, 64] and config["batch_size"] == 1
    assert config["architecture"]["network_class_name"] == "nnunet_sam_adapter.model.network.SAMCrossModal3DNetwork"
    assert config["sam"]["slices"] == 4 and config["sam"]["backbone"] == "tiny"
    assert config["data_identifier"] == "nnUNetSAMPlans_3d_sam"
    cases = {p.name.split(".")[0] for p in (preprocessed / "nnUNetSAMPlans_3d_sam").iterdir() if "_seg" not in p.name}
    assert len(cases) == 6, cases  # preprocessed by nnUNetv2_sam_plan_and_preprocess, like 2d


_COUNT_FOREGROUND_DRAWS = """
import numpy as np, torch
from nnunet_sam_adapter.benchmark.layout import load_plans
from nnunet_sam_adapter.benchmark.runner import make_trainer
from nnunet_sam_adapter.methods import METHODS
from nnunet_sam_adapter.paths import nnunet_dirs
_, preprocessed, _ = nnunet_dirs("{dataset}")
method = METHODS["{method}"]
trainer = make_trainer(method, load_plans(preprocessed, method), preprocessed, 0, torch.device("cpu"))
trainer.initialize()
loader = trainer.get_dataloaders()[0].data_loader  # nnU-Net's own 3D data loader (no DA workers)
np.random.seed(0)
print("batch", loader.batch_size, "foreground draws", sum(loader.get_do_oversample(0) for _ in range(300)))
"""


def test_a_batch_of_one_stack_is_foreground_centred_a_third_of_the_time(planned_dataset):
    """nnU-Net forces foreground into the last 33% of a batch, none of a batch of one (the usual 3d_sam
    batch); the 3D trainer's loader centres each stack on foreground with probability 0.33 instead."""
    env = {**planned_dataset.env_with_results("ours_3d_sampling"), "nnUNet_n_proc_DA": "0"}
    out = run([sys.executable, "-c", _COUNT_FOREGROUND_DRAWS.format(dataset=DATASET_ID, method="ours_3d")], env)
    batch, draws = (int(v) for v in out.split("batch ")[1].split(" foreground draws "))
    assert batch == 1 and 70 <= draws <= 130, out[-2000:]  # 300 x 0.33 = 99 expected


@pytest.mark.slow  # a 3d training + a 3d sliding-window prediction: behind the marker CI runs (make test-all)
def test_train_3d_trainer_then_predict_with_stock_nnunet(planned_dataset, tmp_path):
    env = {**planned_dataset.env_with_results("ours_3d"), "nnUNet_n_proc_DA": "0", "nnUNet_compile": "false"}
    log = run(["nnUNetv2_train", DATASET_ID, "3d_sam", "0", "-tr", TRAINER, "-p", "nnUNetSAMPlans",
               "-device", "cpu"], env)
    model = Path(env["nnUNet_results"]) / DATASET_NAME / f"{TRAINER}__nnUNetSAMPlans__3d_sam"
    fold = model / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "validation" / "summary.json").is_file()
    training_log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "SAM weights:" in training_log and "fast start" in training_log

    # stock nnUNetv2_predict on two raw training cases (nnU-Net's 3D sliding window over [4, 64, 64] patches)
    raw = Path(env["nnUNet_raw"]) / DATASET_NAME / "imagesTr"
    cases = sorted({p.name[:-12] for p in raw.glob("*_0000.nii.gz")})[:2]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case in cases:
        for image in raw.glob(f"{case}_000?.nii.gz"):
            (inputs / image.name).symlink_to(image)
    out = tmp_path / "pred"
    run(["nnUNetv2_predict", "-i", inputs, "-o", out, "-d", DATASET_ID, "-c", "3d_sam", "-f", "0", "-tr", TRAINER,
         "-p", "nnUNetSAMPlans", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"], env)
    for case in cases:
        prediction = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        reference = sitk.ReadImage(str(raw / f"{case}_0000.nii.gz"))
        assert prediction.GetSize() == reference.GetSize()
        labels = set(np.unique(sitk.GetArrayFromImage(prediction)).tolist())
        assert labels <= {0, 1}  # the dataset's whole-tumour labels
    assert "3d_sam" in log
