"""One case: read and validate its images, map its labels, bring T1, T1ce and FLAIR onto T2's grid
(registration.py), stage the outputs outside nnU-Net's view and publish them atomically, the per-case
report last; and the run of many cases with a progress bar (workers: worker_pool.py).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_sam_adapter.atomic_io import commit
from nnunet_sam_adapter.data import registration
from nnunet_sam_adapter.data.brats import CHANNELS, FILE_ENDING, REGION_LABELS, CaseFiles, reference_modality
from nnunet_sam_adapter.data.images import InputError, describe_differences, geometry_differences, read_image
from nnunet_sam_adapter.data.worker_pool import exit_if_orphaned, map_in_workers

# --register never: a modality resampled onto T2's grid must keep at least this fraction of its head
MIN_HEAD_KEPT = 0.5
# A missing modality (register --allow-missing) is written as this constant on the reference grid: nnU-Net's
# z-score normalisation turns any constant channel into 0, what modality dropout trains with.
MISSING_RAW_VALUE = 0.0


def convert_labels(case: CaseFiles, seg: sitk.Image, t2: sitk.Image, labels: str) -> sitk.Image:
    """BraTS seg -> nnU-Net label map (uint8) on T2's grid; checks geometry and label values."""
    differences = geometry_differences(seg, t2)
    if differences:
        raise InputError(case.case_id, case.seg, f"seg geometry differs from T2: "
                                                 f"{describe_differences(differences, 'T2')}: expected the T2 grid")
    array = sitk.GetArrayFromImage(seg)
    mapping = REGION_LABELS[case.naming]
    expected = {0, *mapping}
    values = np.unique(array)
    unexpected = [v.item() for v in values if v not in expected or float(v) != int(v)]
    if unexpected:
        raise InputError(case.case_id, case.seg, f"label values {unexpected} outside the expected set "
                                                 f"{sorted(expected)} (BraTS {case.naming} naming)")
    out = np.zeros(array.shape, np.uint8)
    for brats_label, region_label in mapping.items():
        out[array == brats_label] = 1 if labels == "whole_tumor" else region_label
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(t2)
    return image


def _fingerprint(case: CaseFiles) -> dict:
    paths = [*case.images.values(), *([case.seg] if case.seg else [])]
    return {str(Path(p).resolve()): [os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in paths}


def _head_volume_mm3(image: sitk.Image) -> float:
    return float(sitk.GetArrayViewFromImage(registration.head_mask(image)).sum()) * float(np.prod(image.GetSpacing()))


def _resample_unregistered(case: CaseFiles, modality: str, image: sitk.Image, t2: sitk.Image) -> sitk.Image:
    """``image`` resampled onto T2's grid in scanner space; refused when most of its head falls outside."""
    resampled = registration.resample_to(t2, image)
    before = _head_volume_mm3(image)
    kept = _head_volume_mm3(resampled) / before if before else 1.0
    if kept < MIN_HEAD_KEPT:
        raise InputError(case.case_id, case.images[modality],
                         f"{modality} does not overlap T2 with --register never: only {100 * kept:.0f}% of its head "
                         f"lies in T2's field of view (origin {tuple(round(v, 1) for v in image.GetOrigin())} vs T2 "
                         f"{tuple(round(v, 1) for v in t2.GetOrigin())}): expected both in one scanner space; "
                         "use --register auto")
    return resampled


def _register(case: CaseFiles, modality: str, image: sitk.Image, t2: sitk.Image, fixed: dict | None = None):
    """``fixed``: the case's cache for T2's registration pyramid, built by the first modality registered
    (registration.prepare_fixed; ~1.5 s CPU at 240x240x155 saved for each further modality); it may hold
    "head_mask", T2's head mask already computed for the quality gate."""
    try:
        if fixed is None:
            transform, report = registration.register_rigid(t2, image)
        else:
            if "pyramid" not in fixed:
                fixed["pyramid"] = registration.prepare_fixed(t2, fixed_head_mask=fixed.get("head_mask"))
            transform, report = registration.register_rigid(t2, image, prepared=fixed["pyramid"])
    except RuntimeError as error:
        raise InputError(case.case_id, case.images[modality],
                         f"{modality} could not be registered to T2 ({error}): expected {modality} and T2 to "
                         "show the same head (check the origin and direction in its header)") from None
    return registration.resample_to(t2, image, transform), report


def check_alignment(case: CaseFiles, modality: str, reference_name: str, reference: sitk.Image,
                    aligned: sitk.Image, report: dict, keep_poor: bool, mask: np.ndarray | None = None) -> dict:
    """The registration quality gate: NMI of ``aligned`` (on the reference grid) with the reference inside
    its head mask, against ``registration.QUALITY_THRESHOLD``. Below it the case is refused (InputError)
    unless ``keep_poor``: then it is kept and flagged ("poor": true). Returns the report's "alignment"."""
    quality = registration.alignment_quality(reference, aligned, mask)
    threshold = registration.QUALITY_THRESHOLD
    alignment = {"nmi": round(quality["nmi"], 4), "ncc": round(quality["ncc"], 4), "threshold": threshold,
                 "poor": quality["nmi"] < threshold}
    if alignment["poor"] and not keep_poor:
        how = ("registered" if report.get("registered") else
               "resampled in scanner space" if report.get("resampled") else "taken as it is")
        metric = f", registration metric {report['final_metric']:.3f}" if "final_metric" in report else ""
        raise InputError(case.case_id, case.images[modality],
                         f"{modality} does not match {reference_name.upper()} after it was {how} "
                         f"(--register {report.get('mode', '?')}): alignment NMI {quality['nmi']:.4f} < threshold "
                         f"{threshold:.3f}{metric}; likely a wrong orientation header (direction), another "
                         f"patient's image or a failed registration: expected {modality} and "
                         f"{reference_name.upper()} of the same head (--keep-poor-registration keeps it, flagged "
                         "in its report)")
    return alignment


def align_modality(case: CaseFiles, modality: str, image: sitk.Image, t2: sitk.Image, register: str,
                   fixed: dict | None = None):
    """Bring one modality onto T2's grid. Returns (image or None when the input file can be copied as is,
    report dict). ``fixed``: per-case cache of T2's registration pyramid (see ``_register``)."""
    if register == "always":
        do_register, reason = True, "--register always"
    elif register == "never":
        do_register, reason = False, "--register never"
    else:
        do_register, reason = registration.registration_decision(t2, image)
    if do_register:
        aligned, report = _register(case, modality, image, t2, fixed)
        return aligned, {**report, "reason": reason}
    report = {"registered": False, "reason": reason}
    if _exact_geometry(image, t2):
        return None, report
    if registration.same_geometry(image, t2):  # header round-off only: take T2's geometry
        image = sitk.Image(image)
        image.CopyInformation(t2)
        return image, {**report, "resampled": False, "geometry_copied_from_t2": True}
    return _resample_unregistered(case, modality, image, t2), {**report, "resampled": True, "transform": "identity"}


def _exact_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
            and a.GetDirection() == b.GetDirection())


@dataclass
class CaseJob:
    """Everything a worker needs to produce one output case."""
    case: CaseFiles
    image_outputs: dict  # modality -> final Path
    label_output: Path | None
    report_path: Path
    stale_outputs: list  # paths of this case elsewhere (e.g. it moved from imagesTs to imagesTr)
    staging_root: Path
    register: str
    labels: str | None
    settings: dict
    keep_poor_registration: bool = False  # below the alignment threshold: keep and flag instead of refusing


def _stage(image: sitk.Image | None, source: Path, staged: Path) -> None:
    if image is None and str(source).endswith(FILE_ENDING):
        shutil.copyfile(source, staged)  # unchanged input (already read completely): keep its bytes
    else:
        sitk.WriteImage(image if image is not None else sitk.ReadImage(str(source)), str(staged), useCompression=True)


def _stage_case(job: CaseJob, staging: Path) -> tuple[dict, dict]:
    """Read, validate, align and write one case into ``staging``: ({staged: final}, per-modality reports)."""
    case = job.case
    images = {m: read_image(case.case_id, case.images[m], m) for m in CHANNELS if m in case.images}
    reference = reference_modality(case)  # T2 unless it is missing (register --allow-missing)
    t2 = images[reference]
    label_image = None
    if job.label_output is not None:
        seg = read_image(case.case_id, case.seg, "seg", label_map=True)
        label_image = convert_labels(case, seg, t2, job.labels)
    moves, modality_reports = {}, {}
    reference_head = registration.head_mask(t2)
    reference_mask = sitk.GetArrayFromImage(reference_head).astype(bool)
    fixed = {"head_mask": reference_head}  # T2's registration pyramid: built once, for every modality
    for modality in CHANNELS:
        staged = staging / job.image_outputs[modality].name
        if modality not in images:
            missing = sitk.Image(t2.GetSize(), sitk.sitkFloat32) + MISSING_RAW_VALUE
            missing.CopyInformation(t2)
            sitk.WriteImage(missing, str(staged), useCompression=True)
            moves[staged] = job.image_outputs[modality]
            modality_reports[modality] = {"missing": True, "filled_with": MISSING_RAW_VALUE, "grid": reference}
            continue
        if modality == reference:
            aligned, report = None, {"registered": False, "reason": "reference"}
        else:
            aligned, report = align_modality(case, modality, images[modality], t2, job.register, fixed)
            report["alignment"] = check_alignment(
                case, modality, reference, t2, aligned if aligned is not None else images[modality],
                {**report, "mode": job.register}, job.keep_poor_registration, reference_mask)
        _stage(aligned, case.images[modality], staged)
        moves[staged] = job.image_outputs[modality]
        modality_reports[modality] = report
    if label_image is not None:
        staged = staging / f"label_{job.label_output.name}"
        sitk.WriteImage(label_image, str(staged), useCompression=True)
        moves[staged] = job.label_output
    return moves, modality_reports


def process_case(job: CaseJob) -> dict:
    """Read, validate, register and write one case atomically; returns its report (raises InputError)."""
    start = time.perf_counter()
    case = job.case
    staging = job.staging_root / case.case_id
    staging.mkdir(parents=True, exist_ok=True)
    try:
        moves, modality_reports = _stage_case(job, staging)
        report = {
            "case": case.case_id, "naming": case.naming, "reference": reference_modality(case),
            "missing_modalities": [m for m in CHANNELS if m not in case.images],
            "poor_alignment": [m for m, r in modality_reports.items() if r.get("alignment", {}).get("poor")],
            "inputs": _fingerprint(case), "settings": job.settings,
            "outputs": {str(final): os.path.getsize(staged) for staged, final in moves.items()},
            "modalities": modality_reports, "seconds": time.perf_counter() - start,
        }
        exit_if_orphaned(staging)
        commit(moves, remove=job.stale_outputs, marker=(job.report_path, report))
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _convert_case_reporting_errors(job: CaseJob) -> dict:
    """Pool entry point: errors come back as data so the main process decides (stop or --skip-bad)."""
    try:
        return {"case": job.case.case_id, "report": process_case(job)}
    except InputError as error:
        return {"case": job.case.case_id, "error": (error.case, error.file, error.problem)}
    except Exception as error:  # e.g. an ITK failure while writing: report it against the case
        return {"case": job.case.case_id, "error": (job.case.case_id, next(iter(job.case.images.values())).parent,
                                                     f"{type(error).__name__}: {error}")}


def up_to_date(job: CaseJob) -> bool:
    """True when the case's report matches its current inputs and settings and every output is in place."""
    try:
        report = json.loads(job.report_path.read_text())
        outputs = report["outputs"]
        expected = {str(p) for p in job.image_outputs.values()} | ({str(job.label_output)} if job.label_output else set())
        return (report["inputs"] == _fingerprint(job.case) and report["settings"] == job.settings
                and set(outputs) == expected
                and all(os.path.exists(p) and os.path.getsize(p) == size for p, size in outputs.items())
                and not any(os.path.exists(p) for p in job.stale_outputs))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def run_jobs(jobs: list[CaseJob], num_processes: int, skip_bad: bool, desc: str) -> tuple[list, list]:
    """Run jobs in parallel with a progress bar. Returns (reports, errors); without ``skip_bad`` the first
    error stops the run and is raised (cases already written stay complete)."""
    reports, errors = [], []
    if not jobs:
        return reports, errors
    num_processes = max(1, min(num_processes, len(jobs)))

    def collect(result):
        if "error" in result:
            error = InputError(*result["error"])
            if not skip_bad:
                raise error
            errors.append(error)
        else:
            reports.append(result["report"])

    progress = tqdm(total=len(jobs), desc=desc, unit="case")
    results = map_in_workers(_convert_case_reporting_errors, jobs, num_processes)
    try:
        for result in results:
            collect(result)
            progress.update()
    finally:
        results.close()  # on an error: the pool is terminated now, before the caller cleans the staging folder
        progress.close()
    return reports, errors
