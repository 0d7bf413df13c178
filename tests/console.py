"""Running the console commands from tests: nnU-Net folders in a tmp dir and a checked subprocess."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
from pathlib import Path

import pytest


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


def tree_hashes(folder: Path) -> dict:
    """{relative path: sha256} of every file under `folder` (inputs must stay byte-identical)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def fails(capsys, main, *argv, code=1) -> str:
    """Run a command's main, expect exit ``code`` and one line on stderr (no numpy type names in it);
    return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # drop tqdm bars
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "np.int" not in lines[0] and "np.float" not in lines[0], lines[0]
    return lines[0]
