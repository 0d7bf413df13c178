"""Shared test setup: nnU-Net sized for a 2-core CPU machine, console scripts on PATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# nnU-Net defaults to 8 export workers and several augmentation workers, each importing torch: on a
# 2-core CI machine that costs more than the work. (0 workers would break nnU-Net's planner.)
os.environ.setdefault("nnUNet_def_n_proc", "2")
os.environ.setdefault("nnUNet_n_proc_DA", "1")
os.environ.setdefault("nnUNet_compile", "false")
# Console scripts (nnUNetv2_*) live next to the interpreter running the tests, venv activated or not.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

# `slurm_cluster` fixture for SLURM tests: runs them on the local cluster, fails them under CI=true when
# it is down, skips them elsewhere (tests/slurm_cluster.py).
from slurm_cluster import slurm_cluster  # noqa: E402,F401
