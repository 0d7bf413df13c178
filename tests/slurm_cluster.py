"""The local SLURM cluster for tests: is it up, a fixture that runs/fails/skips SLURM tests, bounded waits.

Start the cluster with `scripts/slurm_single_node.sh start` (root). A test that needs SLURM takes the
`slurm_cluster` fixture (registered in conftest.py): with the cluster up it gets a `SlurmCluster`; with
CI=true and no cluster the test FAILS with the reason (CI must run these tests); elsewhere it is skipped
with the reason. Wait for jobs with `wait_for_result` (bounded: a job that dies without a result
would make a bare `job.result()` wait until sacct reports its end).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PARTITION = "debug"  # the one (default) partition scripts/slurm_single_node.sh configures
UP_STATES = ("idle", "mixed", "allocated", "completing")


def _slurm_command(args: list, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def slurm_available() -> tuple:
    """(True, "node ... idle") when sinfo answers and a node takes jobs, else (False, why not)."""
    if shutil.which("sinfo") is None:
        return False, "sinfo not found: start the local cluster with `scripts/slurm_single_node.sh start`"
    try:
        result = _slurm_command(["sinfo", "-h", "-N", "-o", "%N %T"])
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer within 15 s (slurmctld down?)"
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        return False, f"sinfo failed: {reason[-1] if reason else result.returncode} (slurmctld down?)"
    nodes = [line.split() for line in result.stdout.splitlines() if line.strip()]
    for name, state in nodes:
        if state.rstrip("*~#").lower() in UP_STATES:
            return True, f"node {name} {state}"
    return False, f"no SLURM node takes jobs (sinfo: {', '.join(' '.join(n) for n in nodes) or 'no nodes'})"


@dataclass(frozen=True)
class SlurmCluster:
    """The running cluster, as a test sees it."""

    partition: str
    node_state: str

    def executor(self, folder: Path, timeout_min: int = 5, **slurm_params):
        """submitit's AutoExecutor on this cluster's partition, one CPU per job by default."""
        import submitit

        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(
            timeout_min=timeout_min, slurm_partition=self.partition, cpus_per_task=1, **slurm_params
        )
        return executor


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The local SLURM cluster; FAILS the test under CI=true when it is not up, skips it elsewhere."""
    up, reason = slurm_available()
    if not up:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but SLURM is not up: {reason}", pytrace=False)
        pytest.skip(f"SLURM is not up: {reason}")
    return SlurmCluster(partition=PARTITION, node_state=reason)


def job_state(job_id: str) -> str:
    """SLURM state of a job from squeue ('RUNNING', 'PENDING', ...), '' once it left the queue."""
    result = _slurm_command(["squeue", "-h", "-j", str(job_id), "-o", "%T"])
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else ""


def wait_for_state(job_id: str, state: str, timeout_s: float = 60) -> None:
    """Waits until squeue shows the job in `state`; fails the test with the state seen otherwise."""
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        seen = job_state(job_id)
        if seen == state:
            return
        time.sleep(0.5)
    pytest.fail(f"SLURM job {job_id} not {state} after {timeout_s:.0f} s (last state: {seen or 'gone'})")


def wait_for_result(job, timeout_s: float = 120):
    """job.result() with a deadline. On timeout the job is cancelled and the test fails with its log
    tails and its squeue state."""
    deadline = time.monotonic() + timeout_s
    while not job.paths.result_pickle.exists():
        if time.monotonic() > deadline:
            subprocess.run(["scancel", str(job.job_id)], capture_output=True)
            logs = "\n".join(
                f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-20:])
                for p in (job.paths.stdout, job.paths.stderr)
                if p.exists()
            )
            pytest.fail(
                f"SLURM job {job.job_id} gave no result after {timeout_s:.0f} s "
                f"(squeue: {job_state(job.job_id) or 'gone'})\n{logs}",
                pytrace=False,
            )
        time.sleep(0.5)
    return job.result()
