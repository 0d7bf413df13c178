"""Collect the finished runs of a fold (or of all folds) from the output tree, and why the others are missing.

A reporting step never discards finished work: a requested run that is not finished is listed as
missing with the reason (failed: its error line; running; not run). A finished run whose result files
are damaged (its record cut short or without its fields, a metrics CSV cut inside a row, a row lost, a
number that differs from the run's recorded summary: evaluation/result_files.py) is not reported from
them: it is listed as "damaged: FILE: what is wrong: what was expected", and `damaged_runs` gives those
for the benchmark's exit code.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from nnunet_sam_adapter.benchmark.layout import OutputLayout
from nnunet_sam_adapter.evaluation.postprocessing import postprocessed_record
from nnunet_sam_adapter.evaluation.result_files import ResultFileError, read_evaluation
from nnunet_sam_adapter.paths import load_json


def run_state(layout: OutputLayout, method: str, fold: int) -> dict:
    """{'state': 'finished' | 'damaged' | 'failed' | 'running' | 'not run', ...} from the run's record and state
    files (damaged: its record or a result file it points at is damaged; 'error' says which and how)."""
    if layout.run_record(method, fold).is_file():
        try:
            checked_record(layout, method, fold)
        except ResultFileError as error:
            return {"state": DAMAGED, "error": str(error)}
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


DAMAGED = "damaged"
RECORD_FIELDS = ("method", "label", "trainer", "plans", "configuration", "fold", "status", "budget",
                 "evaluation_dir", "validation_dir", "summary")
SUMMARY_FIELDS = ("volume", "slice", "classes", "cases")
_REWRITE = "expected the complete record the run writes (run this (method, fold) again without --aggregate-only)"


def read_run_record(path: Path, method: str, fold: int) -> dict | None:
    """The run record at `path`, None when there is none (not finished); ResultFileError when it is there but
    cut short, not JSON, or without the fields the reports read."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"unreadable ({error}): {_REWRITE}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultFileError(path, f"not valid JSON, cut short? ({error}): {_REWRITE}") from None
    if not isinstance(record, dict):
        raise ResultFileError(path, f"holds a JSON {type(record).__name__}, not an object: {_REWRITE}")
    summary = record.get("summary")
    lacking = [k for k in RECORD_FIELDS if k not in record]
    lacking += [f"summary.{k}" for k in SUMMARY_FIELDS if isinstance(summary, dict) and k not in summary]
    if not isinstance(summary, dict) and "summary" not in lacking:
        lacking.append("summary (an object)")
    if lacking:
        raise ResultFileError(path, f"lacks field(s) {', '.join(lacking)}: {_REWRITE}")
    if record["method"] != method or record["fold"] != fold:
        raise ResultFileError(path, f"is the record of {record['method']}/fold_{record['fold']}: expected the one of "
                                    f"{method}/fold_{fold}")
    return record


def checked_record(layout: OutputLayout, method: str, fold: int) -> list[dict] | None:
    """The run's record and, when nnU-Net's postprocessing was evaluated, its METHOD_pp record, every result
    file they point at read completely and checked against the recorded summaries; None when not finished.
    Raises ResultFileError naming the damaged file."""
    record = read_run_record(layout.run_record(method, fold), method, fold)
    if record is None:
        return None
    records = [record]
    postprocessed = postprocessed_record(record)  # its row after nnU-Net's postprocessing
    if postprocessed is not None:
        records.append(postprocessed)
    for entry in records:
        read_evaluation(entry["evaluation_dir"], entry["summary"])
    return records


def collect_runs(layout: OutputLayout, methods, folds) -> tuple[dict, dict]:
    """({fold: {method: record}}, {fold: {method: why missing}}) for the requested methods and folds."""
    finished, missing = {}, {}
    for fold in folds:
        finished[fold], missing[fold] = {}, {}
        for method in methods:
            try:
                records = checked_record(layout, method, fold)
            except ResultFileError as error:
                missing[fold][method] = f"{DAMAGED}: {error}"
                continue
            if records is not None:
                for record in records:
                    finished[fold][record["method"]] = record
            else:
                missing[fold][method] = missing_reason(run_state(layout, method, fold))
    return finished, missing


def damaged_runs(missing: dict, seed: int = 0) -> dict:
    """{'METHOD/fold_F[/seed_K]': 'damaged: FILE: ...'} of collect_runs' missing runs (of seed `seed`'s
    folder) whose result files are damaged; the keys are the runs' names (RunSpec.name)."""
    suffix = f"/seed_{seed}" if seed else ""
    return {f"{method}/fold_{fold}{suffix}": why for fold, per_method in missing.items()
            for method, why in per_method.items() if why.startswith(f"{DAMAGED}: ")}
