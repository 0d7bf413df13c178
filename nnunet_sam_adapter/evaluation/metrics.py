"""Dice and HD95 (mm) per label or region, in two protocols, computed with MONAI's metric functions.

Protocols
- volume (BraTS style): one Dice and one HD95 per case and class on the whole 2D/3D array.
- slice (the paper's): every 2D slice along `axis` that has the class in the reference or in the
  prediction gets a Dice and an HD95 with the in-plane spacing. The paper's 245 test images are such
  slices, so its summary is over all slices of all cases.

Classes: a name -> a label value (int) or a region (tuple of label values; the mask is the union).
nnU-Net region-based datasets write exported segmentations as label maps (via "regions_class_order"),
so a region's mask is `np.isin(segmentation, region)`, exactly as nnU-Net's own evaluation does.

Empty-mask conventions (MONAI's nan/inf never leak out)
- both reference and prediction empty: Dice 1, HD95 0 mm (perfect agreement on absence). Only the
  volume protocol sees this; the slice protocol skips such slices.
- exactly one empty (a missed or a hallucinated structure): Dice 0 and HD95 = the image diagonal in mm,
  sqrt(sum((shape * spacing)^2)) of the evaluated array (the whole volume, or the slice in the slice
  protocol). It is the largest distance two points inside the image can have, so it bounds every
  finite HD95 from above: a missed structure never scores better than any attempt at it. It is also
  BraTS' own penalty: 373.13 mm for 240x240x155 at 1 mm (339.41 mm for one 240x240 slice).

Dice is a fraction in [0, 1] (multiply by 100 for the paper's "Dice (%)"); HD95 is in mm.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

ClassSpec = Union[int, tuple[int, ...]]
METRIC_NAMES = ("dice", "hd95")


def classes_from_dataset_json(dataset_json: Mapping) -> dict[str, ClassSpec]:
    """Evaluated classes from an nnU-Net dataset.json dict: name -> label value or region tuple.

    Background (value 0) and the "ignore" label are left out. List values are regions (nnU-Net
    region-based training, which also needs "regions_class_order"); int values are labels.
    """
    classes: dict[str, ClassSpec] = {}
    for name, value in dataset_json["labels"].items():
        if name == "ignore":
            continue
        if isinstance(value, (list, tuple)):
            region = tuple(int(v) for v in value)
            if any(v != 0 for v in region):
                classes[name] = region
        elif int(value) != 0:
            classes[name] = int(value)
    return classes


def class_mask(segmentation: np.ndarray, spec: ClassSpec) -> np.ndarray:
    """Boolean mask of a label value or of a region (union of label values); same shape as input."""
    values = spec if isinstance(spec, tuple) else (spec,)
    return np.isin(segmentation, values)


def empty_mask_penalty_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """HD95 given when exactly one mask is empty: the image diagonal in mm (see the module docstring)."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def binary_dice_hd95(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    """Dice (fraction) and HD95 (mm) of two boolean masks of the same 2D/3D shape.

    `spacing` is per array axis (mm). Empty masks follow the module's conventions.
    """
    if reference.shape != prediction.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs prediction {prediction.shape}")
    if len(spacing) != reference.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a {reference.ndim}D array")
    ref_any, pred_any = bool(reference.any()), bool(prediction.any())
    if not ref_any and not pred_any:
        return 1.0, 0.0
    if ref_any != pred_any:
        return 0.0, empty_mask_penalty_mm(reference.shape, spacing)
    reference, prediction = _crop_to_union(reference, prediction)
    # MONAI expects one-hot (batch, channel, *spatial) tensors.
    y = torch.from_numpy(reference[None, None]).double()
    y_pred = torch.from_numpy(prediction[None, None]).double()
    dice = compute_dice(y_pred, y, include_background=True, ignore_empty=False)
    with warnings.catch_warnings():
        # MONAI 1.5+ passes its own deprecated `always_return_as_numpy` argument internally.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\.")
        hd95 = compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=[float(s) for s in spacing]
        )
    return float(dice.item()), float(hd95.item())


def case_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_zyx: Sequence[float],
    classes: Mapping[str, ClassSpec],
) -> list[dict]:
    """Volume protocol: one row per class.

    reference, prediction: integer label maps of equal shape (z, y, x) (or (y, x)); spacing_zyx in mm,
    in numpy axis order. Rows: class, dice, hd95 (mm), ref_voxels, pred_voxels.
    """
    _check_pair(reference, prediction, spacing_zyx)
    rows = []
    for name, spec in classes.items():
        ref_mask, pred_mask = class_mask(reference, spec), class_mask(prediction, spec)
        dice, hd95 = binary_dice_hd95(ref_mask, pred_mask, spacing_zyx)
        rows.append(
            {
                "class": name,
                "dice": dice,
                "hd95": hd95,
                "ref_voxels": int(ref_mask.sum()),
                "pred_voxels": int(pred_mask.sum()),
            }
        )
    return rows


def slice_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_zyx: Sequence[float],
    classes: Mapping[str, ClassSpec],
    axis: int = 0,
) -> list[dict]:
    """Slice protocol: one row per class and per 2D slice along `axis` with the class in ref or pred.

    axis=0 is z for SimpleITK-ordered arrays, the slicing of nnU-Net's 2d configuration. HD95 uses the
    in-plane spacing (spacing_zyx without `axis`). A 2D input is a single slice (index 0).
    Rows: class, slice, dice, hd95 (mm).
    """
    _check_pair(reference, prediction, spacing_zyx)
    if reference.ndim == 2:
        reference, prediction = reference[None], prediction[None]
        spacing_zyx, axis = (1.0, *spacing_zyx), 0
    axis = axis % reference.ndim
    in_plane_spacing = [s for i, s in enumerate(spacing_zyx) if i != axis]
    other_axes = tuple(i for i in range(reference.ndim) if i != axis)
    rows = []
    for name, spec in classes.items():
        ref_mask, pred_mask = class_mask(reference, spec), class_mask(prediction, spec)
        occupied = ref_mask.any(axis=other_axes) | pred_mask.any(axis=other_axes)
        for index in np.flatnonzero(occupied):
            dice, hd95 = binary_dice_hd95(
                np.take(ref_mask, index, axis=axis), np.take(pred_mask, index, axis=axis), in_plane_spacing
            )
            rows.append({"class": name, "slice": int(index), "dice": dice, "hd95": hd95})
    return rows


def slice_case_means(slice_rows: Sequence[Mapping]) -> dict[str, dict]:
    """Per-case means of one case's slice rows: class -> {n_slices, dice, hd95}.

    A class with no occupied slice in the case is absent (it has no slice-protocol score).
    """
    means: dict[str, dict] = {}
    for name in dict.fromkeys(row["class"] for row in slice_rows):
        rows = [row for row in slice_rows if row["class"] == name]
        means[name] = {
            "n_slices": len(rows),
            **{metric: float(np.mean([row[metric] for row in rows])) for metric in METRIC_NAMES},
        }
    return means


def summarize(rows: Sequence[Mapping], metrics: Sequence[str] = METRIC_NAMES) -> dict[str, dict]:
    """Mean, std (population, ddof=0), median and count of each metric per class, over all rows.

    Pass the volume rows of all cases for the volume protocol, the slice rows of all cases for the
    slice protocol (the paper's per-image average). Returns class -> metric -> statistic -> value.
    """
    summary: dict[str, dict] = {}
    for name in dict.fromkeys(row["class"] for row in rows):
        summary[name] = {}
        for metric in metrics:
            values = np.asarray([row[metric] for row in rows if row["class"] == name], dtype=float)
            summary[name][metric] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "median": float(np.median(values)),
                "count": int(values.size),
            }
    return summary


def _check_pair(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> None:
    if reference.shape != prediction.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs prediction {prediction.shape}")
    if reference.ndim not in (2, 3) or len(spacing) != reference.ndim:
        raise ValueError(f"expected 2D/3D arrays with one spacing per axis, got {reference.shape}, {spacing}")


def _crop_to_union(reference: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their union's bounding box plus a 1-voxel margin (keeps surfaces unchanged)."""
    union = reference | prediction
    slices = []
    for axis in range(union.ndim):
        occupied = np.flatnonzero(union.any(axis=tuple(i for i in range(union.ndim) if i != axis)))
        slices.append(slice(max(occupied[0] - 1, 0), occupied[-1] + 2))
    box = tuple(slices)
    return np.ascontiguousarray(reference[box]), np.ascontiguousarray(prediction[box])

