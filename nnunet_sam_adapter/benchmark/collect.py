"""Collect the finished runs of a fold (or of all folds) and write its tables, figures and results.json.

A reporting step never discards finished work: a requested run that is not finished is listed as
missing with the reason (failed: its error line; running; not run), and every table or figure that can
be written is written: one that fails is named in `results['report_errors']` and the others go on.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from tqdm import tqdm

from nnunet_sam_adapter.benchmark.layout import OutputLayout
from nnunet_sam_adapter.evaluation.postprocessing import postprocessed_record
from nnunet_sam_adapter.paths import load_json


def run_state(layout: OutputLayout, method: str, fold: int) -> dict:
    """{'state': 'finished' | 'failed' | 'running' | 'not run', ...} from the run's record and state files."""
    if layout.run_record(method, fold).is_file():
        return {"state": "finished"}
    state = load_json(layout.run_state(method, fold))
    if not state or state.get("state") == "finished":  # finished, but its record is gone
        return {"state": "not run"}
    return state


def missing_reason(state: dict) -> str:
    if state["state"] == "failed":
        return f"failed: {state.get('error', '?')} (log: {state.get('log', '?')})"
    if state["state"] == "running":
        if state.get("host") == socket.gethostname() and not pid_alive(state.get("pid")):
            return f"failed: its process ended without a result (log: {state.get('log', '?')})"
        return f"still running (job {state.get('job_id') or state.get('pid')})"
    return state["state"]


def pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def collect_runs(layout: OutputLayout, methods, folds) -> tuple[dict, dict]:
    """({fold: {method: record}}, {fold: {method: why missing}}) for the requested methods and folds."""
    finished, missing = {}, {}
    for fold in folds:
        finished[fold], missing[fold] = {}, {}
        for method in methods:
            record = load_json(layout.run_record(method, fold))
            if record is not None:
                finished[fold][method] = record
                postprocessed = postprocessed_record(record)  # its row after nnU-Net's postprocessing
                if postprocessed is not None:
                    finished[fold][postprocessed["method"]] = postprocessed
            else:
                missing[fold][method] = missing_reason(run_state(layout, method, fold))
    return finished, missing


def write_outputs(results: dict, output_dir: Path, writers: dict) -> dict:
    """Run each writer (name -> f(results, output_dir) -> {file: path}, stored as results[name]); a failing
    one is reported in results['report_errors'], not fatal. Writes results.json last. Returns {file: path}."""
    written, errors = {}, {}
    results["report_errors"] = errors  # filled as writers fail: tables written last can list the failures
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, writer in writers.items():
        try:
            results[name] = writer(results, output_dir) or {}
            written.update(results[name])
        except Exception as error:  # noqa: BLE001 - the other tables still get written
            results[name] = {}
            errors[name] = f"{type(error).__name__}: {error}"
            tqdm.write(f"{name} not written: {errors[name]}")
    from nnunet_sam_adapter.atomic_io import atomic_write_json

    atomic_write_json(output_dir / "results.json", json.loads(json.dumps(results, default=str)))
    written["results.json"] = str(output_dir / "results.json")
    return written
