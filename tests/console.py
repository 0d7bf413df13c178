"""Running the console commands from tests: nnU-Net folders in a tmp dir and a checked subprocess."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path


def nnunet_env_in(root: Path) -> dict:
    """os.environ with nnUNet_raw / _preprocessed / _results created under `root` and nnUNet_extTrainer
    pointing at our trainers."""
    from nnunet_sam_adapter.paths import trainer_dir

    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / name)
    env["nnUNet_extTrainer"] = trainer_dir()
    return env


def run(command: list, env: dict) -> str:
    """Runs a console command; fails the test with the tail of its output when it fails."""
    result = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command[0]} failed ({result.returncode}):\n{output[-4000:]}"
    return output


def read_csv(path) -> list[dict]:
    """Rows of a CSV file written by the package (header = keys)."""
    with open(path) as f:
        return list(csv.DictReader(f))
