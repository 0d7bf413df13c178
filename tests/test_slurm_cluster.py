"""The local SLURM cluster runs submitit jobs, and a requeued running job resumes and finishes.

Needs `scripts/slurm_single_node.sh start` (see tests/slurm_cluster.py: fails under CI=true without it,
skips elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

from slurm_cluster import wait_for_result, wait_for_state

# The job's python cannot import this test module (tests/ is not on its sys.path): ship its code by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _where_am_i(x: int) -> dict:
    return {
        "square": x * x,
        "python": sys.executable,
        "cwd": os.getcwd(),
        "env": os.environ.get("NNSAM_SLURM_TEST_MARKER"),
        "job_id": os.environ.get("SLURM_JOB_ID"),
    }


def test_submitit_job_runs_on_the_cluster(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("NNSAM_SLURM_TEST_MARKER", "inherited")
    monkeypatch.chdir(tmp_path)
    job = slurm_cluster.executor(tmp_path / "submitit").submit(_where_am_i, 7)
    result = wait_for_result(job, timeout_s=90)
    assert result["square"] == 49
    assert result["job_id"] == str(job.job_id)  # it ran under SLURM, not in-process
    # Jobs see the submitting environment, working directory and interpreter (sbatch --export=ALL).
    assert result["env"] == "inherited"
    assert Path(result["cwd"]).resolve() == tmp_path.resolve()
    assert Path(result["python"]).resolve() == Path(sys.executable).resolve()
    # submitit reads job states from sacct: the cluster keeps accounting, as real clusters do.
    for _ in range(30):
        if job.get_info(mode="force").get("State") == "COMPLETED":
            break
        time.sleep(1)
    assert job.state == "COMPLETED"


class CountWithCheckpoints(submitit.helpers.Checkpointable):
    """Counts to `steps` (0.5 s each), saving progress after every step, as nnU-Net saves
    checkpoint_latest.pth: a rerun continues from the saved step. Every start is logged."""

    def __init__(self, folder: Path, steps: int):
        self.folder, self.steps = Path(folder), steps

    def __call__(self) -> int:
        import time

        progress = self.folder / "progress.txt"
        done = int(progress.read_text()) if progress.exists() else 0
        with open(self.folder / "starts.txt", "a") as starts:
            starts.write(f"{done} {os.environ.get('SLURM_RESTART_COUNT', '0')}\n")
        for step in range(done, self.steps):
            time.sleep(0.5)
            tmp = progress.with_suffix(".tmp")
            tmp.write_text(str(step + 1))
            tmp.replace(progress)
        return self.steps


def _progress(folder: Path) -> int:
    path = folder / "progress.txt"
    return int(path.read_text()) if path.exists() else 0


@pytest.mark.parametrize("how", ["scontrol_requeue", "preemption_signal"])
def test_requeued_running_job_resumes_and_finishes(slurm_cluster, tmp_path, how):
    """`scontrol requeue` (SLURM kills and reruns the job) and a preemption/timeout signal (submitit
    checkpoints and requeues the job itself): either way the job runs again, from its saved progress."""
    steps = 16
    job = slurm_cluster.executor(tmp_path / "submitit").submit(CountWithCheckpoints(tmp_path, steps))
    wait_for_state(job.job_id, "RUNNING", timeout_s=60)
    deadline_steps = 3
    for _ in range(120):  # let it make some progress first (up to 60 s: the machine is shared)
        if _progress(tmp_path) >= deadline_steps:
            break
        subprocess.run(["sleep", "0.5"])
    assert _progress(tmp_path) >= deadline_steps, "the job made no progress before the requeue"
    if how == "scontrol_requeue":
        subprocess.run(["scontrol", "requeue", str(job.job_id)], check=True, capture_output=True)
    else:
        job._interrupt()  # submitit's own test hook: SIGTERM then USR2, as SLURM does on preemption

    assert wait_for_result(job, timeout_s=120) == steps
    starts = [line.split() for line in (tmp_path / "starts.txt").read_text().splitlines()]
    assert len(starts) == 2, f"expected one rerun, got starts {starts}"
    (first_from, first_restarts), (second_from, second_restarts) = starts
    assert (first_from, first_restarts) == ("0", "0")
    assert second_restarts == "1"  # SLURM itself requeued it: same job id, restart count 1
    assert int(second_from) >= deadline_steps  # resumed from its progress, not from scratch
