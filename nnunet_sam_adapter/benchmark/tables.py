"""The paper's Tables 1-3 from benchmark results, as Markdown (`tables.md`) and CSV (`table1-3.csv`).

    Table 1  each modality vs early fusion vs ours                      (paper Table 1)
    Table 2  ours vs transformer baselines vs SAM (= early fusion) vs nnU-Net  (paper Table 2)
    Table 3  total / trainable / percent parameters of the networks built for the run (paper Table 3)

Dice is reported in %, HD95 in mm, both as mean and (population) std, for two protocols: slice (the
paper's: every 2D slice with tumour in the reference or the prediction, averaged over all slices of
all validation cases) and volume (BraTS style: one score per case). Only methods that ran appear;
every number comes from `results` (no reference numbers are copied from the paper).
"""

from __future__ import annotations

import os
from pathlib import Path

from nnunet_sam_adapter.data.atomic_io import atomic_write_text, csv_text
from nnunet_sam_adapter.model.parameters import millions

TABLE1_METHODS = ("T1", "T1ce", "T2", "FLAIR", "early_fusion", "ours")
TABLE2_METHODS = ("swinunetr_2d", "unetr_2d", "early_fusion", "nnunet_2d", "nnunet_3d_fullres", "ours")
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
    return results["methods"][method]["label"]


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
            row["budget"] = f"{entry['budget']['epochs']}x{entry['budget']['iterations']}" if entry["budget"] else ""
            rows.append(row)
    return rows


def parameter_rows(results: dict) -> list[dict]:
    """Table 3: one row per method whose network could be built from the plans."""
    return [{"method": method, "label": p["label"], "total": p["total"], "trainable": p["trainable"],
             "percent": p["percent"], "in_this_run": method in results["methods"]}
            for method, p in results["parameters"].items()]


def _pm(row: dict, key: str, digits: int = 2) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_table_markdown(rows: list[dict], results: dict, table: int) -> str:
    classes = list(dict.fromkeys(r["class"] for r in rows))
    lines = []
    head = ["Method", *(["Class"] if len(classes) > 1 else []), "Dice (%) slice", "HD95 (mm) slice",
            "Dice (%) volume", "HD95 (mm) volume", "slices", "cases", "budget (epochs x its)"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for row in rows:
        cells = [_label(results, row["method"], table), *([row["class"]] if len(classes) > 1 else []),
                 _pm(row, "dice_pct_slice"), _pm(row, "hd95_mm_slice"), _pm(row, "dice_pct_volume"),
                 _pm(row, "hd95_mm_volume"), str(row["n_slices"]), str(row["n_cases"]), row["budget"] or "?"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parameter_table_markdown(rows: list[dict]) -> str:
    lines = ["| Method | All | Training | Percent | trained in this run |", "|---|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['label']} | {millions(row['total'])} | {millions(row['trainable'])} | "
                     f"{row['percent']:.1f}% | {'yes' if row['in_this_run'] else 'no'} |")
    return "\n".join(lines)


def _budget_text(budget: dict | None) -> str:
    if not budget:
        return "none: each trainer's own (nnU-Net's default: 1000 epochs x 250 iterations)"
    return f"{budget['epochs'] or 'default'} epochs x {budget['iterations'] or 'default'} iterations"


def _header(results: dict) -> str:
    sam = results.get("sam")
    budget = results.get("requested_budget")
    lines = [f"# Benchmark: {results['dataset']}, fold {results['fold']}", "",
             f"- Validation cases ({len(results['validation_cases'])}), the same for every method: "
             f"{', '.join(results['validation_cases'])}",
             f"- Device: {results['device']}; test-time mirroring: {'on' if results['test_time_mirroring'] else 'off'}",
             f"- Requested budget: {_budget_text(budget)}"]
    if sam:
        lines.append(f"- SAM methods: backbone {sam['backbone']}, input {sam['input_size']}x{sam['input_size']}, "
                     f"adapters after the first {sam['adapter_depth']} blocks, batch {sam['batch_size']}, "
                     f"weights {sam['weights']}")
    runs = ", ".join(f"{m}: {e['status']}" for m, e in results["methods"].items())
    lines += [f"- Runs: {runs}", f"- Protocols: {PROTOCOL_NOTE}", ""]
    return "\n".join(lines)


def tables_markdown(results: dict) -> str:
    """The whole tables.md text."""
    parts = [_header(results)]
    for table, title, methods, note in (
            (1, "Table 1. Each modality vs early fusion vs ours", TABLE1_METHODS, ""),
            (2, "Table 2. Ours vs baselines", TABLE2_METHODS,
             "SAM = early fusion, as in the paper. MONAI's SwinUNETR / UNETR (2D) stand in for the paper's "
             "Swin-Unet / TransUNet; they are different networks.")):
        rows = metric_rows(results, methods)
        parts.append(f"## {title}\n")
        if note:
            parts.append(note + "\n")
        parts.append(metric_table_markdown(rows, results, table) if rows else "(none of these methods ran)")
        parts.append("")
    parts.append("## Table 3. Parameters of the networks built from this run's plans\n")
    parts.append("Every method whose trainer can build its network from the plans of this dataset "
                 "(trained here or not).\n")
    parts.append(parameter_table_markdown(parameter_rows(results)))
    parts.append("")
    return "\n".join(parts)


def write_tables(results: dict, output_dir: str | os.PathLike) -> dict[str, str]:
    """Write tables.md and table1.csv, table2.csv, table3.csv (atomically); returns name -> path."""
    output_dir = Path(output_dir)
    metric_columns = ["method", "label", "class", *METRIC_COLUMNS, "budget"]
    texts = {
        "tables.md": tables_markdown(results),
        "table1.csv": csv_text(metric_rows(results, TABLE1_METHODS), metric_columns, 4),
        "table2.csv": csv_text(metric_rows(results, TABLE2_METHODS), metric_columns, 4),
        "table3.csv": csv_text(parameter_rows(results), ["method", "label", "total", "trainable", "percent",
                                                         "in_this_run"], 4),
    }
    for name, text in texts.items():
        atomic_write_text(output_dir / name, text)
    return {name: str(output_dir / name) for name in texts}
