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


# Heavy groups that `make test` leaves to `make test-all` (setup.cfg declares the markers). They are set
# here, from the module or the fixture a test uses, so a new test in these files cannot escape its group.
HEAVY_MODULES = {
    "test_compile": "compile",                          # dynamo graphs + compiled fwd/bwd
    "test_ddp": "ddp",                                  # two gloo ranks in subprocesses
    "test_mixed_precision_training": "mixed_precision",  # short trainings in two precisions
}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in HEAVY_MODULES:
            item.add_marker(getattr(pytest.mark, HEAVY_MODULES[module]))
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)

# `planned_dataset`: one converted + planned tiny dataset per session (tests/planned_dataset.py).
from planned_dataset import planned_dataset  # noqa: E402,F401
