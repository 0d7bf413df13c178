"""Segmentation quality on every non-empty subset of T1 / T1ce / T2 / FLAIR (15 subsets), per method.

For each trained method and fold, the fold's validation cases are predicted with nnU-Net's predictor
(`nnUNetPredictor`, initialised from the trained model folder, fold's checkpoint_final.pth) on their
preprocessed data, with every absent modality set to MISSING_VALUE in normalised space. That is
exactly what a missing modality becomes at inference: `nnUNetv2_sam_register --allow-missing` writes
it as zeros and nnU-Net's z-score normalisation maps a constant channel to 0
(tests/test_modality_dropout.py). One approximation: nnU-Net crops every case to the nonzero region of
all its channels; with all channels present that box can only be larger, so a missing modality whose
nonzero region exceeded the others' would make the crop differ slightly at real inference. With all
four modalities present the prediction is the normal validation prediction (same data, weights,
tiling, Gaussian, mirroring setting): the full-set row equals the validation result.

Predictions are exported with nnU-Net's `export_prediction_from_logits` and evaluated with
`evaluate_folders` (MONAI metrics, volume and slice protocols, every class of dataset.json: whole
tumour, or its regions when the dataset is region-based). Output folder:

    missing_modalities.md / .csv / .png     the table (rows = 15 subsets + mean, columns = methods; the .md
                                            also says what dropout costs each method on the full set)
    predictions/<method>/<subset>/          the exported segmentations (all folds' validation cases)
    evaluation/<method>/<subset>/           evaluate_folders' CSVs and summary
    postprocessed/<method>/<subset>/        with `postprocessing`: nnU-Net's postprocessing of each fold (its
                                            postprocessing.pkl, chosen on the full-set validation predictions as
                                            nnU-Net chooses it) applied to every subset's predictions, as
                                            `nnUNetv2_apply_postprocessing` would apply it to new cases
    evaluation_postprocessed/<method>/<subset>/
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nnunet_sam_adapter.atomic_io import atomic_output, atomic_write_csv, atomic_write_json, atomic_write_text
from nnunet_sam_adapter.methods import METHODS, Method
from nnunet_sam_adapter.model.modalities import MODALITIES, modality_channels
from nnunet_sam_adapter.paths import nnunet_dirs, validation_cases

# Mean whole-tumour Dice (%) over the 15 subsets, BraTS 2018, their own splits (as quoted in issue #11 from
# the papers' tables): NOT the same data or split as ours; shown for orientation only.
PUBLISHED_MEANS = {"RFNet (Ding et al., ICCV 2021)": 85.67, "mmFormer (Zhang et al., MICCAI 2022)": 86.38,
                   "DeMoSeg (2024)": 87.96}
PROTOCOLS = ("volume", "slice")
VARIANTS = ("raw", "postprocessed")
# One row per subset, fewest modalities first (as in the RFNet / mmFormer / DeMoSeg tables).
SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    subset for k in range(1, len(MODALITIES) + 1) for subset in itertools.combinations(MODALITIES, k))


class MissingModalityError(RuntimeError):
    """The evaluation cannot run as asked; the message says what to do."""


def subset_name(subset) -> str:
    """('T2', 'FLAIR') -> 'T2+FLAIR' (also the folder name)."""
    return "+".join(subset)


def _predict_fold(run_dir: Path, fold: int, cases: list[str], channels: dict[str, int], subsets,
                  prediction_root: Path, mirroring: bool, device: str, save_probabilities: bool = False) -> None:
    """Predict `cases` of one fold for every subset into prediction_root/<subset>/ (skipped when the
    record of an identical earlier run is there)."""
    import torch
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from nnunet_sam_adapter.training.modality_dropout import MISSING_VALUE

    checkpoint = run_dir / "checkpoint_final.pth"
    record = prediction_root / f".fold_{fold}.json"
    wanted = {"checkpoint": str(checkpoint), "checkpoint_mtime_ns": checkpoint.stat().st_mtime_ns,
              "mirroring": mirroring, "save_probabilities": save_probabilities, "cases": cases,
              "subsets": [subset_name(s) for s in subsets]}
    try:
        if json.loads(record.read_text()) == wanted:
            return
    except (OSError, json.JSONDecodeError):
        pass
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=True, device=torch.device(device), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(run_dir.parent), use_folds=(fold,),
                                                   checkpoint_name="checkpoint_final.pth")
    folder = Path(str(nnUNet_preprocessed)) / predictor.plans_manager.dataset_name / \
        predictor.configuration_manager.data_identifier
    dataset = infer_dataset_class(str(folder))(str(folder), cases)
    for case in tqdm(cases, desc=f"{run_dir.parent.name} fold {fold}", unit="case", leave=False):
        data, _, _, properties = dataset.load_case(case)
        data = np.asarray(data[:], dtype=np.float32)
        for subset in subsets:
            masked = data.copy()
            for modality in MODALITIES:
                if modality not in subset:
                    masked[channels[modality]] = MISSING_VALUE
            logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(masked)).cpu()
            out = prediction_root / subset_name(subset)
            out.mkdir(parents=True, exist_ok=True)
            export_prediction_from_logits(logits, properties, predictor.configuration_manager,
                                          predictor.plans_manager, predictor.dataset_json, str(out / case),
                                          save_probabilities)
    atomic_write_json(record, wanted)


def _postprocess_fold(pkl: Path, plans_file: Path, cases: list[str], subsets, prediction_root: Path,
                      output_root: Path, file_ending: str) -> None:
    """nnU-Net's postprocessing choice of one fold (`pkl`) applied to its cases' predictions of every subset:
    prediction_root/<subset>/CASE -> output_root/<subset>/CASE (each file written whole, then moved in)."""
    from batchgenerators.utilities.file_and_folder_operations import load_pickle
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if not pkl.is_file():
        raise MissingModalityError(f"no postprocessing choice {pkl} (nnU-Net's postprocessing.pkl of the fold)")
    pp_fns, pp_fn_kwargs = load_pickle(str(pkl))
    reader_writer = PlansManager(str(plans_file)).image_reader_writer_class()
    for subset in subsets:
        out = output_root / subset_name(subset)
        out.mkdir(parents=True, exist_ok=True)
        for case in cases:
            segmentation, properties = reader_writer.read_seg(str(prediction_root / subset_name(subset) /
                                                                  f"{case}{file_ending}"))
            segmentation = apply_postprocessing(segmentation[0], pp_fns, pp_fn_kwargs)
            with tempfile.TemporaryDirectory(prefix=".pp.", dir=out) as staging:
                reader_writer.write_seg(segmentation, os.path.join(staging, f"{case}{file_ending}"), properties)
                os.replace(os.path.join(staging, f"{case}{file_ending}"), out / f"{case}{file_ending}")


def evaluate_missing_modalities(dataset, methods, folds=(0,), output_dir=None, mirroring: bool = True,
                                device: str = "cpu", num_processes: int = 1, subsets=SUBSETS,
                                save_probabilities: bool = False, postprocessing=None) -> dict:
    """Predict and evaluate each method's validation cases of `folds` on every subset; write the table,
    CSV and figure into `output_dir` (default $nnUNet_results/DATASET/missing_modalities). `methods`:
    registry names (methods.METHODS) or Method objects (e.g. a budget variant's trainer). `mirroring`
    must match how the normal validation was predicted (the benchmark's --no-mirroring = False).
    `save_probabilities`: also write nnU-Net's CASE.npz / CASE.pkl softmax files next to each prediction.
    `postprocessing`: {method name: {fold: postprocessing.pkl}} (the benchmark's choice per run); each method
    named there with every fold also gets rows after that postprocessing (variant 'postprocessed').
    Returns {"rows": [...], "files": {name: path}, ...}."""
    from nnunet_sam_adapter.evaluation.folders import evaluate_folders

    name, preprocessed, results = nnunet_dirs(dataset)
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    channels = modality_channels(dataset_json["channel_names"])
    absent = [m for m in MODALITIES if m not in channels]
    if absent:
        raise MissingModalityError(f"{preprocessed / 'dataset.json'}: channel_names {dataset_json['channel_names']} "
                                   f"lack {', '.join(absent)}; the 15-subset evaluation needs all four modalities")
    unknown = [m for m in methods if not isinstance(m, Method) and m not in METHODS]
    if unknown:
        raise MissingModalityError(f"unknown method(s) {', '.join(unknown)}; expected some of {', '.join(METHODS)}")
    methods = [m if isinstance(m, Method) else METHODS[m] for m in methods]
    output = Path(output_dir) if output_dir else results / "missing_modalities"
    output.mkdir(parents=True, exist_ok=True)
    file_ending = dataset_json["file_ending"]

    summaries: dict[tuple[str, str], dict[str, dict]] = {}
    for method in tqdm(methods, desc="missing modalities", unit="method"):
        method_name = method.name
        choices = (postprocessing or {}).get(method_name) or {}
        variants = ("raw", "postprocessed") if all(fold in choices for fold in folds) else ("raw",)
        all_cases = []
        for fold in folds:
            run_dir = results / method.folder_name / f"fold_{fold}"
            if not (run_dir / "checkpoint_final.pth").is_file():
                raise MissingModalityError(f"method {method_name}: no trained model {run_dir / 'checkpoint_final.pth'}"
                                           f" (train it first, e.g. nnUNetv2_sam_benchmark -d {dataset} "
                                           f"--methods {method_name})")
            cases = validation_cases(preprocessed, fold)
            _predict_fold(run_dir, fold, cases, channels, subsets, output / "predictions" / method_name,
                          mirroring, device, save_probabilities)
            if "postprocessed" in variants:
                _postprocess_fold(Path(choices[fold]), run_dir.parent / "plans.json", cases, subsets,
                                  output / "predictions" / method_name, output / "postprocessed" / method_name,
                                  file_ending)
            all_cases += cases
        for variant in variants:
            folder, evaluation = ("predictions", "evaluation") if variant == "raw" else \
                ("postprocessed", "evaluation_postprocessed")
            summaries[(method_name, variant)] = {}
            for subset in subsets:
                prediction_dir = output / folder / method_name / subset_name(subset)
                missing = [c for c in all_cases if not (prediction_dir / f"{c}{file_ending}").is_file()]
                if missing:
                    raise MissingModalityError(f"method {method_name}, subset {subset_name(subset)}: no prediction "
                                               f"for {', '.join(missing)} in {prediction_dir}")
                # the folder also holds the predictions of folds evaluated earlier: score only these folds' cases
                summary = evaluate_folders(preprocessed / "gt_segmentations", prediction_dir,
                                           output / evaluation / method_name / subset_name(subset),
                                           dataset_json=dataset_json, num_processes=num_processes, cases=all_cases,
                                           show_progress=False)
                summaries[(method_name, variant)][subset_name(subset)] = summary

    classes = list(next(iter(next(iter(summaries.values())).values()))["classes"])
    rows = table_rows(summaries, subsets, classes)
    files = {
        "missing_modalities.csv": write_csv(rows, output / "missing_modalities.csv"),
        "missing_modalities.md": write_markdown(rows, methods, classes, subsets, output / "missing_modalities.md",
                                                name, folds),
        "missing_modalities.png": write_figure(rows, methods, classes[0], subsets, output / "missing_modalities.png",
                                               variant=figure_variant(rows, methods)),
    }
    return {"dataset": name, "folds": list(folds), "methods": [m.name for m in methods], "classes": classes, "rows": rows,
            "files": {k: str(v) for k, v in files.items()}}


def table_rows(summaries: dict, subsets, classes) -> list[dict]:
    """Long format: one row per (method, variant), subset (and 'mean'), class: Dice % mean per protocol."""
    rows = []
    for (method, variant), per_subset in summaries.items():
        for cls in classes:
            values = {p: [] for p in PROTOCOLS}
            for subset in subsets:
                row = {"method": method, "variant": variant, "subset": subset_name(subset), "class": cls,
                       **{m: int(m in subset) for m in MODALITIES}}
                for protocol in PROTOCOLS:
                    stats = per_subset[subset_name(subset)][protocol].get(cls)
                    dice = 100 * stats["dice"]["mean"] if stats else None
                    row[f"dice_pct_{protocol}"] = dice
                    row[f"n_{protocol}"] = stats["dice"]["count"] if stats else 0
                    values[protocol].append(dice)
                rows.append(row)
            mean = {"method": method, "variant": variant, "subset": "mean", "class": cls,
                    **{m: "" for m in MODALITIES}}
            for protocol in PROTOCOLS:
                known = [v for v in values[protocol] if v is not None]
                mean[f"dice_pct_{protocol}"] = float(np.mean(known)) if len(known) == len(subsets) else None
                mean[f"n_{protocol}"] = len(known)
            rows.append(mean)
    return rows


CSV_COLUMNS = ["method", "variant", "class", "subset", *MODALITIES, "dice_pct_volume", "dice_pct_slice", "n_volume",
               "n_slice"]


def write_csv(rows, path: Path) -> Path:
    atomic_write_csv(path, rows, CSV_COLUMNS, float_digits=2)
    return path


def _cell(value) -> str:
    return "-" if value is None else f"{value:.2f}"


VARIANT_TITLES = {"raw": "raw predictions",
                  "postprocessed": "after nnU-Net's postprocessing (each fold's choice on its full-set validation)"}


def write_markdown(rows, methods, classes, subsets, path: Path, dataset_name: str, folds) -> Path:
    lines = [f"# Missing modalities: Dice (%) on every subset of T1 / T1ce / T2 / FLAIR",
             "",
             f"{dataset_name}, validation cases of fold(s) {', '.join(map(str, folds))}. ● present, ○ missing "
             f"(set to the missing value exactly as at inference). Each cell: volume / slice protocol "
             f"(volume = BraTS style, one Dice per case; slice = the paper's, every 2D slice with tumour).", ""]
    for variant in VARIANTS:
        lookup = {(r["method"], r["class"], r["subset"]): r for r in rows if r["variant"] == variant}
        shown = [m for m in methods if any(key[0] == m.name for key in lookup)]
        if not shown:
            continue
        for cls in classes:
            lines += [f"## {cls}, {VARIANT_TITLES[variant]}", "",
                      "| " + " | ".join(MODALITIES) + " | " + " | ".join(m.label for m in shown) + " |",
                      "|" + "---|" * (len(MODALITIES) + len(shown))]
            for subset in [*(subset_name(s) for s in subsets), "mean"]:
                marks = ["●" if m in subset.split("+") else "○" for m in MODALITIES] if subset != "mean" else \
                    [f"**mean of {len(subsets)}**", "", "", ""]
                cells = [f"{_cell(lookup[(m.name, cls, subset)]['dice_pct_volume'])} / "
                         f"{_cell(lookup[(m.name, cls, subset)]['dice_pct_slice'])}" for m in shown]
                lines.append("| " + " | ".join(marks + cells) + " |")
            lines.append("")
            costs = dropout_costs(lookup, shown, cls, len(subsets))
            if costs:
                lines += ["What modality dropout costs with all four modalities and gains on average (volume Dice, "
                          "percentage points, with dropout - without):", "", *costs, ""]
    lines += ["Published means over the 15 subsets, whole tumour, BraTS 2018 (their papers' tables, as quoted in "
              "issue #11; OTHER data and splits than ours, not comparable, for orientation only):", ""]
    lines += [f"- {name}: {value:.2f}" for name, value in PUBLISHED_MEANS.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def dropout_costs(lookup: dict, methods, cls: str, n_subsets: int) -> list[str]:
    """One markdown line per dropout variant in `methods` whose own method is there too: its full-set and
    mean-of-15 volume Dice against the method without dropout (`lookup`: (method, class, subset) -> row)."""
    names = {m.name for m in methods}
    full = subset_name(MODALITIES)
    lines = []
    for method in methods:
        if method.dropout_of not in names:
            continue
        parts = []
        for subset, what in ((full, "full set"), ("mean", f"mean of {n_subsets}")):
            with_, without = (lookup[(name, cls, subset)]["dice_pct_volume"]
                              for name in (method.name, method.dropout_of))
            change = "-" if None in (with_, without) else f"{with_ - without:+.2f}"
            parts.append(f"{what} {_cell(with_)} vs {_cell(without)} ({change})")
        lines.append(f"- {method.label} vs {METHODS[method.dropout_of].label}: " + "; ".join(parts))
    return lines


def figure_variant(rows, methods) -> str:
    """'postprocessed' when every method has those rows, else 'raw'."""
    postprocessed = {r["method"] for r in rows if r["variant"] == "postprocessed"}
    return "postprocessed" if all(m.name in postprocessed for m in methods) else "raw"


def write_figure(rows, methods, cls, subsets, path: Path, variant: str = "raw") -> Path:
    """Grouped bars: volume Dice (%) of `cls` per subset, one bar per method (rows of `variant`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lookup = {(r["method"], r["subset"]): r for r in rows if r["class"] == cls and r["variant"] == variant}
    names = [subset_name(s) for s in subsets]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(methods))
    # matplotlib's default style: nnU-Net's progress plot sets seaborn's font_scale=2.5 process-wide.
    with plt.style.context("default"):
        fig, ax = _bars(plt, lookup, methods, names, x, width, cls)
        ax.set_title(f"Dice per available-modality subset, {VARIANT_TITLES[variant].split(' (')[0]}")
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def _bars(plt, lookup, methods, names, x, width, cls):
    """The grouped bar chart of `write_figure` (figure, axes)."""
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(names) * max(1, len(methods)) ** 0.5), 4.5))
    for i, method in enumerate(methods):
        values = [lookup[(method.name, n)]["dice_pct_volume"] for n in names]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, [np.nan if v is None else v for v in values], width,
               label=method.label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"Dice (%), {cls}, volume protocol")
    ax.set_ylim(0, 100)
    ax.set_title("Dice per available-modality subset")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax
