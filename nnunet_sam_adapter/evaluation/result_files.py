"""Reading back the per-case CSVs `evaluate_folders` writes, completely or not at all.

A report must never show a number from a damaged file: a CSV cut inside its last row still parses with
Python's csv module (the cut row just has fewer fields, or a number that lost its last digits), so each
file is checked before its rows are used:

- it ends with a newline (`atomic_io.csv_text` ends every row with one; a file cut inside a row does not),
- every row has every column of the header, and each number parses and is finite,
- against the run that wrote it (`check_against_summary`): the same classes, and per class the same
  number of rows and the same mean Dice and HD95 as the run's recorded summary (evaluate_folders'
  summary, computed from the same rows before they were written). A row lost at a line boundary or a
  digit changed anywhere shows up there.

Raises ResultFileError naming the file, what is wrong and what was expected.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from nnunet_sam_adapter.evaluation.metrics import METRIC_NAMES, summarize

VOLUME_CSV = "metrics_volume.csv"
SLICES_CSV = "metrics_slices.csv"
CASES_CSV = "metrics_cases.csv"

# Columns each file must hold and how each is parsed: float (finite), int, str, or "float?" (empty allowed:
# a class absent from every slice has no slice score in metrics_cases.csv).
COLUMNS = {
    VOLUME_CSV: {"case": str, "class": str, "dice": float, "hd95": float, "ref_voxels": int, "pred_voxels": int},
    SLICES_CSV: {"case": str, "class": str, "slice": int, "dice": float, "hd95": float},
    CASES_CSV: {"case": str, "class": str, "volume_dice": float, "volume_hd95": float, "ref_voxels": int,
                "pred_voxels": int, "n_slices": int, "slice_dice_mean": "float?", "slice_hd95_mean": "float?"},
}
RELATIVE_TOLERANCE = 1e-9  # floats are written with repr() and read back exactly; this only absorbs summing order


class ResultFileError(ValueError):
    """A result file that is missing, cut short or inconsistent with its run; the message names the file."""

    def __init__(self, file, problem: str):
        self.file, self.problem = str(file), problem
        super().__init__(f"{file}: {problem}")

    def __reduce__(self):
        return type(self), (self.file, self.problem)


def _parse(kind, text: str):
    if kind == "float?":
        return None if text == "" else _parse(float, text)
    value = kind(text)
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    if kind is str and value == "":
        raise ValueError("empty")
    return value


def read_metric_rows(path: str | Path) -> list[dict]:
    """The rows of one of evaluate_folders' per-case CSVs (its name says which), every column parsed
    (floats for the scores, ints for counts, None for an empty optional score). Raises ResultFileError."""
    path = Path(path)
    columns = COLUMNS[path.name]
    expected = "expected the complete file nnUNetv2_sam_evaluate writes (re-run the evaluation)"
    try:
        with open(path, newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise ResultFileError(path, f"file not found: {expected}") from None
    except UnicodeDecodeError as error:
        raise ResultFileError(path, f"not text ({error.reason}): {expected}") from None
    if not text.endswith(("\n", "\r")):
        raise ResultFileError(path, f"ends inside a row (cut short): {expected}")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    missing = [c for c in columns if c not in (header or [])]
    if missing:
        raise ResultFileError(path, f"header lacks column(s) {', '.join(missing)}: {expected}")
    rows = []
    for values in reader:
        line = reader.line_num
        if len(values) != len(header):
            raise ResultFileError(path, f"row {line} has {len(values)} of {len(header)} fields: {expected}")
        row = dict(zip(header, values))
        for column, kind in columns.items():
            try:
                row[column] = _parse(kind, row[column])
            except ValueError:
                raise ResultFileError(path, f"row {line}: {column} {row[column]!r} is not a valid "
                                            f"{'number' if kind != str else 'value'}: {expected}") from None
        rows.append(row)
    return rows


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)


def check_against_summary(path: str | Path, rows: Sequence[Mapping], protocol_summary: Mapping) -> None:
    """Per class, the rows' count and mean Dice / HD95 must equal the run's recorded summary of that
    protocol (evaluate_folders' summary['volume'] or ['slice']). Raises ResultFileError."""
    computed = summarize(rows)
    if set(computed) != set(protocol_summary):
        raise ResultFileError(path, f"holds rows of class(es) {sorted(computed)}: expected {sorted(protocol_summary)} "
                                    f"as the run recorded")
    for cls, per_metric in protocol_summary.items():
        for metric in METRIC_NAMES:
            recorded, found = per_metric.get(metric, {}), computed[cls][metric]
            if "count" in recorded and recorded["count"] != found["count"]:
                raise ResultFileError(path, f"{found['count']} {cls} rows: expected {recorded['count']} as the run "
                                            f"recorded")
            if "mean" in recorded and not _close(recorded["mean"], found["mean"]):
                raise ResultFileError(path, f"mean {cls} {metric} {found['mean']:.6g} differs from the run's "
                                            f"recorded {recorded['mean']:.6g}: expected the file the run wrote")


def read_evaluation(evaluation_dir: str | Path, summary: Mapping | None = None) -> tuple[list[dict], list[dict]]:
    """(volume rows, slice rows) of one evaluation folder, each file read completely; with the run's summary
    (classes, cases, volume, slice) also checked against it, metrics_cases.csv included."""
    folder = Path(evaluation_dir)
    volume, slices = read_metric_rows(folder / VOLUME_CSV), read_metric_rows(folder / SLICES_CSV)
    if summary is not None:
        check_against_summary(folder / VOLUME_CSV, volume, summary["volume"])
        check_against_summary(folder / SLICES_CSV, slices, summary["slice"])
        expected_pairs = {(case, cls) for case in summary["cases"] for cls in summary["classes"]}
        found_pairs = [(row["case"], row["class"]) for row in volume]
        if set(found_pairs) != expected_pairs or len(found_pairs) != len(expected_pairs):
            raise ResultFileError(folder / VOLUME_CSV, f"{len(found_pairs)} (case, class) rows: expected one per "
                                                       f"validation case and class of the run "
                                                       f"({len(expected_pairs)})")
        scores = {(row["case"], row["class"]): (row["dice"], row["hd95"]) for row in volume}
        cases = read_metric_rows(folder / CASES_CSV)
        for row in cases:
            dice, hd95 = scores.get((row["case"], row["class"]), (None, None))
            if dice is None or not (_close(row["volume_dice"], dice) and _close(row["volume_hd95"], hd95)):
                raise ResultFileError(folder / CASES_CSV, f"case {row['case']} {row['class']}: volume scores differ "
                                                          f"from {VOLUME_CSV}: expected the file the run wrote")
        if len(cases) != len(volume):
            raise ResultFileError(folder / CASES_CSV, f"{len(cases)} rows: expected {len(volume)} as in {VOLUME_CSV}")
    return volume, slices
