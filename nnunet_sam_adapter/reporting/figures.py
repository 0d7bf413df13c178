"""Benchmark figures (matplotlib, no display needed).

    metrics.png    per method: bars = mean Dice (%) and HD95 (mm) in the slice and volume protocols,
                   points = the validation cases (volume score; for the slice protocol the mean over
                   the case's slices), one row per class
    overlays.png   a FLAIR slice (the one with the most reference tumour) of a few validation cases,
                   reference contour in green and each method's prediction contour in red
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunet_sam_adapter.atomic_io import atomic_output
from nnunet_sam_adapter.evaluation.result_files import CASES_CSV, read_metric_rows

REFERENCE_COLOUR, PREDICTION_COLOUR = "#2ca02c", "#d62728"
PROTOCOL_STYLE = {"slice": ("#4c72b0", "slice (paper)"), "volume": ("#dd8452", "volume")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _evaluation_dirs(entry: dict) -> list[str]:
    """A fold's run has one evaluation folder, a pooled cross-validation entry one per fold."""
    return list(entry.get("evaluation_dirs") or [entry["evaluation_dir"]])


def _case_scores(entry: dict, cls: str) -> dict[str, dict[str, float]]:
    """{case: {'volume_dice', 'volume_hd95', 'slice_dice', 'slice_hd95'}} from the metrics_cases.csv of
    every evaluation folder of a method entry."""
    scores = {}
    for folder in _evaluation_dirs(entry):
        scores.update(_read_case_scores(folder, cls))
    return scores


def _read_case_scores(evaluation_dir: str | os.PathLike, cls: str) -> dict[str, dict[str, float]]:
    scores = {}
    for row in read_metric_rows(Path(evaluation_dir) / CASES_CSV):  # complete rows or ResultFileError
        if row["class"] != cls:
            continue
        scores[row["case"]] = {
            "volume_dice": row["volume_dice"], "volume_hd95": row["volume_hd95"],
            "slice_dice": np.nan if row["slice_dice_mean"] is None else row["slice_dice_mean"],
            "slice_hd95": np.nan if row["slice_hd95_mean"] is None else row["slice_hd95_mean"]}
    return scores


def _atomic_savefig(fig, path: Path) -> None:
    with atomic_output(path) as temp:
        fig.savefig(temp, format="png", dpi=120, bbox_inches="tight")


def metrics_figure(results: dict, path: str | os.PathLike) -> str:
    """Per-method bars (slice and volume protocols) with per-case points; returns the path."""
    plt = _pyplot()
    methods = list(results["methods"])
    classes = list(next(iter(results["methods"].values()))["summary"]["classes"])
    fig, axes = plt.subplots(len(classes), 2, figsize=(max(6.0, 1.3 * len(methods) + 3), 3.8 * len(classes)),
                             squeeze=False)
    rng = np.random.default_rng(0)  # jitter of the points only
    x = np.arange(len(methods))
    for row, cls in enumerate(classes):
        for col, (metric, unit, scale) in enumerate((("dice", "Dice (%)", 100.0), ("hd95", "HD95 (mm)", 1.0))):
            ax = axes[row, col]
            for offset, protocol in zip((-0.2, 0.2), ("slice", "volume")):
                colour, name = PROTOCOL_STYLE[protocol]
                means = [results["methods"][m]["summary"][protocol].get(cls, {}).get(metric, {}).get("mean", np.nan)
                         * scale for m in methods]
                ax.bar(x + offset, means, width=0.38, color=colour, alpha=0.75, label=name)
                for i, method in enumerate(methods):
                    scores = _case_scores(results["methods"][method], cls)
                    values = [s[f"{protocol}_{metric}"] * scale for s in scores.values()]
                    ax.scatter(x[i] + offset + rng.uniform(-0.08, 0.08, len(values)), values, s=12,
                               color="black", alpha=0.7, zorder=3, linewidths=0)
            ax.set_xticks(x)
            ax.set_xticklabels([results["methods"][m]["label"] for m in methods], rotation=30, ha="right",
                               fontsize=8)
            ax.set_ylabel(unit)
            ax.set_title(f"{cls}: {unit}" + (" (higher is better)" if metric == "dice" else " (lower is better)"),
                         fontsize=10)
            if metric == "dice":
                ax.set_ylim(0, 100)
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, title="bars: mean; points: cases", title_fontsize=8)
    folds = results.get("folds", [results["fold"]])
    fig.suptitle(f"{results['dataset']}, fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}: "
                 f"{len(results['validation_cases'])} validation cases", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    _atomic_savefig(fig, path)
    plt.close(fig)
    return str(path)


def flair_channel(dataset_json: dict) -> int:
    """Index of the FLAIR channel from dataset.json's channel names, any spelling `model.modalities`
    knows (FLAIR, t2f, ...); the last channel if none is FLAIR."""
    from nnunet_sam_adapter.model.modalities import modality_channels

    names = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    return modality_channels(names).get("FLAIR", len(names) - 1)


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def overlays_figure(results: dict, images_dir: str | os.PathLike, reference_dir: str | os.PathLike,
                    dataset_json: dict, path: str | os.PathLike, n_cases: int = 3) -> str | None:
    """FLAIR slice + reference / prediction contours, cases x methods; None when the raw images are
    not available (e.g. nnUNet_raw not set)."""
    plt = _pyplot()
    ending = dataset_json["file_ending"]
    channel = flair_channel(dataset_json)
    cases = results["validation_cases"][:max(1, n_cases)]
    images_dir, reference_dir = Path(images_dir), Path(reference_dir)
    if not all((images_dir / f"{c}_{channel:04d}{ending}").is_file() for c in cases):
        return None
    methods = list(results["methods"])
    first_class = next(iter(next(iter(results["methods"].values()))["summary"]["classes"]))
    scores = {m: _case_scores(results["methods"][m], first_class) for m in methods}
    fig, axes = plt.subplots(len(cases), len(methods), figsize=(2.4 * len(methods), 2.5 * len(cases)),
                             squeeze=False)
    for row, case in enumerate(cases):
        reference = _read(reference_dir / f"{case}{ending}") > 0
        flair = _read(images_dir / f"{case}_{channel:04d}{ending}")
        z = int(np.argmax(reference.reshape(reference.shape[0], -1).sum(axis=1)))
        low, high = np.percentile(flair[z], (1, 99))
        for col, method in enumerate(methods):
            ax = axes[row, col]
            prediction = _read(Path(results["methods"][method]["validation_dir"]) / f"{case}{ending}") > 0
            ax.imshow(flair[z], cmap="gray", vmin=low, vmax=high)
            for mask, colour in ((reference[z], REFERENCE_COLOUR), (prediction[z], PREDICTION_COLOUR)):
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.0)
            dice = scores[method].get(case, {}).get("volume_dice", np.nan)
            ax.text(0.02, 0.02, f"Dice {100 * dice:.0f}%", color="yellow", fontsize=7, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(results["methods"][method]["label"], fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{case}\nslice {z}", fontsize=7)
    fig.suptitle("FLAIR; green = reference, red = prediction (volume Dice of the case)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    _atomic_savefig(fig, path)
    plt.close(fig)
    return str(path)


def write_figures(results: dict, output_dir: str | os.PathLike, images_dir: str | os.PathLike | None,
                  reference_dir: str | os.PathLike, dataset_json: dict, overlay_cases: int = 3) -> dict[str, str]:
    """metrics.png and (when the raw images are found) overlays.png in `output_dir`; returns name -> path."""
    output_dir = Path(output_dir)
    # matplotlib's default style: nnU-Net's progress plot sets seaborn's font_scale=2.5 process-wide, and the
    # inline executor trains in this process.
    with _pyplot().style.context("default"):
        written = {"metrics.png": metrics_figure(results, output_dir / "metrics.png")}
        if images_dir is not None and overlay_cases > 0:
            overlay = overlays_figure(results, images_dir, reference_dir, dataset_json, output_dir / "overlays.png",
                                      overlay_cases)
            if overlay:
                written["overlays.png"] = overlay
    return written
