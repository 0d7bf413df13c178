"""BraTS-like phantom cases (4 MRI contrasts + BraTS labels) for the demo and the tests.

A phantom is an analytic head: scalp ring, brain (white matter core, grey matter shell), two lateral
ventricles and a CSF rim, and one lobulated tumour (edema around an enhancing rim around a necrotic
core). Each modality is rendered by evaluating the analytic tissue map at (optionally rigidly moved)
physical points, so misaligned modalities carry no interpolation blur. Labels follow BraTS 2018-2021:
0 background, 1 necrotic core, 2 edema, 4 enhancing tumour.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_sam_adapter.data.brats import BRATS_SUFFIXES, CHANNELS

MODALITIES = CHANNELS  # t1, t1ce, t2, flair
MOVED_MODALITIES = ("t1", "t1ce", "flair")  # registered to T2 by the converter

# tissue index -> mean intensity per modality (arbitrary units, ~MRI-like 0..1200)
_TISSUES = ("background", "scalp", "csf", "grey", "white", "edema", "enhancing", "necrosis")
_CONTRAST = {
    #            bg  scalp  csf  grey white edema  enh  necr
    "t1":    (0, 700, 150, 550, 800, 430, 520, 230),
    "t1ce":  (0, 720, 160, 570, 810, 450, 1150, 240),
    "t2":    (0, 450, 1100, 620, 420, 900, 650, 1000),
    "flair": (0, 500, 60, 600, 480, 1050, 760, 380),
}
_BRATS_LABEL_OF_TISSUE = {"edema": 2, "enhancing": 4, "necrosis": 1}


def _random_rotation_and_shift(rng: np.random.Generator, max_rotation_deg: float, max_shift_mm: float):
    """Random axis, angle in [max/2, max] degrees, shift of length in [max/2, max] mm."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.5, 1.0) * max_rotation_deg)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    shift = direction * rng.uniform(0.5, 1.0) * max_shift_mm
    return axis, angle, shift


def rigid_transform_from_params(params: dict) -> sitk.VersorRigid3DTransform:
    """Rebuild the SimpleITK transform recorded in ``make_phantom_case(...)["transforms"][m]``.

    T moved the modality's content: a point p of the reference (T2) anatomy appears at T(p) in the
    moved modality, ``moved(T(p)) = anatomy(p)``. SimpleITK registration of the moved modality to T2
    returns exactly T (its transforms map fixed points to moving points).
    """
    transform = sitk.VersorRigid3DTransform()
    transform.SetCenter(params["center_mm"])
    transform.SetRotation(params["rotation_axis"], np.deg2rad(params["rotation_deg"]))
    transform.SetTranslation(params["translation_mm"])
    return transform


def _physical_points(shape_zyx, spacing_xyz, origin_xyz):
    """(z, y, x, 3) physical xyz coordinates of every voxel of an identity-direction grid."""
    zz, yy, xx = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape_zyx), indexing="ij")
    return np.stack([origin_xyz[0] + xx * spacing_xyz[0],
                     origin_xyz[1] + yy * spacing_xyz[1],
                     origin_xyz[2] + zz * spacing_xyz[2]], axis=-1)


def _anatomy(rng: np.random.Generator, extent_xyz: np.ndarray) -> dict:
    """Random phantom layout (all in mm, relative to the grid centre)."""
    half = extent_xyz / 2
    head = half * np.array([0.80, 0.86, 0.72]) * rng.uniform(0.95, 1.0, 3)
    brain = head * 0.86
    side = rng.choice([-1.0, 1.0])
    tumour_centre = np.array([side * brain[0] * rng.uniform(0.3, 0.45),
                              brain[1] * rng.uniform(-0.35, 0.35),
                              brain[2] * rng.uniform(-0.2, 0.2)])
    tumour_radius = brain[0] * rng.uniform(0.3, 0.42)
    return {
        "head": head, "brain": brain, "white": brain * 0.7,
        "ventricles": [(np.array([s * brain[0] * 0.16, -brain[1] * 0.05, brain[2] * 0.1]),
                        brain * np.array([0.09, 0.35, 0.25]) * rng.uniform(0.9, 1.1, 3))
                       for s in (-1.0, 1.0)],
        "tumour_centre": tumour_centre, "tumour_radius": tumour_radius,
        "lobes": rng.uniform(0, 2 * np.pi, 4),
    }


def _inside_ellipsoid(points: np.ndarray, centre, semi_axes) -> np.ndarray:
    scaled = (points - np.float32(centre)) / np.asarray(semi_axes, np.float32)
    return np.einsum("...i,...i->...", scaled, scaled) <= 1.0


def _tissue_map(points: np.ndarray, anatomy: dict) -> np.ndarray:
    """Tissue index (into _TISSUES) at physical points (..., 3), relative to the grid centre."""
    tissue = np.zeros(points.shape[:-1], np.uint8)
    tissue[_inside_ellipsoid(points, 0, anatomy["head"])] = _TISSUES.index("scalp")
    tissue[_inside_ellipsoid(points, 0, anatomy["brain"] + 1.5)] = _TISSUES.index("csf")
    tissue[_inside_ellipsoid(points, 0, anatomy["brain"])] = _TISSUES.index("grey")
    tissue[_inside_ellipsoid(points, 0, anatomy["white"])] = _TISSUES.index("white")
    for centre, semi_axes in anatomy["ventricles"]:
        tissue[_inside_ellipsoid(points, centre, semi_axes)] = _TISSUES.index("csf")
    # lobulated tumour: radius modulated by the direction from its centre
    offset = points - anatomy["tumour_centre"].astype(np.float32)
    distance = np.linalg.norm(offset, axis=-1) + 1e-6
    unit = offset / distance[..., None]
    a = anatomy["lobes"]
    lobulation = 1 + 0.18 * np.sin(3 * unit[..., 0] + a[0]) * np.cos(2 * unit[..., 1] + a[1]) \
        + 0.1 * np.sin(4 * unit[..., 2] + a[2])
    relative = distance / (anatomy["tumour_radius"] * lobulation)
    in_brain = _inside_ellipsoid(points, 0, anatomy["brain"])
    for tissue_name, limit in (("edema", 1.0), ("enhancing", 0.55), ("necrosis", 0.38)):
        tissue[in_brain & (relative <= limit)] = _TISSUES.index(tissue_name)
    return tissue


def _render(tissue: np.ndarray, modality: str, rng: np.random.Generator, spacing_xyz) -> np.ndarray:
    """Intensities of one modality: contrast table, partial-volume blur, Rician-like noise."""
    image = np.asarray(_CONTRAST[modality], np.float32)[tissue]
    blurred = sitk.SmoothingRecursiveGaussian(_to_image(image, spacing_xyz), 0.6)
    image = sitk.GetArrayViewFromImage(blurred)
    sigma = 25.0
    noisy = np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape))
    return np.clip(np.round(noisy), 0, 32767).astype(np.int16)


def _to_image(array: np.ndarray, spacing_xyz, origin_xyz=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    image.SetOrigin(tuple(float(o) for o in origin_xyz))
    return image


def make_phantom_case(seed: int, shape_zyx=(40, 96, 96), spacing=(1.0, 1.0, 1.0), misalign=True,
                      max_rotation_deg=8.0, max_shift_mm=6.0) -> dict:
    """One BraTS-like case on a (z, y, x) grid with ``spacing`` (x, y, z) mm.

    Returns ``{"t1", "t1ce", "t2", "flair": int16 sitk.Image, "seg": uint8 sitk.Image (0/1/2/4),
    "transforms": {modality: params}}``. With ``misalign``, T1, T1ce and FLAIR are sampled through a
    random rigid transform (rotation angle and shift length between half and the maxima) while T2
    and seg stay on the reference grid; params (see ``rigid_transform_from_params``) record it.
    """
    rng = np.random.default_rng(seed)
    spacing_xyz = np.asarray(spacing, np.float64)
    extent_xyz = np.asarray(shape_zyx[::-1], np.float64) * spacing_xyz
    # origin chosen so that the grid centre is the physical origin: anatomy lives around (0, 0, 0)
    origin_xyz = -(np.asarray(shape_zyx[::-1]) - 1) * spacing_xyz / 2
    anatomy = _anatomy(rng, extent_xyz)
    points = _physical_points(shape_zyx, spacing_xyz, origin_xyz)

    reference_tissue = _tissue_map(points, anatomy)
    case = {"transforms": {}}
    for modality in MODALITIES:
        tissue = reference_tissue
        if misalign and modality in MOVED_MODALITIES:
            axis, angle, shift = _random_rotation_and_shift(rng, max_rotation_deg, max_shift_mm)
            params = {"rotation_axis": axis.tolist(), "rotation_deg": float(np.rad2deg(angle)),
                      "translation_mm": shift.tolist(), "center_mm": [0.0, 0.0, 0.0]}
            transform = rigid_transform_from_params(params)
            matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
            # content moved by T: moved(x) = anatomy(T^-1(x)), T^-1(x) = R^T (x - t) (centre 0)
            moved_points = (points - shift.astype(np.float32)) @ matrix.astype(np.float32)
            tissue = _tissue_map(moved_points, anatomy)
            case["transforms"][modality] = params
        case[modality] = _to_image(_render(tissue, modality, rng, spacing_xyz), spacing_xyz, origin_xyz)

    seg = np.zeros(reference_tissue.shape, np.uint8)
    for tissue_name, label in _BRATS_LABEL_OF_TISSUE.items():
        seg[reference_tissue == _TISSUES.index(tissue_name)] = label
    case["seg"] = _to_image(seg, spacing_xyz, origin_xyz)
    return case


def write_brats_dataset(out_dir, n_cases: int, seed: int = 0, naming: str = "2021", n_without_seg: int = 0,
                        **phantom_kwargs) -> list[str]:
    """Write ``n_cases`` phantom cases as BraTS case folders; return the case IDs.

    naming "2021": ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``; "2023":
    ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (seg labels 1/2/3 instead of 1/2/4).
    The last ``n_without_seg`` cases get no seg file. Case i uses seed ``seed + i``.
    """
    if naming not in BRATS_SUFFIXES:
        raise ValueError(f"naming must be one of {sorted(BRATS_SUFFIXES)}, got {naming!r}")
    out_dir = Path(out_dir)
    case_ids = []
    for index in range(n_cases):
        case_id = f"BraTS2021_{index:05d}" if naming == "2021" else f"BraTS-GLI-{index:05d}-000"
        case = make_phantom_case(seed + index, **phantom_kwargs)
        if naming == "2023":
            seg = sitk.GetArrayFromImage(case["seg"])
            seg[seg == 4] = 3
            relabelled = sitk.GetImageFromArray(seg)
            relabelled.CopyInformation(case["seg"])
            case["seg"] = relabelled
        case_dir = out_dir / case_id
        os.makedirs(case_dir, exist_ok=True)
        with_seg = index < n_cases - n_without_seg
        for key, suffix in BRATS_SUFFIXES[naming].items():
            if key == "seg" and not with_seg:
                continue
            sitk.WriteImage(case[key], str(case_dir / f"{case_id}{suffix}.nii.gz"), useCompression=True)
        case_ids.append(case_id)
    return case_ids


def flip_direction_xy(image: sitk.Image) -> sitk.Image:
    """The same voxels with a wrong orientation header: the direction flipped in physical x and y (as a
    RAS/LPS mix-up does), the origin moved so that the grid centre stays where it was. In scanner space
    the content is mirrored in x and y about the grid centre (a 180-degree turn about z)."""
    flipped = sitk.Image(image)
    direction = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.GetDirection()).reshape(3, 3)
    centre_index = [(n - 1) / 2 for n in image.GetSize()]
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(centre_index))
    flipped.SetDirection(direction.ravel().tolist())
    flipped.SetOrigin((0.0, 0.0, 0.0))
    flipped.SetOrigin(tuple(centre - np.asarray(flipped.TransformContinuousIndexToPhysicalPoint(centre_index))))
    return flipped
