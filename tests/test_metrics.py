"""Dice / HD95 on hand-checkable masks, empty-mask conventions, regions, the slice protocol, and agreement
with independent computations (SimpleITK overlap filter, scipy distance transform) on real BraTS labels."""
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from real_data import REAL_DATA

from nnunet_sam_adapter.evaluation.metrics import (
    case_metrics,
    classes_from_dataset_json,
    empty_mask_penalty_mm,
    slice_case_means,
    slice_metrics,
    summarize,
)

SPACING_ZYX = (2.0, 1.0, 0.5)  # anisotropic on purpose: the same voxel shift is 2, 1 or 0.5 mm per voxel


def cube(shape=(24, 24, 24), start=(6, 6, 6), size=8, label=1) -> np.ndarray:
    volume = np.zeros(shape, dtype=np.uint8)
    volume[tuple(slice(s, s + size) for s in start)] = label
    return volume


def shifted(volume: np.ndarray, shift: int, axis: int) -> np.ndarray:
    return np.roll(volume, shift, axis=axis)  # the cubes are far from the border: nothing wraps around


# Hand derivation for an n-voxel cube (or square) shifted by k voxels along one axis of spacing s:
# - Dice = 2 |A & B| / (|A| + |B|) = 2 (n - k) n^2 / (2 n^3) = (n - k) / n.
# - HD95 = k * s: every surface voxel of A has its translate (a surface voxel of B) at k * s, so no
#   distance exceeds k * s; the n^2 voxels of A's trailing face lie k * s from every voxel of B (B starts
#   k voxels further along the axis), and they are >= 1/6 > 5 % of A's surface voxels. So the 95th
#   percentile (of each direction, by symmetry) is exactly k * s.
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cube_shifted_along_one_axis(axis):
    n, k = 8, 3
    reference = cube(size=n)
    prediction = shifted(reference, k, axis)
    [row] = case_metrics(reference, prediction, SPACING_ZYX, {"tumour": 1})
    assert row["class"] == "tumour"
    assert row["dice"] == pytest.approx((n - k) / n)
    assert row["hd95"] == pytest.approx(k * SPACING_ZYX[axis])
    assert row["ref_voxels"] == row["pred_voxels"] == n**3


def test_same_shift_along_axes_of_different_spacing_gives_different_mm():
    reference = cube()
    hd95 = [case_metrics(reference, shifted(reference, 2, axis), SPACING_ZYX, {"t": 1})[0]["hd95"] for axis in range(3)]
    assert hd95 == pytest.approx([4.0, 2.0, 1.0])


def test_square_shifted_2d_with_anisotropic_spacing():
    n, k, spacing_yx = 10, 4, (0.7, 1.3)
    reference = np.zeros((30, 30), dtype=np.uint8)
    reference[10 : 10 + n, 10 : 10 + n] = 1
    prediction = np.roll(reference, k, axis=1)
    [row] = case_metrics(reference, prediction, spacing_yx, {"t": 1})
    assert row["dice"] == pytest.approx((n - k) / n)
    assert row["hd95"] == pytest.approx(k * 1.3)


def test_identical_masks_score_perfectly():
    reference = cube()
    [row] = case_metrics(reference, reference.copy(), SPACING_ZYX, {"t": 1})
    assert row["dice"] == pytest.approx(1.0)
    assert row["hd95"] == 0.0


def test_brats_penalty_is_the_image_diagonal():
    assert empty_mask_penalty_mm((155, 240, 240), (1.0, 1.0, 1.0)) == pytest.approx(373.13, abs=0.01)
    assert empty_mask_penalty_mm((240, 240), (1.0, 1.0)) == pytest.approx(339.41, abs=0.01)


def test_both_empty_is_perfect_in_the_volume_protocol():
    empty = np.zeros((10, 12, 14), dtype=np.uint8)
    [row] = case_metrics(empty, empty.copy(), SPACING_ZYX, {"t": 1})
    assert (row["dice"], row["hd95"]) == (1.0, 0.0)
    assert row["ref_voxels"] == row["pred_voxels"] == 0
    assert slice_metrics(empty, empty.copy(), SPACING_ZYX, {"t": 1}) == []


@pytest.mark.parametrize("empty_side", ["reference", "prediction"])
def test_one_empty_gets_dice_zero_and_the_diagonal_penalty(empty_side):
    full = cube(shape=(10, 12, 14), start=(2, 2, 2), size=4)
    empty = np.zeros_like(full)
    reference, prediction = (empty, full) if empty_side == "reference" else (full, empty)
    [row] = case_metrics(reference, prediction, SPACING_ZYX, {"t": 1})
    diagonal = math.sqrt((10 * 2.0) ** 2 + (12 * 1.0) ** 2 + (14 * 0.5) ** 2)
    assert row["dice"] == 0.0
    assert row["hd95"] == pytest.approx(diagonal)
    slices = slice_metrics(reference, prediction, SPACING_ZYX, {"t": 1})
    in_plane_diagonal = math.sqrt((12 * 1.0) ** 2 + (14 * 0.5) ** 2)
    assert len(slices) == 4
    assert all(r["dice"] == 0.0 and r["hd95"] == pytest.approx(in_plane_diagonal) for r in slices)


def brats_like_labels() -> np.ndarray:
    """Nested cubes: 1 (edema) around 2 (necrosis) around 3 (enhancing), nnU-Net BraTS label values."""
    labels = cube(shape=(20, 20, 20), start=(2, 2, 2), size=16, label=1)
    labels[5:15, 5:15, 5:15] = 2
    labels[8:12, 8:12, 8:12] = 3
    return labels


def test_regions_are_unions_of_labels():
    reference = brats_like_labels()
    prediction = reference.copy()
    prediction[prediction == 3] = 2  # enhancing tumour called necrosis: ET missed, TC and WT still right
    classes = {"whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing tumor": (3,), "edema": 1}
    rows = {r["class"]: r for r in case_metrics(reference, prediction, (1.0, 1.0, 1.0), classes)}
    assert rows["whole tumor"]["dice"] == pytest.approx(1.0) and rows["whole tumor"]["hd95"] == 0.0
    assert rows["tumor core"]["dice"] == pytest.approx(1.0) and rows["tumor core"]["ref_voxels"] == 10**3
    assert rows["enhancing tumor"]["dice"] == 0.0
    assert rows["enhancing tumor"]["hd95"] == pytest.approx(empty_mask_penalty_mm((20, 20, 20), (1, 1, 1)))
    assert rows["edema"]["ref_voxels"] == 16**3 - 10**3 and rows["edema"]["dice"] == pytest.approx(1.0)


def test_classes_from_dataset_json_labels_and_regions():
    region_based = {
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
        "regions_class_order": [1, 2, 3],
    }
    assert classes_from_dataset_json(region_based) == {
        "whole tumor": (1, 2, 3),
        "tumor core": (2, 3),
        "enhancing tumor": (3,),
    }
    label_based = {"labels": {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3, "ignore": 4}}
    assert classes_from_dataset_json(label_based) == {"edema": 1, "necrosis": 2, "enhancing": 3}


def test_slice_protocol_counts_only_slices_with_tumour():
    n, k = 8, 3
    reference = cube(size=n)  # z slices 6..13
    prediction = shifted(reference, k, axis=0)  # z slices 9..16
    rows = slice_metrics(reference, prediction, SPACING_ZYX, {"t": 1}, axis=0)
    assert [r["slice"] for r in rows] == list(range(6, 17))  # union of occupied slices: n + k
    by_slice = {r["slice"]: r for r in rows}
    in_plane_diagonal = math.sqrt((24 * 1.0) ** 2 + (24 * 0.5) ** 2)
    for z in range(6, 17):
        if 9 <= z <= 13:  # both hold the same square
            assert by_slice[z]["dice"] == pytest.approx(1.0) and by_slice[z]["hd95"] == 0.0
        else:  # only one side has tumour in this slice
            assert by_slice[z]["dice"] == 0.0 and by_slice[z]["hd95"] == pytest.approx(in_plane_diagonal)
    means = slice_case_means(rows)["t"]
    assert means["n_slices"] == n + k
    assert means["dice"] == pytest.approx((n - k) / (n + k))


@pytest.mark.parametrize("slice_axis, shift_axis", [(0, 2), (0, 1), (2, 0), (1, 2)])
def test_slice_protocol_uses_in_plane_spacing(slice_axis, shift_axis):
    n, k = 8, 2
    reference = cube(size=n)
    prediction = shifted(reference, k, shift_axis)
    rows = slice_metrics(reference, prediction, SPACING_ZYX, {"t": 1}, axis=slice_axis)
    assert len(rows) == n
    assert all(r["dice"] == pytest.approx((n - k) / n) for r in rows)
    assert all(r["hd95"] == pytest.approx(k * SPACING_ZYX[shift_axis]) for r in rows)


def test_slice_protocol_on_a_2d_image_is_one_slice():
    reference = np.zeros((16, 16), dtype=np.uint8)
    reference[4:12, 4:12] = 1
    rows = slice_metrics(reference, np.roll(reference, 2, axis=0), (0.5, 1.0), {"t": 1})
    assert len(rows) == 1 and rows[0]["slice"] == 0
    assert rows[0]["dice"] == pytest.approx(6 / 8) and rows[0]["hd95"] == pytest.approx(1.0)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape mismatch"):
        case_metrics(cube(), cube(shape=(24, 24, 25)), SPACING_ZYX, {"t": 1})


def test_summarize_mean_std_median_count():
    rows = [{"class": "a", "dice": d, "hd95": h} for d, h in [(0.5, 1.0), (1.0, 3.0), (0.0, 8.0)]]
    rows.append({"class": "b", "dice": 1.0, "hd95": 0.0})
    summary = summarize(rows)
    assert summary["a"]["dice"] == pytest.approx({"mean": 0.5, "std": math.sqrt(1 / 6), "median": 0.5, "count": 3})
    assert summary["a"]["hd95"]["median"] == 3.0 and summary["a"]["hd95"]["mean"] == pytest.approx(4.0)
    assert summary["b"]["dice"]["count"] == 1 and summary["b"]["dice"]["std"] == 0.0


# --- agreement with independent computations on real BraTS labels --------------------------------------


def real_segmentation() -> Path:
    folder = REAL_DATA
    candidates = sorted(folder.glob("*/*/*_seg.nii.gz")) if folder.is_dir() else []
    if not candidates:
        pytest.skip(f"real BraTS segmentations (*/*/*_seg.nii.gz) not found under {folder} (set NNSAM_REAL_DATA)")
    return candidates[0]


def scipy_hd95(reference: np.ndarray, prediction: np.ndarray, spacing) -> float:
    """Symmetric HD95 from Euclidean distance transforms of the surface voxels (mask minus its erosion)."""
    surfaces = [mask ^ ndimage.binary_erosion(mask) for mask in (reference, prediction)]
    directed = []
    for source, target in (surfaces, surfaces[::-1]):
        distance_to_target = ndimage.distance_transform_edt(~target, sampling=spacing)
        directed.append(np.percentile(distance_to_target[source], 95))
    return float(max(directed))


def sitk_dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk.GetImageFromArray(reference.astype(np.uint8)), sitk.GetImageFromArray(prediction.astype(np.uint8)))
    return overlap.GetDiceCoefficient(1)


@pytest.fixture(scope="module")
def whole_tumour_pair():
    """Whole tumour of one real case (cropped around it) and a perturbed copy: eroded, shifted, trimmed."""
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(real_segmentation())))
    whole_tumour = labels > 0
    box = ndimage.find_objects(whole_tumour.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 8, 0), s.stop + 8) for s in box)
    reference = np.ascontiguousarray(whole_tumour[box])
    perturbed = ndimage.binary_erosion(reference, iterations=2)
    perturbed = ndimage.shift(perturbed.astype(np.uint8), (1, -2, 3), order=0).astype(bool)
    perturbed[:, :, : perturbed.shape[2] // 3] = False  # drop a third: a large, asymmetric error
    return reference, perturbed


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.9, 1.2)])
def test_volume_metrics_agree_with_independent_computation(whole_tumour_pair, spacing):
    reference, prediction = whole_tumour_pair
    [row] = case_metrics(reference.astype(np.uint8), prediction.astype(np.uint8), spacing, {"wt": 1})
    assert row["dice"] == pytest.approx(sitk_dice(reference, prediction), abs=1e-6)
    assert row["hd95"] == pytest.approx(scipy_hd95(reference, prediction, spacing), abs=1e-3)
    assert 0.2 < row["dice"] < 0.95 and row["hd95"] > 3.0  # the perturbation is not trivial


def test_slice_metrics_agree_with_independent_computation(whole_tumour_pair):
    reference, prediction = whole_tumour_pair
    spacing = (2.5, 0.9, 1.2)
    rows = slice_metrics(reference.astype(np.uint8), prediction.astype(np.uint8), spacing, {"wt": 1}, axis=0)
    occupied = [z for z in range(reference.shape[0]) if reference[z].any() or prediction[z].any()]
    assert [r["slice"] for r in rows] == occupied
    both = [r for r in rows if reference[r["slice"]].any() and prediction[r["slice"]].any()]
    assert len(both) >= 5
    for row in both[:: max(1, len(both) // 10)]:  # about ten slices spread over the tumour
        ref_2d, pred_2d = reference[row["slice"]], prediction[row["slice"]]
        assert row["dice"] == pytest.approx(sitk_dice(ref_2d, pred_2d), abs=1e-6)
        assert row["hd95"] == pytest.approx(scipy_hd95(ref_2d, pred_2d, spacing[1:]), abs=1e-3)
