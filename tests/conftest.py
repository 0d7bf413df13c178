"""Shared test setup: nnU-Net env vars pointing into tmp folders, sized for a 2-core CPU machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# nnU-Net defaults to 8 export workers and several augmentation workers, each importing torch: on a
# 2-core CI machine that costs more than the work. (0 workers would break nnU-Net's planner.)
os.environ.setdefault("nnUNet_def_n_proc", "2")
os.environ.setdefault("nnUNet_n_proc_DA", "1")
os.environ.setdefault("nnUNet_compile", "false")
# Console scripts (nnUNetv2_*) live next to the interpreter running the tests, venv activated or not.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch) -> dict:
    """nnUNet_raw / _preprocessed / _results in tmp_path and nnUNet_extTrainer -> our trainers.
    Returns the environment for subprocesses (os.environ with these set)."""
    from nnunet_sam_adapter.cli.trainer_dir import trainer_dir

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("nnUNet_extTrainer", trainer_dir())
    return dict(os.environ)


def real_data_dir() -> Path:
    """../shared/data/real next to the repository, or $NNSAM_REAL_DATA."""
    if os.environ.get("NNSAM_REAL_DATA"):
        return Path(os.environ["NNSAM_REAL_DATA"])
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
