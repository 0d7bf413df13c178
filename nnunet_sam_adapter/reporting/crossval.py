"""Pool the finished (method, fold) runs of a cross-validation into one set of results.

Per method, the per-case rows of every finished fold (evaluation/METHOD/metrics_volume.csv and
metrics_slices.csv) are concatenated and summarised with the evaluation's own `summarize`: the
volume protocol over all validation cases of all folds, the slice protocol over all their slices.
The per-fold table holds each fold's means; `comparisons` pairs ours (and ours_plus when it ran) with
each baseline per case.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_sam_adapter.reporting.statistics import holm, paired_comparison
from nnunet_sam_adapter.evaluation.metrics import summarize
from nnunet_sam_adapter.evaluation.result_files import read_evaluation
from nnunet_sam_adapter.evaluation.postprocessing import POSTPROCESSED_SUFFIX, postprocessed_label
from nnunet_sam_adapter.methods import REFERENCE_METHODS

COMPARED_METRICS = (("dice", "volume Dice (%)"), ("hd95", "volume HD95 (mm)"))


def case_rows(evaluation_dir: str | Path, summary: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(volume rows, slice rows) of one evaluated run, read completely (evaluation/result_files.py: a cut or
    inconsistent file raises ResultFileError, never gives a number); with the run's summary, checked against it."""
    return read_evaluation(evaluation_dir, summary)


def pool_method(records: dict[int, dict]) -> dict:
    """{fold: run record} of one method -> a run-like entry whose summary covers every case of every fold."""
    volume, slices, cases = [], [], []
    for fold in sorted(records):
        v, s = case_rows(records[fold]["evaluation_dir"], records[fold]["summary"])
        volume += v
        slices += s
        cases += records[fold]["summary"]["cases"]
    first = records[min(records)]
    classes = first["summary"]["classes"]
    label = first["label"]
    if "postprocessing" in first:  # a METHOD_pp row: nnU-Net chose its postprocessing on each fold
        label = postprocessed_label(first["raw_label"], [records[f]["postprocessing"] for f in sorted(records)])
    return {**{k: first[k] for k in ("method", "trainer", "plans", "configuration")}, "label": label,
            "folds": sorted(records), "status": ", ".join(f"fold {f}: {records[f]['status']}" for f in sorted(records)),
            "budget": first["budget"], "budgets": {f: records[f]["budget"] for f in sorted(records)},
            "train_seconds": _total(records[f].get("train_seconds") for f in records),
            "evaluation_dirs": [records[f]["evaluation_dir"] for f in sorted(records)],
            "validation_dirs": [records[f]["validation_dir"] for f in sorted(records)],
            "summary": {"volume": summarize(volume), "slice": summarize(slices), "classes": classes, "cases": cases}}


def _total(values) -> float | None:
    """Sum, or None when any value is unknown (a reused run whose time was not recorded)."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def per_fold_rows(finished: dict[int, dict[str, dict]]) -> list[dict]:
    """One row per fold, method and class: the fold's mean volume/slice Dice (%) and HD95 (mm)."""
    rows = []
    for fold in sorted(finished):
        for method, record in finished[fold].items():
            summary = record["summary"]
            for cls in summary["classes"]:
                row = {"fold": fold, "method": method, "label": record["label"], "class": cls,
                       "n_cases": len(summary["cases"])}
                for protocol in ("volume", "slice"):
                    stats = summary[protocol].get(cls)
                    row[f"dice_pct_{protocol}"] = 100 * stats["dice"]["mean"] if stats else None
                    row[f"hd95_mm_{protocol}"] = stats["hd95"]["mean"] if stats else None
                rows.append(row)
    return rows


def _per_case(entry: dict, cls: str, metric: str) -> dict[str, float]:
    """{case: volume score} over the method's folds; Dice in % (differences in percentage points)."""
    scale = 100.0 if metric == "dice" else 1.0
    values = {}
    for folder in entry["evaluation_dirs"]:
        for row in case_rows(folder)[0]:
            if row["class"] == cls:
                values[row["case"]] = scale * row[metric]
    return values


def comparisons(pooled: dict[str, dict], references=REFERENCE_METHODS) -> list[dict]:
    """Each reference method that ran (ours, then the ours_plus variant) vs each other pooled method, per
    class and metric, paired per case; the Wilcoxon p-values Holm-adjusted over all rows. Postprocessed
    rows (METHOD_pp) are compared with the reference's postprocessed row, raw rows with its raw row: like
    with like. A later reference is not compared again with an earlier one."""
    rows = []
    for index, reference in enumerate(references):
        if reference not in pooled:
            continue
        earlier = {key for r in references[:index] for key in (r, r + POSTPROCESSED_SUFFIX)}
        for cls in pooled[reference]["summary"]["classes"]:
            for metric, metric_label in COMPARED_METRICS:
                for method, entry in pooled.items():
                    own = reference + POSTPROCESSED_SUFFIX if method.endswith(POSTPROCESSED_SUFFIX) else reference
                    if method in (reference, reference + POSTPROCESSED_SUFFIX, *earlier) or own not in pooled:
                        continue
                    result = paired_comparison(_per_case(pooled[own], cls, metric), _per_case(entry, cls, metric))
                    rows.append({"reference": own, "baseline": method, "class": cls, "metric": metric_label,
                                 **result})
    for row, adjusted in zip(rows, holm([r["p_wilcoxon"] for r in rows])):
        row["p_holm"] = adjusted
    return rows
