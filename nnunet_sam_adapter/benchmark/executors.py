"""Where the (method, fold) runs execute: inline (this process), local (one process each, submitit's
LocalExecutor, at most `max_parallel` at a time) or slurm (one SLURM job each, one job array).

Every run is `runner.run_method_fold(spec)`. On SLURM the job is a submitit `Checkpointable`: on a
time limit or preemption submitit requeues it, and `scontrol requeue` reruns it too; the rerun resumes
the training from nnU-Net's checkpoint_latest.pth (see `benchmark.reuse`). Job ids and log paths are
kept in OUT/jobs/submitted.json for `--status`.

`end_child_processes()` ends every process this one started, at any depth (nnU-Net's data-loader
workers, submitit's local jobs and their workers): the benchmark command calls it on SIGTERM / SIGINT.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass, field, replace

import submitit
from tqdm import tqdm

from nnunet_sam_adapter.training.budget import describe_budget
from nnunet_sam_adapter.benchmark.layout import BenchmarkError, OutputLayout
from nnunet_sam_adapter.benchmark.runner import RunSpec, run_method_fold
from nnunet_sam_adapter.atomic_io import atomic_write_json
from nnunet_sam_adapter.paths import load_json

EXECUTORS = ("inline", "local", "slurm")
SUBMITTED = "submitted.json"


@dataclass(frozen=True)
class ExecutorOptions:
    """--executor and its options. `slurm_time`: minutes, or SLURM's [D-]HH:MM[:SS]."""

    kind: str = "inline"
    max_parallel: int = 1
    wait: bool = True
    slurm_partition: str | None = None
    slurm_account: str | None = None
    slurm_gpus_per_job: int = 1
    slurm_cpus_per_job: int | None = None
    slurm_mem: str | None = None
    slurm_time: str = "24:00:00"
    slurm_array_parallelism: int | None = None
    slurm_extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ValueError(f"unknown executor {self.kind!r}; expected one of {', '.join(EXECUTORS)}")
        if self.max_parallel < 1 or self.slurm_gpus_per_job < 0:
            raise ValueError("--max-parallel must be >= 1 and --slurm-gpus-per-job >= 0")
        time_minutes(self.slurm_time)


def time_minutes(text: str | int) -> int:
    """'90' -> 90, '02:30:00' -> 150, '1-00:00' -> 1440 (SLURM's --time formats)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not match:
        raise ValueError(f"--slurm-time {text!r}: expected minutes or [D-]HH:MM[:SS]")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if b is None and days is None:
        return a                                        # minutes
    hours, minutes, seconds = a, b or 0, c or 0
    return (days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


class RunJob(submitit.helpers.Checkpointable):
    """The submitit job of one (method, fold): requeued on timeout/preemption with the same spec."""

    def __call__(self, spec: RunSpec) -> dict:
        return run_method_fold(spec)


def slurm_parameters(options: ExecutorOptions) -> dict:
    """AutoExecutor parameters of the --slurm-* options."""
    params = {"timeout_min": time_minutes(options.slurm_time), "slurm_job_name": "nnsam_benchmark", "tasks_per_node": 1}
    if options.slurm_gpus_per_job > 0:  # a CPU partition may have no GRES at all: ask for none, not for 0
        params["gpus_per_node"] = options.slurm_gpus_per_job
    for key, value in (("slurm_partition", options.slurm_partition), ("slurm_account", options.slurm_account),
                       ("cpus_per_task", options.slurm_cpus_per_job), ("slurm_mem", options.slurm_mem),
                       ("slurm_array_parallelism", options.slurm_array_parallelism)):
        if value is not None:
            params[key] = value
    if options.slurm_extra:
        params["slurm_additional_parameters"] = dict(options.slurm_extra)
    return params


def _record_jobs(layout: OutputLayout, kind: str, specs: list[RunSpec], jobs: list) -> None:
    path = layout.jobs_dir / SUBMITTED
    submitted = load_json(path) or {}
    for spec, job in zip(specs, jobs):
        submitted[spec.name] = {"executor": kind, "job_id": str(job.job_id), "folder": str(job.paths.folder),
                                "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
                                "submitted": time.time()}
    atomic_write_json(path, submitted)


def _error_line(spec: RunSpec, error: BaseException) -> str:
    state = load_json(spec.layout.run_state(spec.method, spec.fold)) or {}
    if state.get("state") == "failed" and state.get("error"):
        return state["error"]
    if isinstance(error, submitit.core.utils.UncompletedJobError):
        # no result and no Python error: the process was killed (the kernel's OOM killer, a scheduler limit,
        # kill -9); submitit's message ends with whatever the job printed last, often a progress bar.
        return (f"its process ended without a result or a Python error: killed from outside (out of memory? "
                f"see dmesg, or sacct on SLURM); log: {spec.layout.log_file(spec.method, spec.fold)}")
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"


def _wait(specs: list[RunSpec], jobs: list, errors: dict) -> None:
    with tqdm(total=len(jobs), desc="runs", unit="run") as bar:
        pending = list(zip(specs, jobs))
        while pending:
            still = []
            for spec, job in pending:
                if job.done():
                    try:
                        job.result()
                    except Exception as error:  # noqa: BLE001 - reported per run, the others go on
                        errors[spec.name] = _error_line(spec, error)
                    bar.update(1)
                else:
                    still.append((spec, job))
            pending = still
            if pending:
                time.sleep(2)


def _run_inline(specs: list[RunSpec]) -> dict:
    errors = {}
    for spec in tqdm(specs, desc="runs", unit="run"):
        try:
            record = run_method_fold(spec)
            tqdm.write(f"{spec.method}: {record['status']} (fold {spec.fold}, {describe_budget(record['budget'])})")
        except Exception as error:  # noqa: BLE001 - one failed run must not discard the others
            errors[spec.name] = _error_line(spec, error)
            tqdm.write(f"{spec.name}: FAILED ({errors[spec.name]})")
    return errors


def _run_local(specs: list[RunSpec], options: ExecutorOptions, layout: OutputLayout) -> dict:
    """Waves of at most max_parallel processes (submitit's LocalExecutor has no array throttle)."""
    executor = submitit.LocalExecutor(folder=layout.jobs_dir / "local")
    executor.update_parameters(timeout_min=time_minutes(options.slurm_time), **local_gpu_parameters(specs))
    errors, running, queue = {}, [], list(specs)
    try:
        _local_waves(executor, queue, running, errors, options.max_parallel, layout)
    except BaseException:  # interrupted: the local processes must not outlive this command
        for _, job in running:
            job.cancel(check=False)
        raise
    return errors


def local_gpu_parameters(specs: list[RunSpec], environ=None, device_count=None) -> dict:
    """submitit's LocalExecutor sets each job's CUDA_VISIBLE_DEVICES to its first `gpus_per_node` GPUs,
    none by default, which hides the GPU from a `-device cuda` run: the local runs share the GPUs this
    process sees instead (its CUDA_VISIBLE_DEVICES, else every GPU torch counts)."""
    if not any(spec.device == "cuda" for spec in specs):
        return {}
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        if device_count is None:
            import torch

            device_count = torch.cuda.device_count()
        ids = tuple(range(device_count))
    else:
        try:
            ids = tuple(int(i) for i in visible.split(",") if i.strip())
        except ValueError:
            raise BenchmarkError(f"CUDA_VISIBLE_DEVICES={visible}: --executor local passes GPUs to its runs by "
                                 f"index; name them by index (e.g. 0,1), not by UUID") from None
    return {"gpus_per_node": len(ids), "visible_gpus": ids}


def _local_waves(executor, queue: list, running: list, errors: dict, max_parallel: int, layout: OutputLayout) -> None:
    with tqdm(total=len(queue), desc="runs", unit="run") as bar:
        while queue or running:
            while queue and len(running) < max_parallel:
                spec = queue.pop(0)
                job = executor.submit(RunJob(), spec)
                _record_jobs(layout, "local", [spec], [job])
                running.append((spec, job))
            done = [(s, j) for s, j in running if j.done()]
            for spec, job in done:
                try:
                    job.result()
                except Exception as error:  # noqa: BLE001
                    errors[spec.name] = _error_line(spec, error)
                running.remove((spec, job))
                bar.update(1)
            if not done:
                time.sleep(1)


def _run_slurm(specs: list[RunSpec], options: ExecutorOptions, layout: OutputLayout) -> dict:
    executor = submitit.AutoExecutor(folder=layout.jobs_dir / "slurm" / "%j", cluster="slurm")
    executor.update_parameters(**slurm_parameters(options))
    specs = [replace(spec, num_gpus=max(1, options.slurm_gpus_per_job)) for spec in specs]
    jobs = executor.map_array(RunJob(), specs)
    _record_jobs(layout, "slurm", specs, jobs)
    tqdm.write(f"submitted {len(jobs)} SLURM job(s): array {jobs[0].job_id.split('_')[0] if jobs else '-'}")
    errors = {}
    if options.wait:
        _wait(specs, jobs, errors)
    return errors


def _children_by_parent() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} of every process (Linux /proc; empty elsewhere)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after 'pid (comm) state'
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendant_pids(pid: int | None = None) -> list[int]:
    """Every process below `pid` (default: this one), parents before their children."""
    tree, found, queue = _children_by_parent(), [], [os.getpid() if pid is None else pid]
    while queue:
        children = tree.get(queue.pop(0), [])
        found += children
        queue += children
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def end_child_processes(grace_seconds: float = 5.0) -> list[int]:
    """SIGTERM every descendant (the whole tree is listed first, so none escapes by being re-parented),
    SIGKILL those still alive after `grace_seconds`; returns the pids that were signalled."""
    pids = descendant_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids + descendant_pids():  # and anything started meanwhile
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for pid in pids:  # reap our direct children that are now zombies
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return pids


def run_specs(specs: list[RunSpec], options: ExecutorOptions, layout: OutputLayout) -> dict[str, str]:
    """Run every spec with the chosen executor; returns {spec.name: error line} of the failed runs."""
    if not specs:
        return {}
    if options.kind == "inline":
        return _run_inline(specs)
    layout.jobs_dir.mkdir(parents=True, exist_ok=True)
    if options.kind == "local":
        return _run_local(specs, options, layout)
    return _run_slurm(specs, options, layout)
