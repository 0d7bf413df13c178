"""Rigid registration of one MRI modality to the same case's T2 (SimpleITK), and resampling onto T2's grid.

The paper registers every modality rigidly to T2 with SimpleITK. Setup (DESIGN.md section 4 lists what
was robust on real BraTS volumes): versor rigid 3D transform, Mattes mutual information (32 bins,
random samples with a fixed seed), 4 resolution levels (shrink 8, 4, 2, 1; smoothing 3, 2, 1, 0 mm),
regular-step gradient descent with physical-shift scales. Speed comes from a fixed number of metric
samples per level (instead of a fixed percentage, which at full resolution of a 240x240x155 volume
means ~1.8 M samples per iteration) drawn inside the T2 head mask, where the information is.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

# one set of geometry tolerances for every stage (data/images.py); re-exported for callers of this module
from nnunet_sam_adapter.data.images import (  # noqa: F401
    DIRECTION_TOLERANCE, ORIGIN_TOLERANCE_MM, SPACING_TOLERANCE_MM, same_geometry)

REGISTRATION_VERSION = "3"  # bump when results change; conversion re-runs cases registered by older versions
# Fixed metric-sampling seed: results are identical run to run with one ITK thread; with several threads
# the metric's partial sums are added in varying order (differences ~1e-4 mm).
RANDOM_SEED = 20240607


@dataclass(frozen=True)
class RegistrationSettings:
    shrink_factors: tuple = (8, 4, 2, 1)
    smoothing_sigmas_mm: tuple = (3.0, 2.0, 1.0, 0.0)
    histogram_bins: int = 32
    samples_per_level: int = 40_000
    iterations_per_level: int = 150
    learning_rate: float = 2.0
    min_step: float = 1e-4
    relaxation: float = 0.8  # 0.5 stopped early on noisy MI gradients (2-3 degree errors on phantoms)
    seed: int = RANDOM_SEED
    # Finest (shrink 1) level: False = the moving image's gradient by central differences at the sampled
    # points only, instead of ITK's gradient filter over the whole unshrunk volume (~2 s CPU per modality
    # at 240x240x155, recomputed on every Execute); the coarser levels keep the filter (cheap once shrunk).
    fine_level_gradient_filter: bool = False
    # True: each level's first step is learning_rate * shrink / shrink_factors[0] (2, 1, 0.5, 0.25 mm):
    # the previous level already placed the transform within about its voxel size, so restarting every
    # level at 2 mm only spent ~10 iterations halving the step back down.
    learning_rate_follows_shrink: bool = True


# content check for images on the same grid (see needs_registration)
MASK_DICE_THRESHOLD = 0.95
CENTROID_SHIFT_THRESHOLD_MM = 1.0
# voxels of the head mask drawn (fixed seed) for the alignment-quality histogram (alignment_quality)
QUALITY_SAMPLES = 200_000
# The registration quality gate: a modality whose alignment NMI with the reference (alignment_quality) is
# below this after resampling / registration is refused (or kept and flagged: --keep-poor-registration).
# Calibrated with scripts/registration_quality_calibration.py on ../shared/data/real (docs/conversion.md):
#   good (as converted): 18 BraTS cases x T1/T1ce/FLAIR min 1.0399 (max 1.1828); raw TCIA case registered
#     with --register always: T1 1.0452, T1ce 1.0438, FLAIR 1.0790;
#   bad: x/y-flipped direction header, resampled (--register never) max 1.0162 (54 figures), registered
#     (TCIA 3, Brats18_2013_11_1 3) max 1.0138;
#     another patient's modality on T2's grid (same BraTS atlas space) max 1.0339, registered max 1.0295;
#     the flipped FLAIR of a 120 x 120 x 48 crop of BraTS2021_00006 registered (--register auto) 1.0312.
# Threshold between min good and max bad: margin 0.003 to both. A threshold halfway between the flipped
# headers and the good figures (1.028) let the registered flipped crop through (tests/test_bad_inputs.py),
# so the narrow margin stays; a good case refused by it can be kept with --keep-poor-registration. Data
# resampled far from the calibration's 1 mm scores lower (the 3 mm proxy, data/proxy.py, keeps and flags).
QUALITY_THRESHOLD = 1.037


def head_mask(image: sitk.Image) -> sitk.Image:
    """Foreground (head or skull-stripped brain) mask: above 10% of the 99th percentile, holes filled."""
    array = sitk.GetArrayViewFromImage(image)
    threshold = 0.1 * float(np.percentile(array, 99))
    mask = sitk.Cast(sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 1.0) > threshold,
                     sitk.sitkUInt8)
    return sitk.BinaryFillhole(mask)


def alignment_check(t2: sitk.Image, moving: sitk.Image) -> dict:
    """Head-mask Dice and centroid shift (mm) between two images on the same grid."""
    fixed_mask = sitk.GetArrayFromImage(head_mask(t2)).astype(bool)
    moving_mask = sitk.GetArrayFromImage(head_mask(moving)).astype(bool)
    total = fixed_mask.sum() + moving_mask.sum()
    dice = 2.0 * np.logical_and(fixed_mask, moving_mask).sum() / total if total else 1.0

    def centroid(mask):
        index = np.argwhere(mask).mean(axis=0)[::-1] if mask.any() else np.zeros(3)
        return np.asarray(t2.TransformContinuousIndexToPhysicalPoint(index.tolist()))

    return {"mask_dice": float(dice),
            "centroid_shift_mm": float(np.linalg.norm(centroid(fixed_mask) - centroid(moving_mask)))}


def registration_decision(t2: sitk.Image, moving: sitk.Image) -> tuple[bool, str]:
    """Whether ``--register auto`` registers ``moving`` to ``t2``, and why.

    Registers when the geometry (size, spacing, origin, direction) differs beyond tolerance, and also
    when the grids match but the content does not: head masks overlap with Dice < 0.95 or their
    centroids are > 1 mm apart (a modality resampled onto T2's grid without being registered).
    """
    if not same_geometry(t2, moving):
        return True, "geometry differs from T2"
    check = alignment_check(t2, moving)
    if check["mask_dice"] < MASK_DICE_THRESHOLD or check["centroid_shift_mm"] > CENTROID_SHIFT_THRESHOLD_MM:
        return True, (f"same grid as T2 but head masks differ (Dice {check['mask_dice']:.3f}, "
                      f"centroid shift {check['centroid_shift_mm']:.2f} mm)")
    return False, (f"same grid as T2 and aligned (head-mask Dice {check['mask_dice']:.3f}, "
                   f"centroid shift {check['centroid_shift_mm']:.2f} mm)")


def needs_registration(t2: sitk.Image, moving: sitk.Image) -> bool:
    """The ``--register auto`` criterion (see ``registration_decision``)."""
    return registration_decision(t2, moving)[0]


def alignment_quality(reference: sitk.Image, aligned: sitk.Image, mask: np.ndarray | None = None, bins: int = 32,
                      max_samples: int = QUALITY_SAMPLES) -> dict:
    """How well ``aligned`` (a modality already on ``reference``'s grid) matches the reference anatomy.

    Normalised mutual information NMI = (H(R) + H(M)) / H(R, M) (1: independent, 2: one determines the
    other; Studholme et al. 1999) of the intensities inside the reference's head mask (``head_mask``),
    from a ``bins`` x ``bins`` joint histogram of at most ``max_samples`` voxels drawn with a fixed seed.
    Unlike Mattes MI it does not grow with the marginal entropies, so one threshold serves skull-stripped
    BraTS volumes and raw, unstripped scans. Also returns the NCC over the same voxels (for the report
    only: T1 against T2 can be anti-correlated when perfectly aligned). ``mask``: the reference's head
    mask as a boolean (z, y, x) array, when the caller has it already (one per case).
    """
    fixed = sitk.GetArrayViewFromImage(reference)
    moving = sitk.GetArrayViewFromImage(aligned)
    if mask is None:
        mask = sitk.GetArrayFromImage(head_mask(reference)).astype(bool)
    fixed_values = np.asarray(fixed[mask], np.float64)
    moving_values = np.asarray(moving[mask], np.float64)
    if fixed_values.size > max_samples:
        pick = np.random.default_rng(RANDOM_SEED).choice(fixed_values.size, max_samples, replace=False)
        fixed_values, moving_values = fixed_values[pick], moving_values[pick]
    if fixed_values.size == 0:
        return {"nmi": 1.0, "ncc": 0.0, "voxels": 0}
    joint, _, _ = np.histogram2d(fixed_values, moving_values, bins=bins)
    joint /= joint.sum()

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    joint_entropy = entropy(joint)
    marginals = entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))
    nmi = (entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))) / joint_entropy if joint_entropy > 0 else 1.0
    f = fixed_values - fixed_values.mean()
    m = moving_values - moving_values.mean()
    denominator = float(np.sqrt((f * f).sum() * (m * m).sum()))
    ncc = float((f * m).sum() / denominator) if denominator > 0 else 0.0
    return {"nmi": float(nmi), "mi": float(marginals - joint_entropy), "ncc": ncc, "voxels": int(mask.sum())}


def geometric_centre(image: sitk.Image) -> np.ndarray:
    """Physical (x, y, z) mm of the centre of the image grid."""
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))


def _initial_candidates(fixed: sitk.Image, moving: sitk.Image) -> dict:
    centre = geometric_centre(fixed)
    identity = sitk.VersorRigid3DTransform()
    identity.SetCenter(centre.tolist())
    candidates = {"identity": identity}
    for name, mode in (("geometry", sitk.CenteredTransformInitializerFilter.GEOMETRY),
                       ("moments", sitk.CenteredTransformInitializerFilter.MOMENTS)):
        candidates[name] = sitk.CenteredTransformInitializer(fixed, moving, sitk.VersorRigid3DTransform(), mode)
    return candidates


def _level_factors(image: sitk.Image, shrink: int) -> list[int]:
    """Per-axis shrink factors giving ~``shrink`` x the finest spacing on every axis (anisotropy aware:
    a 0.9 x 0.9 x 5.5 mm volume is shrunk in-plane only until the in-plane spacing reaches 5.5 mm)."""
    finest = min(image.GetSpacing())
    return [max(1, int(round(shrink * finest / s))) for s in image.GetSpacing()]


def _smooth(image: sitk.Image, sigma_mm: float) -> sitk.Image:
    return sitk.SmoothingRecursiveGaussian(image, sigma_mm) if sigma_mm > 0 else image


def _level_method(level_mask: sitk.Image, mask_voxels: int, settings: RegistrationSettings,
                  gradient_filter: bool = True, shrink: int | None = None) -> sitk.ImageRegistrationMethod:
    """One-level Mattes MI / regular-step gradient descent setup; the pyramid is built by ``register_rigid``."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(min(1.0, settings.samples_per_level / max(1, mask_voxels)), settings.seed)
    method.SetMetricFixedMask(level_mask)
    # Mattes MI uses only the moving image's gradient; the fixed one would be computed for nothing.
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(gradient_filter)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=_learning_rate(settings, shrink), minStep=settings.min_step,
        numberOfIterations=settings.iterations_per_level, relaxationFactor=settings.relaxation,
        gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    return method


def _learning_rate(settings: RegistrationSettings, shrink: int | None) -> float:
    if shrink is None or not settings.learning_rate_follows_shrink:
        return settings.learning_rate
    return settings.learning_rate * shrink / settings.shrink_factors[0]


@dataclass(frozen=True)
class FixedPyramid:
    """The fixed (T2) side of the registration, built once per case and shared by its moving modalities:
    float image, dilated head mask and per level (smoothed + shrunk image, mask on that grid, mask voxels).
    Building it costs ~1.5 s CPU at 240x240x155 (head mask, dilation, three full-volume smoothings)."""
    image: sitk.Image
    levels: tuple
    settings: RegistrationSettings


def prepare_fixed(fixed: sitk.Image, settings: RegistrationSettings = RegistrationSettings(),
                  fixed_head_mask: sitk.Image | None = None) -> FixedPyramid:
    """The per-case fixed pyramid (``FixedPyramid``) for ``register_rigid(..., prepared=...)``.
    ``fixed_head_mask``: ``head_mask(fixed)`` when the caller has it already (the quality gate needs it too)."""
    fixed_f = sitk.Cast(fixed, sitk.sitkFloat32)
    fixed_mask = sitk.BinaryDilate(fixed_head_mask if fixed_head_mask is not None else head_mask(fixed_f), [2] * 3)
    levels = []
    for shrink, sigma in zip(settings.shrink_factors, settings.smoothing_sigmas_mm):
        level_fixed = sitk.Shrink(_smooth(fixed_f, sigma), _level_factors(fixed_f, shrink))
        level_mask = sitk.Resample(fixed_mask, level_fixed, sitk.Transform(), sitk.sitkNearestNeighbor)
        levels.append((level_fixed, level_mask, int(sitk.GetArrayViewFromImage(level_mask).sum())))
    return FixedPyramid(fixed_f, tuple(levels), settings)


MIN_MOVING_LEVEL_VOXELS = 8


def _moving_levels(moving: sitk.Image, settings: RegistrationSettings):
    """Per level: the moving image smoothed like the fixed one and shrunk by the same factors on its own grid
    (as ITK's own pyramid does). Shrinking the moving image too, not only the fixed one, is what makes the
    coarse levels cheap: ITK recomputes the moving image's gradient image on every Execute, which on the
    unshrunk 240x240x155 volume cost ~2 s CPU per Execute (6 Executes per modality: ~45% of the time)."""
    for shrink, sigma in zip(settings.shrink_factors, settings.smoothing_sigmas_mm):
        # keep >= 8 voxels per axis: ITK's gradient filter needs 4, and a thin moving slab would lose most
        # of its extent to the shrink's border blocks (a 20-slice 2 mm series is shrunk 2x in z, not 6x)
        factors = [max(1, min(f, n // MIN_MOVING_LEVEL_VOXELS)) for f, n in zip(_level_factors(moving, shrink),
                                                                           moving.GetSize())]
        yield shrink, sitk.Shrink(_smooth(moving, sigma), factors)


def describe_transform(transform: sitk.Transform, fixed: sitk.Image) -> dict:
    """Rotation (total angle and Euler ZYX angles, degrees) and the translation (mm) of the T2 grid centre."""
    rigid = sitk.VersorRigid3DTransform()
    rigid.SetCenter(transform.GetCenter())
    rigid.SetMatrix(transform.GetMatrix())
    rigid.SetTranslation(transform.GetTranslation())
    matrix = np.asarray(rigid.GetMatrix()).reshape(3, 3)
    angle = np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1.0, 1.0)))
    euler = sitk.Euler3DTransform()
    euler.SetMatrix(rigid.GetMatrix())
    centre = geometric_centre(fixed)
    return {"rotation_deg": float(angle),
            "rotation_xyz_deg": [float(np.degrees(a)) for a in (euler.GetAngleX(), euler.GetAngleY(), euler.GetAngleZ())],
            "translation_mm": (np.asarray(rigid.TransformPoint(centre.tolist())) - centre).tolist(),
            "matrix": list(rigid.GetMatrix()), "center_mm": list(rigid.GetCenter()),
            "parameters": list(rigid.GetParameters())}


def register_rigid(fixed: sitk.Image, moving: sitk.Image,
                   settings: RegistrationSettings = RegistrationSettings(),
                   prepared: FixedPyramid | None = None) -> tuple[sitk.VersorRigid3DTransform, dict]:
    """Rigidly register ``moving`` to ``fixed`` (T2); return the transform (fixed -> moving points) and a report.

    ``prepared``: ``prepare_fixed(fixed, settings)`` when several modalities are registered to one T2
    (built here otherwise). Report: final Mattes MI metric (lower is better), start name and the
    coarse-level metric of each start, rotation_deg / rotation_xyz_deg, translation_mm (displacement of
    the T2 grid centre), seconds (wall) and cpu_seconds (this process).
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    if prepared is None:
        prepared = prepare_fixed(fixed, settings)
    elif prepared.settings != settings:
        raise ValueError("prepared fixed pyramid was built with other settings")
    fixed_f = prepared.image
    moving_f = sitk.Cast(moving, sitk.sitkFloat32)
    levels = zip(prepared.levels, _moving_levels(moving_f, settings))

    # Coarsest level from three starts, keep the best metric: identity (scanner space: right for series
    # of one session), GEOMETRY (grid centres: right for cropped/re-gridded volumes) and MOMENTS (centres
    # of mass: right for large offsets, biased when the fields of view cover different parts of the
    # head). The coarsest level is cheap (a few thousand voxels), so trying all three costs little.
    (level_fixed, level_mask, mask_voxels), (_, level_moving) = next(levels)
    coarse_metrics, coarse_results = {}, {}
    failures = {}
    for name, candidate in _initial_candidates(fixed_f, moving_f).items():
        method = _level_method(level_mask, mask_voxels, settings)
        method.SetInitialTransform(candidate, inPlace=False)
        try:
            coarse_results[name] = method.Execute(level_fixed, level_moving)
        except RuntimeError as error:  # e.g. no overlap from this start (origins far apart): try the others
            failures[name] = _itk_reason(error)
            continue
        coarse_metrics[name] = float(method.GetMetricValue())
    if not coarse_metrics:
        raise RegistrationError("; ".join(f"{name} start: {reason}" for name, reason in failures.items()))
    start_name = min(coarse_metrics, key=coarse_metrics.get)
    result = coarse_results[start_name]
    for (level_fixed, level_mask, mask_voxels), (shrink, level_moving) in levels:
        method = _level_method(level_mask, mask_voxels, settings,
                               gradient_filter=shrink > 1 or settings.fine_level_gradient_filter, shrink=shrink)
        method.SetInitialTransform(sitk.VersorRigid3DTransform(_as_rigid(result)), inPlace=False)
        result = method.Execute(level_fixed, level_moving)
    transform = _as_rigid(result)
    report = {"registered": True, "final_metric": float(method.GetMetricValue()),
              "initialisation": start_name, "coarse_metrics": coarse_metrics,
              "stop_condition": method.GetOptimizerStopConditionDescription(),
              **describe_transform(transform, fixed), "seconds": time.perf_counter() - start,
              "cpu_seconds": time.process_time() - cpu_start}
    return transform, report


class RegistrationError(RuntimeError):
    """No start of the rigid registration could be optimised (e.g. the images do not overlap at all)."""


def _itk_reason(error: RuntimeError) -> str:
    """The 'ITK ERROR: ...' sentence of a SimpleITK exception, without the C++ source location."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            return line.split("): ", 1)[-1].split(". ")[0].strip()
    return lines[-1] if lines else type(error).__name__


def _as_rigid(transform: sitk.Transform) -> sitk.VersorRigid3DTransform:
    if isinstance(transform, sitk.CompositeTransform):
        transform = transform.GetNthTransform(0)
    return sitk.VersorRigid3DTransform(transform)


def resample_to(reference: sitk.Image, moving: sitk.Image, transform: sitk.Transform | None = None,
                interpolator=sitk.sitkLinear) -> sitk.Image:
    """``moving`` resampled onto ``reference``'s grid through ``transform`` (identity: physical space).

    Voxels outside the moving field of view become 0; integer images are rounded back to their type.
    """
    transform = transform if transform is not None else sitk.Transform()
    resampled = sitk.Resample(moving, reference, transform, interpolator, 0.0, sitk.sitkFloat32)
    if moving.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        return sitk.Cast(resampled, moving.GetPixelID())
    return sitk.Cast(sitk.Round(resampled), moving.GetPixelID())


def transform_error(recovered: sitk.Transform, true: sitk.Transform, points_mm: np.ndarray) -> dict:
    """Residual of ``recovered`` against ``true`` (both fixed -> moving): angle of R_rec^-1 R_true in
    degrees, and the largest and mean point displacement (mm) over ``points_mm`` (N, 3)."""
    r_rec = np.asarray(recovered.GetMatrix()).reshape(3, 3)
    r_true = np.asarray(true.GetMatrix()).reshape(3, 3)
    cos_angle = (np.trace(r_rec.T @ r_true) - 1) / 2
    displacement = np.linalg.norm(np.array([np.subtract(recovered.TransformPoint(p.tolist()),
                                                        true.TransformPoint(p.tolist())) for p in points_mm]), axis=1)
    return {"rotation_error_deg": float(np.degrees(np.arccos(np.clip(cos_angle, -1, 1)))),
            "max_displacement_mm": float(displacement.max()), "mean_displacement_mm": float(displacement.mean())}


def compose(outer: sitk.Transform, inner: sitk.Transform) -> sitk.VersorRigid3DTransform:
    """The rigid transform ``p -> outer(inner(p))`` (both rigid)."""
    matrix = np.asarray(outer.GetMatrix()).reshape(3, 3) @ np.asarray(inner.GetMatrix()).reshape(3, 3)
    composed = sitk.VersorRigid3DTransform()
    composed.SetMatrix(matrix.ravel().tolist())
    composed.SetTranslation(outer.TransformPoint(inner.TransformPoint((0.0, 0.0, 0.0))))
    return composed


def random_rigid_transform(rng, centre, degrees=(6.0, 10.0), shift_mm=(5.0, 8.0)) -> sitk.VersorRigid3DTransform:
    """A known misalignment for accuracy checks: rotation of uniform(*degrees) about a random axis through
    `centre` and a shift of uniform(*shift_mm) mm in a random direction (draws: axis, direction, angle, shift)."""
    axis, direction = rng.normal(size=3), rng.normal(size=3)
    transform = sitk.VersorRigid3DTransform()
    transform.SetCenter(list(map(float, centre)))
    transform.SetRotation((axis / np.linalg.norm(axis)).tolist(), float(np.deg2rad(rng.uniform(*degrees))))
    transform.SetTranslation((direction / np.linalg.norm(direction) * rng.uniform(*shift_mm)).tolist())
    return transform
