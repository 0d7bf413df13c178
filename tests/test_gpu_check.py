"""`make gpu-check` on a machine without a GPU: the plan (paper settings, nnU-Net's defaults with
compile on, the fixed-budget trainers), its input checks and the page it writes from nnU-Net's outputs.
The CUDA run itself needs a GPU; `--cpu-smoke` runs the plan on a CPU (too long for `make test`)."""
import json

import pytest
import torch

from nnunet_sam_adapter.apps import gpu_check
from nnunet_sam_adapter.cli import gpu_check as gpu_check_cli


@pytest.fixture
def real_data(tmp_path):
    """A stand-in of shared/data/real: one BraTS set (case folders with _seg) and one non-BraTS set."""
    case = tmp_path / "real" / "some_brats" / "Brats18_X_1"
    case.mkdir(parents=True)
    for suffix in ("t1", "t1ce", "t2", "flair", "seg"):
        (case / f"Brats18_X_1_{suffix}.nii.gz").touch()
    (tmp_path / "real" / "kaggle_2d" / "p1").mkdir(parents=True)
    (tmp_path / "real" / "kaggle_2d" / "p1" / "slice_1.tif").touch()
    return tmp_path / "real"


def test_dry_run_plans_the_paper_settings_with_nnunet_defaults(real_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_compile", "false")  # what the Makefile exports for CPU machines
    assert gpu_check_cli.main(["--dry-run", "--data", str(real_data), "--work", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    paper_settings = "--backbone vit_b --input-size 256 --batch-size 24 --adapter-depth 6 --device cuda"
    assert f"nnUNetv2_sam_speed {paper_settings}" in out
    assert "--docs docs/performance.md" in out
    assert f"nnUNetv2_sam_convert_brats -i {real_data / 'some_brats'} -d 501" in out and "kaggle" not in out
    assert "nnUNetv2_sam_plan_and_preprocess -d 501 --backbone litemedsam --input-size 256 --stock 2d -np " in out
    for trainer, plans in (("SAMCrossModalTrainer", "nnUNetSAMPlans"), ("SAMEarlyFusionTrainer", "nnUNetSAMPlans"),
                           ("nnUNetTrainer", "nnUNetPlans")):
        assert f"nnUNetv2_train 501 2d 0 -tr {trainer}_gpucheck -p {plans}\n" in out
    settings = gpu_check.GpuCheckSettings(real_data, tmp_path / "w")
    env = gpu_check.nnunet_env(settings)
    assert not any(name in env for name in gpu_check.CPU_ONLY_ENV)  # nnU-Net's defaults: compile on
    assert env["nnUNet_results"] == str((tmp_path / "w" / "nnUNet_results").resolve())
    smoke = gpu_check.GpuCheckSettings(real_data, tmp_path / "w", cpu_smoke=True)
    assert gpu_check.nnunet_env(smoke)["nnUNet_compile"] == "false"
    trainings = [s for s in gpu_check.gpu_check_plan(smoke) if s.trainer]
    assert trainings and all(s.trainer.endswith("_debug") and "-device" in s.argv for s in trainings)
    assert "--docs" in (speed := gpu_check.speed_step(smoke).argv) and str(tmp_path / "w" / "docs") in " ".join(speed)


def test_sam_checkpoint_adds_a_vit_b_run(real_data, tmp_path):
    settings = gpu_check.GpuCheckSettings(real_data, tmp_path / "w", sam_checkpoint="/ckpt/sam_vit_b.pth")
    steps = gpu_check.gpu_check_plan(settings)
    plan = next(s for s in steps if s.name == "plan 502 (vit_b)")
    assert plan.argv[plan.argv.index("--checkpoint") + 1] == "/ckpt/sam_vit_b.pth"
    assert steps[-1].trainer == "SAMCrossModalTrainer_gpucheck" and steps[-1].dataset_id == 502
    gpu_check.check_trainers(steps)


@pytest.mark.parametrize("argv, message", [
    (["--dry-run", "--data", "/no/such/folder"], "real BraTS data not found at /no/such/folder"),
    (["--dry-run", "--data", "{empty}"], "no BraTS case folders"),
    (["--dry-run", "--data", "{real}", "--sam-checkpoint", "/no/ckpt.pth"],
     "--sam-checkpoint /no/ckpt.pth: no such"),
])
def test_bad_input_is_one_line(argv, message, real_data, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = [a.format(empty=tmp_path / "empty", real=real_data) for a in argv]
    assert gpu_check_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check")
def test_real_run_refuses_without_cuda(real_data, tmp_path, capsys):
    assert gpu_check_cli.main(["--data", str(real_data), "--work", str(tmp_path / "w")]) == 1
    assert "needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_page_reads_nnunet_logs_and_validation_summary(real_data, tmp_path):
    """nnU-Net's own formats: 'Epoch time: X s' log lines and validation/summary.json."""
    settings = gpu_check.GpuCheckSettings(real_data, tmp_path / "w")
    step = gpu_check.train_step(settings, "ours", 501)
    dataset = tmp_path / "w" / "nnUNet_results" / "Dataset501_BraTSGpuCheck"
    fold = dataset / f"{step.trainer}__{step.plans}__2d" / "fold_0"
    (fold / "validation").mkdir(parents=True)
    (fold / "training_log_2026_1_1_00_00_00.txt").write_text(
        "2026-01-01 00:00:01.000000: Epoch time: 95.2 s\n...\n2026-01-01 00:02:00.000000: Epoch time: 12.5 s\n"
        "2026-01-01 00:02:13.000000: Epoch time: 12.75 s\n2026-01-01 00:02:26.000000: Epoch time: 13.0 s\n")
    (fold / "validation" / "summary.json").write_text(json.dumps(
        {"foreground_mean": {"Dice": 0.8125}, "metric_per_case": [{}, {}]}))
    result = gpu_check.training_result(step, settings)
    assert result == {"epochs": 4, "first_epoch_s": 95.2, "median_epoch_s": 12.75, "dice": 0.8125,
                      "validation_cases": 2}
    machine = {"device": "NVIDIA X", "torch": "2", "cuda": "13", "bf16": True, "nnunetv2": "2.8.1",
               "python": "3", "cpu_cores": 16, "date": "today"}
    page = gpu_check.gpu_check_page(machine, settings, [{"label": "Ours", "trainer": step.trainer, "plans": step.plans,
                                                         "wall_s": 600, **result}])
    row = "| Ours | SAMCrossModalTrainer_gpucheck | nnUNetSAMPlans | 4 | 95.2 | 12.8 | 10.0 | 0.812 (2 cases) |"
    assert row in page
    assert "Device: NVIDIA X" in page and "20 epochs x 100 iterations" in page
