"""Collect the finished runs of a fold (or of all folds) from the output tree, and why the others are missing.

A reporting step never discards finished work: a requested run that is not finished is listed as
missing with the reason (failed: its error line; running; not run).
"""

from __future__ import annotations

import os
import socket

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
