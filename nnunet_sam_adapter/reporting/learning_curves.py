"""Learning curves and seeds: each method's cross-validated scores at every budget point, over seeds.

Input: the finished runs of every seed's output tree (seed 0 in OUT, seed K in OUT/seed_K). A point of a
run is either a learning-curve checkpoint inside it (`benchmark/learning_curve.py`) or the run's final
budget (its own rows). For each (method, seed, point) whose every fold is finished, the per-case volume
scores of all folds are pooled (each case validated once); then, per (method, point):

- mean +- sd over seeds of the pooled mean volume Dice (%) and HD95 (mm), raw and after nnU-Net's
  postprocessing, with the training seconds (summed over folds, mean over seeds);
- paired statistics (reporting/statistics.py) of each reference method (methods.REFERENCE_METHODS) against
  each other method, after postprocessing, on each case's score averaged over that method's seeds first,
  Holm-adjusted over all rows of all points;
- when nnU-Net's online pseudo Dice was recorded: the training images after which each (method, seed,
  fold) first had a pseudo Dice > 0.1 (it left the all-background plateau).

Writes OUT/learning_curves/learning_curves.md, learning_curves.csv, stats.csv and learning_curves.png.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from nnunet_sam_adapter.atomic_io import atomic_write_text, csv_text
from nnunet_sam_adapter.evaluation.postprocessing import postprocessed_record
from nnunet_sam_adapter.evaluation.result_files import ResultFileError, read_evaluation
from nnunet_sam_adapter.methods import METHODS, REFERENCE_METHODS
from nnunet_sam_adapter.reporting.statistics import holm, paired_comparison
from nnunet_sam_adapter.training.budget import images_seen, logged_epoch_seconds, patches_3d

# The key under which a run record holds its learning-curve points (the extra evaluation's dotted path).
LEARNING_CURVE_EVALUATION = "nnunet_sam_adapter.benchmark.learning_curve.benchmark_learning_curve"
PLATEAU_PSEUDO_DICE = 0.1  # nnU-Net's online pseudo Dice above which a run has left the all-background plateau
VARIANTS = ("raw", "pp")
CSV_COLUMNS = ("method", "seed", "images", "unit", "variant", "class", "n_cases", "dice_pct", "hd95_mm", "train_seconds",
               "folds")
STATS_COLUMNS = ("images", "reference", "baseline", "class", "metric", "n_pairs", "seeds_reference",
                 "seeds_baseline", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "p_wilcoxon", "p_holm")


def _run_points(record: dict) -> dict[int, dict]:
    """{images: {'train_seconds', 'raw': (evaluation_dir, summary), 'pp': ... or None}} of one finished run."""
    final = images_seen(record["budget"])
    pp = postprocessed_record(record)
    curve = (record.get("extra") or {}).get(LEARNING_CURVE_EVALUATION) or {}
    # nnU-Net's epoch times, the clock of the points inside the run (its log for runs recorded without them)
    seconds = curve.get("final_train_seconds") or logged_epoch_seconds(record.get("run_dir", ""))
    points = {final: {"train_seconds": seconds,
                      "raw": (record["evaluation_dir"], record["summary"]),
                      "pp": (pp["evaluation_dir"], pp["summary"]) if pp else None}}
    for entry in (curve.get("points") or {}).values():
        if "error" in entry:
            continue
        points[int(entry["images"])] = {
            "train_seconds": entry.get("train_seconds"),
            "raw": (entry["raw"]["evaluation_dir"], entry["raw"]["summary"]),
            "pp": (entry["pp"]["evaluation_dir"], entry["pp"]["summary"]) if entry.get("pp") else None}
    return points


def plateau_images(record: dict) -> int | None | str:
    """Training images after which the run's pseudo Dice first exceeded 0.1; 'never' if it did not; None unknown."""
    curve = (record.get("extra") or {}).get(LEARNING_CURVE_EVALUATION) or {}
    dice, per_epoch = curve.get("pseudo_dice"), curve.get("images_per_epoch")
    if not dice or not per_epoch:
        return None
    for epoch, value in enumerate(dice):
        if value > PLATEAU_PSEUDO_DICE:
            return (epoch + 1) * int(per_epoch)
    return "never"


def gather(finished_per_seed: list[dict], methods, folds) -> tuple[dict, dict, list[str]]:
    """finished_per_seed[seed] = {fold: {method: run record}} (benchmark/collect.py) ->
    ({(method, seed, images, variant): {'cases': {cls: {case: (dice %, hd95)}}, 'train_seconds', 'folds'}},
    {(method, seed, fold): plateau images}, [what is left out and why])."""
    points, plateau, left_out = {}, {}, []
    for seed, finished in enumerate(finished_per_seed):
        for method in methods:
            per_fold = {f: finished[f][method] for f in folds if method in finished.get(f, {})}
            if not per_fold:
                continue
            if len(per_fold) < len(folds):
                left_out.append(f"{method} seed {seed}: folds {sorted(set(folds) - set(per_fold))} not finished")
                continue
            for fold, record in per_fold.items():
                plateau[(method, seed, fold)] = plateau_images(record)
            fold_points = {f: _run_points(r) for f, r in per_fold.items()}
            common = set.intersection(*(set(p) for p in fold_points.values()))
            for images in sorted(common):
                for variant in VARIANTS:
                    if any(fold_points[f][images][variant] is None for f in folds):
                        continue
                    cases, seconds = {}, []
                    try:
                        for f in folds:
                            folder, summary = fold_points[f][images][variant]
                            for row in read_evaluation(folder, summary)[0]:
                                cases.setdefault(row["class"], {})[row["case"]] = (100 * row["dice"], row["hd95"])
                            seconds.append(fold_points[f][images]["train_seconds"])
                    except ResultFileError as error:
                        left_out.append(f"{method} seed {seed} {images} images {variant}: damaged: {error}")
                        continue
                    total = None if any(s is None for s in seconds) else sum(seconds)
                    points[(method, seed, images, variant)] = {"cases": cases, "train_seconds": total,
                                                               "folds": list(folds),
                                                               "budget": per_fold[folds[0]]["budget"]}
    return points, plateau, left_out


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def _sd(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.stdev(values) if len(values) > 1 else math.nan


def curve_rows(points: dict) -> list[dict]:
    """One row per (method, seed, images, variant, class): the pooled mean volume Dice (%) and HD95 (mm)."""
    rows = []
    for (method, seed, images, variant), entry in sorted(points.items()):
        for cls, cases in sorted(entry["cases"].items()):
            rows.append({"method": method, "seed": seed, "images": images, "variant": variant, "class": cls,
                         "unit": "3d patches" if patches_3d(entry.get("budget")) else "2d images",
                         "n_cases": len(cases), "dice_pct": _mean(d for d, _ in cases.values()),
                         "hd95_mm": _mean(h for _, h in cases.values()), "train_seconds": entry["train_seconds"],
                         "folds": " ".join(map(str, entry["folds"]))})
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """Mean +- sd over seeds per (method, images, variant, class)."""
    groups = {}
    for row in rows:
        groups.setdefault((row["method"], row["images"], row["variant"], row["class"]), []).append(row)
    out = []
    for (method, images, variant, cls), group in groups.items():
        out.append({"method": method, "images": images, "variant": variant, "class": cls, "seeds": len(group),
                    "unit": group[0]["unit"],
                    "n_cases": group[0]["n_cases"],
                    "dice_mean": _mean(r["dice_pct"] for r in group), "dice_sd": _sd(r["dice_pct"] for r in group),
                    "hd95_mean": _mean(r["hd95_mm"] for r in group), "hd95_sd": _sd(r["hd95_mm"] for r in group),
                    "train_seconds": _mean(r["train_seconds"] for r in group)})
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(out, key=lambda r: (r["images"], r["variant"], r["class"], order.get(r["method"], 99)))


def _seed_mean_cases(points: dict, method: str, images: int, variant: str, cls: str, metric: int) -> tuple[dict, int]:
    """({case: score averaged over the method's seeds}, number of seeds) at one point."""
    per_case, seeds = {}, 0
    for (m, _, n, v), entry in points.items():
        if (m, n, v) == (method, images, variant) and cls in entry["cases"]:
            seeds += 1
            for case, scores in entry["cases"][cls].items():
                per_case.setdefault(case, []).append(scores[metric])
    return {case: statistics.fmean(values) for case, values in per_case.items()}, seeds


def comparisons(points: dict, variant: str = "pp") -> list[dict]:
    """Each reference method vs each other method at each point, paired per case (seed-averaged), Holm over all."""
    keys = {(m, n) for (m, _, n, v) in points if v == variant}
    classes = sorted({cls for (_, _, _, v), e in points.items() if v == variant for cls in e["cases"]})
    rows = []
    for images in sorted({n for _, n in keys}):
        here = [m for m in METHODS if (m, images) in keys]
        for index, reference in enumerate(r for r in REFERENCE_METHODS if r in here):
            earlier = [r for r in REFERENCE_METHODS if r in here][:index]
            for baseline in here:
                if baseline == reference or baseline in earlier:
                    continue
                for cls in classes:
                    for metric, (position, name) in enumerate(((0, "volume Dice (%)"), (1, "volume HD95 (mm)"))):
                        a, seeds_a = _seed_mean_cases(points, reference, images, variant, cls, position)
                        b, seeds_b = _seed_mean_cases(points, baseline, images, variant, cls, position)
                        rows.append({"images": images, "reference": reference, "baseline": baseline, "class": cls,
                                     "metric": name, "seeds_reference": seeds_a, "seeds_baseline": seeds_b,
                                     **paired_comparison(a, b)})
    for row, adjusted in zip(rows, holm([r["p_wilcoxon"] for r in rows])):
        row["p_holm"] = adjusted
    return rows


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _pm(mean, sd) -> str:
    return _fmt(mean) + ("" if sd is None or math.isnan(sd) else f" ± {_fmt(sd)}")


def markdown(summary: list[dict], stats: list[dict], plateau: dict, left_out: list[str], context: dict,
             folds: list[int]) -> str:
    budget = context.get("budget")
    lines = ["# Learning curves and seeds", "",
             f"Dataset {context.get('dataset')}, folds {', '.join(map(str, folds))} pooled (each validation case once); "
             f"device {context.get('device')}; test-time mirroring {context.get('test_time_mirroring')}. "
             + (f"Budget rule: {budget.rule()}. " if budget is not None else "")
             + "A point inside a run is that run's checkpoint after so many training images (its learning-rate "
               "schedule is the whole run's); the last point is the run's final budget. For a 3d configuration an "
               "'image' is a 3d patch (nnU-Net's 3d_fullres patch of several slices). Volume protocol; mean ± sd "
               "over seeds of each seed's mean over all cases; training s = nnU-Net's epoch times (its log's 'Epoch "
               "time': training + its online pseudo-Dice batches, without start-up and final validation) summed "
               "over folds, mean over seeds.", "",
             "| images | variant | class | method | seeds | cases | Dice (%) | HD95 (mm) | training s |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|"]
    for r in summary:
        label = METHODS[r["method"]].label if r["method"] in METHODS else r["method"]
        label += " (3d patches)" if r["unit"] == "3d patches" else ""
        variant = "after postprocessing" if r["variant"] == "pp" else "raw"
        lines.append(f"| {r['images']} | {variant} | {r['class']} | {label} | {r['seeds']} | {r['n_cases']} | "
                     f"{_pm(r['dice_mean'], r['dice_sd'])} | {_pm(r['hd95_mean'], r['hd95_sd'])} | "
                     f"{_fmt(r['train_seconds'], 0)} |")
    if stats:
        lines += ["", "## Paired statistics (after nnU-Net's postprocessing)", "",
                  "Each case's volume score is first averaged over the seeds of each method, then paired: mean "
                  "difference (reference - baseline) with a percentile bootstrap 95% CI, Wilcoxon signed-rank p "
                  "(two-sided) and Holm's adjustment over every row of every point. Dice in percentage points.", "",
                  "| images | reference | baseline | class | metric | cases | seeds (ref / base) | reference | baseline "
                  "| difference [95% CI] | p | p (Holm) |", "|---:|---|---|---|---|---:|---|---:|---:|---|---:|---:|"]
        for r in stats:
            lines.append(f"| {r['images']} | {r['reference']} | {r['baseline']} | {r['class']} | {r['metric']} | "
                         f"{r['n_pairs']} | {r['seeds_reference']} / {r['seeds_baseline']} | {_fmt(r['mean_a'])} | "
                         f"{_fmt(r['mean_b'])} | {_fmt(r['mean_diff'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
                         f"{_fmt(r['p_wilcoxon'], 4)} | {_fmt(r['p_holm'], 4)} |")
    known = {k: v for k, v in plateau.items() if v is not None}
    if known:
        lines += ["", f"## Leaving the all-background plateau (nnU-Net's pseudo Dice > {PLATEAU_PSEUDO_DICE})", "",
                  "Training images at the end of the first epoch whose online pseudo Dice (nnU-Net's, on its "
                  "validation batches) exceeded the threshold.", "", "| method | seed | " +
                  " | ".join(f"fold {f}" for f in folds) + " |", "|---|---:|" + "---:|" * len(folds)]
        for method, seed in sorted({(m, s) for m, s, _ in known}, key=lambda k: (list(METHODS).index(k[0])
                                                                              if k[0] in METHODS else 99, k[1])):
            cells = [str(known.get((method, seed, f), "-")) for f in folds]
            lines.append(f"| {method} | {seed} | " + " | ".join(cells) + " |")
    if left_out:
        lines += ["", "Left out:", *[f"- {line}" for line in left_out]]
    return "\n".join(lines + [""])


def figure_title(rows: list[dict]) -> str:
    """The figure's title: its variant and how many seeds its points average (a one-seed figure has no sd)."""
    variant = "after nnU-Net's postprocessing" if rows[0]["variant"] == "pp" else "raw"
    fewest, most = min(r["seeds"] for r in rows), max(r["seeds"] for r in rows)
    if most == 1:
        return f"{variant}; one seed, no sd"
    return f"{variant}; mean ± sd over {fewest if fewest == most else f'{fewest}-{most}'} seeds"


def figure(summary: list[dict], path: Path) -> None:
    """Volume Dice and HD95 after postprocessing against training images, one line per method (sd bars)."""
    from nnunet_sam_adapter.reporting.figures import _atomic_savefig, _pyplot

    plt = _pyplot()
    rows = [r for r in summary if r["variant"] == "pp"] or summary
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["images"])
        label = METHODS[method].label if method in METHODS else method
        for ax, key in zip(axes, ("dice", "hd95")):
            sd = [0 if math.isnan(r[f"{key}_sd"]) else r[f"{key}_sd"] for r in mine]
            ax.errorbar([r["images"] for r in mine], [r[f"{key}_mean"] for r in mine], yerr=sd, marker="o",
                        capsize=3, label=label)
    axes[0].set_ylabel("volume Dice (%)")
    axes[1].set_ylabel("volume HD95 (mm)")
    for ax in axes:
        ax.set_xlabel("training images seen")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(figure_title(rows))
    _atomic_savefig(fig, path)
    plt.close(fig)


def write_learning_curves(finished_per_seed: list[dict], methods, folds, context: dict, out_dir) -> dict[str, str]:
    """Every file above from the finished runs of each seed -> {file name: path}; nothing when none is finished."""
    out_dir = Path(out_dir)
    points, plateau, left_out = gather(finished_per_seed, list(methods), list(folds))
    if not points:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = curve_rows(points)
    summary = summary_rows(rows)
    stats = comparisons(points)
    written = {}
    atomic_write_text(out_dir / "learning_curves.csv", csv_text(rows, CSV_COLUMNS))
    atomic_write_text(out_dir / "stats.csv", csv_text(stats, STATS_COLUMNS))
    atomic_write_text(out_dir / "learning_curves.md", markdown(summary, stats, plateau, left_out, context, list(folds)))
    for name in ("learning_curves.csv", "stats.csv", "learning_curves.md"):
        written[name] = str(out_dir / name)
    figure(summary, out_dir / "learning_curves.png")
    written["learning_curves.png"] = str(out_dir / "learning_curves.png")
    return written
