"""`--status`: one line per (method, fold): finished / damaged / failed / running / pending / not run.

Read from the outputs alone (any machine that sees OUT can ask): the run record (finished), the state
file the job writes (running, failed + its error line), OUT/jobs/submitted.json (job id and logs of a
submitted run) and, for SLURM jobs, SLURM's own state (sacct through submitit): a job that ended
without a record (killed, out of memory, time limit without requeue) is failed, not running forever.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_sam_adapter.benchmark.layout import OutputLayout
from nnunet_sam_adapter.benchmark.collect import pid_alive, run_state
from nnunet_sam_adapter.paths import load_json, nnunet_dirs

ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE")


def _job_state(entry: dict) -> str:
    """SLURM state of a submitted job ('RUNNING', 'PENDING', 'FAILED', ...), or of a local process."""
    if entry["executor"] == "slurm":
        import submitit

        try:
            return submitit.SlurmJob(folder=entry["folder"], job_id=entry["job_id"]).state.split()[0]
        except Exception:  # noqa: BLE001 - sacct unavailable: no extra information
            return "UNKNOWN"
    return "UNKNOWN"


def _last_line(path: str | None) -> str:
    try:
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except (OSError, TypeError):
        return ""
    return lines[-1].strip() if lines else ""


def run_status(layout: OutputLayout, method: str, fold: int, submitted: dict) -> dict:
    """{'state', 'job_id', 'log', 'error'} of one (method, fold)."""
    state = run_state(layout, method, fold)
    entry = submitted.get(f"{method}/fold_{fold}")
    log = str(layout.log_file(method, fold))
    out = {"state": state["state"], "job_id": (entry or {}).get("job_id") or state.get("job_id"), "log": log,
           "error": state.get("error", "")}
    if out["state"] in ("finished", "damaged"):
        return out
    job = _job_state(entry) if entry else "UNKNOWN"
    if out["state"] == "running":
        local_dead = (entry or {}).get("executor") != "slurm" and not pid_alive(state.get("pid"))
        if job in ENDED or (job == "UNKNOWN" and local_dead):
            out.update(state="failed", error=f"job ended ({job if job != 'UNKNOWN' else 'process gone'}) without "
                                             f"a result; {_last_line(entry and entry.get('stderr'))}")
    elif out["state"] == "not run" and entry and entry["executor"] == "slurm":
        if job in ENDED:
            out.update(state="failed", error=f"job ended ({job}) before starting the run; "
                                             f"{_last_line(entry.get('stderr'))}")
        else:
            out["state"] = "pending"
        out["log"] = entry.get("stderr", log)
    return out


def status_lines(layout: OutputLayout, methods, folds: list[int], seed: int = 0,
                 jobs_dir: Path | None = None) -> list[tuple[str, str]]:
    """(text, state) per (method, fold) of one seed's tree (`layout`); the jobs were submitted from `jobs_dir`."""
    submitted = load_json((jobs_dir or layout.jobs_dir) / "submitted.json") or {}
    lines = []
    for fold in folds:
        for method in methods:
            s = run_status(layout, method, fold, submitted)
            job = f" (job {s['job_id']})" if s["job_id"] and s["state"] in ("running", "pending", "failed") else ""
            where = f"fold {fold}" + (f" seed {seed}" if seed else "")
            line = f"{method:<18} {where}  {s['state']}{job}  log: {s['log']}"
            if s["state"] in ("failed", "damaged") and s["error"]:
                line += f"\n{'':<26}error: {s['error']}"
            lines.append((line, s["state"]))
    return lines


def print_status(dataset, methods, fold: int, folds: list | None, output_dir, seeds: int = 1) -> int:
    """Print the status lines (every seed's) and a count per state; exit code 0."""
    from nnunet_sam_adapter.benchmark.layout import resolve_folds, seed_root
    from nnunet_sam_adapter.benchmark.pipeline import output_layout

    _, preprocessed, results_dir = nnunet_dirs(dataset)
    fold_list = resolve_folds(preprocessed, load_json(preprocessed / "dataset.json"), [fold] if folds is None else folds)
    layout = output_layout(results_dir, output_dir, None if folds is None else fold_list, fold)
    lines = [line for seed in range(seeds) for line in status_lines(
        OutputLayout(seed_root(layout.root, seed), layout.single_fold), methods, fold_list, seed, layout.jobs_dir)]
    print(*(text for text, _ in lines), sep="\n")
    counts = {}
    for _, state in lines:
        counts[state] = counts.get(state, 0) + 1
    print("runs: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    return 0
