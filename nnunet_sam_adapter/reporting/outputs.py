"""Write one report folder: every table and figure that can be written, then results.json.

A writer that fails is named in `results['report_errors']` and the others go on, so a reporting step
never discards finished work.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from nnunet_sam_adapter.atomic_io import atomic_write_json


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
    atomic_write_json(output_dir / "results.json", json.loads(json.dumps(results, default=str)))
    written["results.json"] = str(output_dir / "results.json")
    return written
