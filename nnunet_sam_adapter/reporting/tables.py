"""The paper's Tables 1-3 from benchmark results, as Markdown (`tables.md`) and CSV (`table1-3.csv`).

    Table 1  each modality vs early fusion vs ours                      (paper Table 1)
    Table 2  ours vs transformer baselines vs SAM (= early fusion) vs nnU-Net  (paper Table 2)
    Table 3  total / trainable / percent parameters of the networks built for the run (paper Table 3)
    Ablation ours vs one change each (methods.ABLATIONS), when any of them ran (`ablation.csv`)

Dice is reported in %, HD95 in mm, both as mean and (population) std, for two protocols: slice (the
paper's: every 2D slice with tumour in the reference or the prediction, averaged over all slices of
all validation cases) and volume (BraTS style: one score per case). Only methods that ran appear;
every number comes from `results` (no reference numbers are copied from the paper). A requested
method without a finished run gets a row saying why; a network that cannot be built for the plans
gets a Table 3 row saying why. The same functions write one fold (OUT/fold_F) and the pooled
cross-validation (OUT/crossval, plus the per-fold table and the paired statistics).
"""

from __future__ import annotations

import os
from pathlib import Path

from nnunet_sam_adapter.training.budget import images_seen, patches_3d
from nnunet_sam_adapter.atomic_io import atomic_write_text, csv_text
from nnunet_sam_adapter.evaluation.postprocessing import with_postprocessed
from nnunet_sam_adapter.methods import ABLATIONS, table_methods
from nnunet_sam_adapter.model.parameters import millions

# Each method's raw row, then its row after nnU-Net's postprocessing (METHOD_pp); the registry's `tables`.
TABLE1_METHODS = with_postprocessed(table_methods("table1"))
TABLE2_METHODS = with_postprocessed(table_methods("table2"))
ABLATION_METHODS = with_postprocessed(table_methods("ablation"))
PROTOCOLS = ("slice", "volume")
PROTOCOL_NOTE = ("slice = the paper's protocol (every 2D slice with tumour in reference or prediction, "
                 "averaged over all slices); volume = BraTS style (one score per case). Missed or hallucinated "
                 "structures score Dice 0 and HD95 = the image diagonal.")
METRIC_COLUMNS = [f"{metric}_{protocol}_{stat}" for protocol in PROTOCOLS
                  for metric in ("dice_pct", "hd95_mm") for stat in ("mean", "std")] + ["n_slices", "n_cases"]


def _label(results: dict, method: str, table: int) -> str:
    """Table 1 calls early fusion "Early fusion", Table 2 calls it "SAM" (as the paper does)."""
    if method == "early_fusion":
        return "Early fusion (SAM, 4 -> 3 channels)" if table == 1 else "SAM (= early fusion)"
    from nnunet_sam_adapter.methods import METHODS

    entry = results["methods"].get(method)
    return entry["label"] if entry else METHODS[method].label if method in METHODS else method


def metric_rows(results: dict, methods) -> list[dict]:
    """One row per method that ran and class: Dice (%) and HD95 (mm) mean/std in both protocols."""
    rows = []
    for method in (m for m in methods if m in results["methods"]):
        entry = results["methods"][method]
        summary = entry["summary"]
        for cls in summary["classes"]:
            row = {"method": method, "label": entry["label"], "class": cls}
            for protocol in PROTOCOLS:
                stats = summary[protocol].get(cls)
                for metric, scale in (("dice", 100.0), ("hd95", 1.0)):
                    key = "dice_pct" if metric == "dice" else "hd95_mm"
                    row[f"{key}_{protocol}_mean"] = stats[metric]["mean"] * scale if stats else None
                    row[f"{key}_{protocol}_std"] = stats[metric]["std"] * scale if stats else None
                count = stats["dice"]["count"] if stats else 0
                row["n_slices" if protocol == "slice" else "n_cases"] = count
            row["budget"] = budget_cell(entry["budget"])
            row["batch_size"] = (entry["budget"] or {}).get("batch_size")
            row["images_seen"] = images_seen(entry["budget"])
            row["train_seconds"] = entry.get("train_seconds")
            rows.append(row)
    return rows


def budget_cell(budget: dict | None) -> str:
    """'2x4' or, with the batch size known, '2x4x24 = 192'; a 3d configuration's images are patches:
    '2x4x2 = 16 3d patches of [12, 64, 48] (192 slices)'."""
    if not budget:
        return ""
    text = f"{budget['epochs']}x{budget['iterations']}"
    seen = images_seen(budget)
    return text + (f"x{budget['batch_size']} = {seen}{patches_3d(budget)}" if seen is not None else "")


def missing_rows(results: dict, methods) -> list[tuple[str, str]]:
    """(method, why) for requested methods of this table without a finished run."""
    rows = []
    for key, why in results.get("missing", {}).items():  # 'method' (one fold) or 'method/fold_F' (pooled)
        method, _, fold = key.partition("/")
        if method in methods:
            rows.append((method, f"{fold}: {why}" if fold else why))
    return rows


def parameter_rows(results: dict) -> list[dict]:
    """Table 3: one row per method whose plans exist; `note` says why a network could not be built."""
    return [{"method": method, "label": p["label"], "total": p.get("total"), "trainable": p.get("trainable"),
             "percent": p.get("percent"), "in_this_run": method in results["methods"], "note": p.get("error", "")}
            for method, p in results["parameters"].items()]


def _mean_pm_std(row: dict, key: str, digits: int = 2) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_table_markdown(rows: list[dict], results: dict, table: int) -> str:
    classes = list(dict.fromkeys(r["class"] for r in rows))
    lines = []
    head = ["Method", *(["Class"] if len(classes) > 1 else []), "Dice (%) slice", "HD95 (mm) slice",
            "Dice (%) volume", "HD95 (mm) volume", "slices", "cases", "budget (epochs x its x batch = images)"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for row in rows:
        cells = [_label(results, row["method"], table), *([row["class"]] if len(classes) > 1 else []),
                 _mean_pm_std(row, "dice_pct_slice"), _mean_pm_std(row, "hd95_mm_slice"),
                 _mean_pm_std(row, "dice_pct_volume"), _mean_pm_std(row, "hd95_mm_volume"), str(row["n_slices"]), str(row["n_cases"]), row["budget"] or "?"]
        lines.append("| " + " | ".join(cells) + " |")
    for method, why in missing_rows(results, TABLE1_METHODS if table == 1 else TABLE2_METHODS):
        cells = [_label(results, method, table), *([""] if len(classes) > 1 else []), f"not available: {why}",
                 *["-"] * (len(head) - 3 - (len(classes) > 1)), ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_markdown(rows: list[dict]) -> str:
    """Ours and each ablation row that ran (raw, then after postprocessing): volume and slice scores,
    images seen and training time (summed over the folds)."""
    multi_class = len({r["class"] for r in rows}) > 1
    lines = ["| Method | " + ("Class | " if multi_class else "") + "Dice (%) volume | HD95 (mm) volume | "
             "Dice (%) slice | cases | images seen (per fold) | training time (s, all folds) |",
             "|---|" + ("---|" if multi_class else "") + "---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        seconds = row.get("train_seconds")
        lines.append(f"| {row['label']} | " + (f"{row['class']} | " if multi_class else "") +
                     f"{_mean_pm_std(row, 'dice_pct_volume')} | {_mean_pm_std(row, 'hd95_mm_volume')} | "
                     f"{_mean_pm_std(row, 'dice_pct_slice')} | {row['n_cases']} | {row['images_seen'] or '?'} | "
                     f"{'-' if seconds is None else f'{seconds:.0f}'} |")
    return "\n".join(lines)


def parameter_table_markdown(rows: list[dict]) -> str:
    lines = ["| Method | All | Training | Percent | trained in this run |", "|---|---:|---:|---:|---|"]
    for row in rows:
        if row["note"]:
            lines.append(f"| {row['label']} | - | - | - | {row['note']} |")
            continue
        lines.append(f"| {row['label']} | {millions(row['total'])} | {millions(row['trainable'])} | "
                     f"{row['percent']:.1f}% | {'yes' if row['in_this_run'] else 'no'} |")
    return "\n".join(lines)


def _first(cases: list[str], shown: int = 20) -> str:
    return ", ".join(cases[:shown]) + (f", ... ({len(cases) - shown} more, see results.json)" if len(cases) > shown else "")


def _header(results: dict) -> str:
    sam = results.get("sam")
    folds = results.get("folds", [results["fold"]])
    where = f"fold {folds[0]}" if len(folds) == 1 else f"cross-validation, folds {', '.join(map(str, folds))} pooled"
    lines = [f"# Benchmark: {results['dataset']}, {where}", "",
             f"- Validation cases ({len(results['validation_cases'])}), the same for every method: "
             f"{_first(results['validation_cases'])}",
             f"- Device: {results['device']}; test-time mirroring: {'on' if results['test_time_mirroring'] else 'off'}",
             f"- Budget rule: {results.get('budget_rule') or 'each trainer own'}; each row states its epochs x "
             f"iterations x batch size = training images seen"]
    if sam:
        lines.append(f"- SAM methods: backbone {sam['backbone']}, input {sam['input_size']}x{sam['input_size']}, "
                     f"adapters after the first {sam['adapter_depth']} blocks, batch {sam['batch_size']}, "
                     f"weights {sam['weights']}")
    runs = ", ".join(f"{m}: {e['status']}" for m, e in results["methods"].items())
    lines += [f"- Runs: {runs or 'none finished'}", f"- Protocols: {PROTOCOL_NOTE}"]
    for method, why in results.get("missing", {}).items():
        lines.append(f"- Missing: {method} ({why})")
    for name, why in results.get("report_errors", {}).items():
        lines.append(f"- Not written: {name} ({why})")
    return "\n".join(lines + [""])


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def per_fold_markdown(rows: list[dict]) -> str:
    lines = ["| Fold | Method | Class | cases | Dice (%) slice | HD95 (mm) slice | Dice (%) volume | HD95 (mm) volume |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['label']} | {r['class']} | {r['n_cases']} | {_fmt(r['dice_pct_slice'])} | "
                     f"{_fmt(r['hd95_mm_slice'])} | {_fmt(r['dice_pct_volume'])} | {_fmt(r['hd95_mm_volume'])} |")
    return "\n".join(lines)


def stats_markdown(rows: list[dict]) -> str:
    lines = ["Ours (and Ours+, when it ran) vs each baseline, paired per validation case (volume protocol): "
             "mean difference (reference - baseline) with a percentile bootstrap 95% CI (10,000 resamples of the "
             "cases), the Wilcoxon signed-rank p-value (scipy.stats.wilcoxon, two-sided) and that p-value Holm-adjusted over all "
             "comparisons below. Dice differences are in percentage points; higher Dice and lower HD95 are better. "
             "Rows after nnU-Net's postprocessing (METHOD_pp) are compared with the reference after postprocessing.",
             "", "| Reference | Baseline | Class | Metric | paired cases | reference | baseline | "
             "difference [95% CI] | p | p (Holm) |", "|---|---|---|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['reference']} | {r['baseline']} | {r['class']} | {r['metric']} | {r['n_pairs']} | "
                     f"{_fmt(r['mean_a'])} | {_fmt(r['mean_b'])} | {_fmt(r['mean_diff'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
                     f"{_fmt(r['p_wilcoxon'], 4)} | {_fmt(r['p_holm'], 4)} |")
    return "\n".join(lines)


def tables_markdown(results: dict) -> str:
    """The whole tables.md text."""
    parts = [_header(results)]
    for table, title, methods, note in (
            (1, "Table 1. Each modality vs early fusion vs ours", TABLE1_METHODS, ""),
            (2, "Table 2. Ours vs baselines", TABLE2_METHODS,
             "SAM = early fusion, as in the paper. MONAI's SwinUNETR / UNETR (2D) stand in for the paper's "
             "Swin-Unet / TransUNet; they are different networks, trained on nnU-Net's 2d patch of the stock "
             "plans: where that patch does not suit them (SwinUNETR: multiple of 32, UNETR: of 16) they are not "
             "trained and their row says so.")):
        rows = metric_rows(results, methods)
        parts.append(f"## {title}\n")
        if note:
            parts.append(note + "\n")
        has_rows = rows or missing_rows(results, methods)
        parts.append(metric_table_markdown(rows, results, table) if has_rows else "(none of these methods ran)")
        parts.append("")
    if any(method in results["methods"] for method in ABLATIONS):
        parts += ["## Ablation of ours (one change per row, methods.ABLATIONS)\n",
                  ablation_markdown(metric_rows(results, ABLATION_METHODS)), ""]
    if results.get("per_fold"):
        parts += ["## Per fold (mean over each fold's validation cases)\n", per_fold_markdown(results["per_fold"]), ""]
    if "stats" in results:
        parts.append("## Statistics: ours vs baselines\n")
        parts.append(stats_markdown(results["stats"]) if results["stats"] else
                     "(no comparison: ours and at least one baseline must have finished runs)")
        parts.append("")
    parts.append("## Table 3. Parameters of the networks built from this run's plans\n")
    parts.append("Every method whose plans exist for this dataset (trained here or not); a network that cannot "
                 "be built for these plans says why.\n")
    parts.append(parameter_table_markdown(parameter_rows(results)))
    parts.append("")
    return "\n".join(parts)


STATS_COLUMNS = ["reference", "baseline", "class", "metric", "n_pairs", "mean_a", "mean_b", "mean_diff", "ci_low",
                 "ci_high", "p_wilcoxon", "p_holm"]
PER_FOLD_COLUMNS = ["fold", "method", "label", "class", "n_cases", "dice_pct_slice", "hd95_mm_slice",
                    "dice_pct_volume", "hd95_mm_volume"]


def write_tables(results: dict, output_dir: str | os.PathLike) -> dict[str, str]:
    """Write tables.md, table1-3.csv and, for a cross-validation, per_fold.csv and stats.csv (atomically);
    returns name -> path."""
    output_dir = Path(output_dir)
    metric_columns = ["method", "label", "class", *METRIC_COLUMNS, "budget", "batch_size", "images_seen"]
    texts = {
        "tables.md": tables_markdown(results),
        "table1.csv": csv_text(metric_rows(results, TABLE1_METHODS), metric_columns, 4),
        "table2.csv": csv_text(metric_rows(results, TABLE2_METHODS), metric_columns, 4),
        "table3.csv": csv_text(parameter_rows(results), ["method", "label", "total", "trainable", "percent",
                                                         "in_this_run", "note"], 4),
    }
    if any(method in results["methods"] for method in ABLATIONS):
        texts["ablation.csv"] = csv_text(metric_rows(results, ABLATION_METHODS), [*metric_columns, "train_seconds"], 4)
    if "per_fold" in results:
        texts["per_fold.csv"] = csv_text(results["per_fold"], PER_FOLD_COLUMNS, 4)
    if "stats" in results:
        texts["stats.csv"] = csv_text(results["stats"], STATS_COLUMNS, 6)
    for name, text in texts.items():
        atomic_write_text(output_dir / name, text)
    return {name: str(output_dir / name) for name in texts}
