"""BraTS case folders -> nnU-Net v2 raw dataset, and new cases -> registered nnU-Net-named inputs.

The BraTS layout (namings, suffixes, case discovery) is in ``brats.py``; images are read completely and
validated by ``images.py``. T1, T1ce and FLAIR are registered rigidly to the case's T2
(``registration.py``) and resampled onto its grid. Both commands share one skeleton (``_run_cases``):
discover cases, claim the output folder, stage every case outside nnU-Net's view and publish it
atomically with a per-case JSON report written last (``registration_reports/<case>.json``), which also
makes re-runs idempotent.

Data safety: an existing output folder that this tool did not create is refused (nothing is changed);
converting more cases into a dataset keeps the earlier ones (``remove_missing`` removes the cases that
are no longer in the input, never by default). Pool workers exit when the parent process dies.

Label mapping (seg -> labelsTr):
- ``whole_tumor``: every tumour label -> 1 (the paper's task).
- ``regions`` (as nnU-Net's own Dataset137_BraTS21): 1 edema, 2 necrotic / non-enhancing core,
  3 enhancing tumour; regions whole tumour (1, 2, 3), tumour core (2, 3), enhancing tumour (3),
  ``regions_class_order`` (1, 2, 3). BraTS 2018-2021 labels 2/1/4 and 2023 labels 2/1/3 map to 1/2/3.
"""
from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_sam_adapter.data import registration
from nnunet_sam_adapter.atomic_io import atomic_write_json, clean_stale_temp, commit, new_staging_dir
from nnunet_sam_adapter.data.brats import (  # noqa: F401  (re-exported: the layout used to live here)
    BRATS_SUFFIXES, CHANNEL_NAMES, CHANNELS, FILE_ENDING, REFERENCE, REGION_LABELS, CaseFiles, case_of_output,
    find_cases, nnunet_image_name, reference_modality)
from nnunet_sam_adapter.data.images import InputError, describe_differences, geometry_differences, read_image

ConversionError = InputError  # the name callers of this module know
LABEL_MODES = ("whole_tumor", "regions")
REGISTER_MODES = ("auto", "always", "never")
REPORTS_DIR = "registration_reports"
SKIPPED_FILE = "skipped_cases.json"
OWNER_FILE = ".nnunet_sam_adapter.json"  # marks an output folder this tool created
# --register never: a modality resampled onto T2's grid must keep at least this fraction of its head
MIN_HEAD_KEPT = 0.5
# A missing modality (register --allow-missing) is written as this constant on the reference grid: nnU-Net's
# z-score normalisation turns any constant channel into 0, what modality dropout trains with.
MISSING_RAW_VALUE = 0.0


# ---------------------------------------------------------------- one case

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


def _register(case: CaseFiles, modality: str, image: sitk.Image, t2: sitk.Image):
    try:
        transform, report = registration.register_rigid(t2, image)
    except RuntimeError as error:
        raise InputError(case.case_id, case.images[modality],
                         f"{modality} could not be registered to T2 ({error}): expected {modality} and T2 to "
                         "show the same head (check the origin and direction in its header)") from None
    return registration.resample_to(t2, image, transform), report


def align_modality(case: CaseFiles, modality: str, image: sitk.Image, t2: sitk.Image, register: str):
    """Bring one modality onto T2's grid. Returns (image or None when the input file can be copied as is,
    report dict)."""
    if register == "always":
        do_register, reason = True, "--register always"
    elif register == "never":
        do_register, reason = False, "--register never"
    else:
        do_register, reason = registration.registration_decision(t2, image)
    if do_register:
        aligned, report = _register(case, modality, image, t2)
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
            aligned, report = align_modality(case, modality, images[modality], t2, job.register)
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
            "inputs": _fingerprint(case), "settings": job.settings,
            "outputs": {str(final): os.path.getsize(staged) for staged, final in moves.items()},
            "modalities": modality_reports, "seconds": time.perf_counter() - start,
        }
        _exit_if_orphaned(staging)
        commit(moves, remove=job.stale_outputs, marker=(job.report_path, report))
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- worker processes

_PARENT_PID: int | None = None  # set in pool workers: the converting process


def _exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: the kernel sends SIGTERM to this worker when its parent dies (Linux
    prctl PR_SET_PDEATHSIG; SIGTERM rather than SIGKILL so a commit in progress finishes, see
    atomic_io.signals_deferred)."""
    global _PARENT_PID
    _PARENT_PID = parent_pid
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the check before publishing remains
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _exit_if_orphaned(staging: Path) -> None:
    """A worker whose parent is gone publishes nothing."""
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        shutil.rmtree(staging, ignore_errors=True)
        os._exit(1)


def _init_pool_process(threads: int, parent_pid: int) -> None:
    _exit_with_parent(parent_pid)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(threads)


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
    try:
        if num_processes == 1:
            for job in jobs:
                collect(_convert_case_reporting_errors(job))
                progress.update()
        else:
            threads = max(1, (os.cpu_count() or 1) // num_processes)
            context = multiprocessing.get_context("spawn")
            with context.Pool(num_processes, _init_pool_process, (threads, os.getpid())) as pool:
                for result in pool.imap_unordered(_convert_case_reporting_errors, jobs):
                    collect(result)
                    progress.update()
    finally:
        progress.close()
    return reports, errors


# ---------------------------------------------------------------- the skeleton both commands share

@dataclass
class RunSummary:
    output_dir: Path
    converted: list
    up_to_date: list
    skipped: list  # InputError
    skipped_file: Path | None = None
    removed: list | None = None  # cases removed on request (remove_missing)


def _settings(register: str, labels: str | None) -> dict:
    return {"register": register, "labels": labels, "registration_version": registration.REGISTRATION_VERSION,
            "channels": list(CHANNELS)}


def _write_skipped(folder: Path, skipped: list[InputError]) -> Path | None:
    path = folder / SKIPPED_FILE
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    atomic_write_json(path, [{"case": e.case, "file": e.file, "reason": e.problem} for e in skipped])
    return path


def _created_by_this_tool(out: Path) -> bool:
    if (out / OWNER_FILE).is_file() or (out / REPORTS_DIR).is_dir():  # reports: runs before the owner file
        return True
    try:  # datasets converted before the owner file existed
        return str(json.loads((out / "dataset.json").read_text()).get("converted_by", "")).startswith(
            "nnunet_sam_adapter")
    except (OSError, ValueError, AttributeError):
        return False


def _has_foreign_entries(out: Path) -> bool:
    """Anything visible (our staging folders and temp files are hidden)."""
    return any(not p.name.startswith(".") for p in out.iterdir())


def claim_output_folder(out: Path, command: str) -> bool:
    """Refuse an existing, non-empty folder this tool did not create (nothing is changed in it); create
    and mark a new one. Returns whether the folder was created now."""
    if out.exists() and not out.is_dir():
        raise InputError("-", out, "output path is a file: expected a folder (or a path that does not exist)")
    created = not out.exists()
    if out.is_dir() and not _created_by_this_tool(out) and _has_foreign_entries(out):
        raise InputError("-", out, f"output folder exists and was not created by {command}; nothing was changed: "
                                   "expected a new or empty folder (choose another output, or move this one away)")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / OWNER_FILE).is_file():
        atomic_write_json(out / OWNER_FILE, {"created_by": command})
    return created


def _unclaim_if_empty(out: Path) -> None:
    """After a failed first run: remove the folder again when it holds nothing but our marks (never rmtree)."""
    (out / OWNER_FILE).unlink(missing_ok=True)
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(out.iterdir()):
        out.rmdir()
    else:  # something was published after all: keep the folder ours
        atomic_write_json(out / OWNER_FILE, {"created_by": "nnunet_sam_adapter"})


def _run_cases(in_dir: Path, out: Path, make_job, *, command: str, desc: str, allow_nnunet_naming: bool,
               num_processes: int, skip_bad: bool, no_cases_hint: str, before_writing=None,
               allow_missing: bool = False) -> tuple[RunSummary, list]:
    """Discover the cases in ``in_dir``, claim ``out``, make one CaseJob per case (``make_job(case,
    staging_root)``), let ``before_writing(jobs, pending)`` check/prepare, run the pending jobs, list the
    skipped cases. Returns (summary, jobs)."""
    if not in_dir.is_dir():
        raise InputError("-", in_dir, "input folder not found: expected a folder of cases")
    if out == in_dir or in_dir in out.parents or out in in_dir.parents:
        raise InputError("-", out, f"output overlaps the input folder {in_dir}: expected separate folders")
    cases, problems = find_cases(in_dir, allow_nnunet_naming=allow_nnunet_naming, allow_missing=allow_missing)
    if not cases and not problems:
        raise InputError("-", in_dir, f"no cases found: expected {no_cases_hint}")
    if problems and not skip_bad:
        raise problems[0]
    created = claim_output_folder(out, command)
    clean_stale_temp(out)
    staging_root = new_staging_dir(out)
    try:
        jobs = [make_job(case, staging_root) for case in cases]
        pending = [job for job in jobs if not up_to_date(job)]
        if before_writing is not None:
            before_writing(jobs, pending)
        reports, errors = run_jobs(pending, num_processes, skip_bad, desc=desc)
    except BaseException:
        shutil.rmtree(staging_root, ignore_errors=True)
        clean_stale_temp(out)
        if created:
            _unclaim_if_empty(out)
        raise
    shutil.rmtree(staging_root, ignore_errors=True)
    clean_stale_temp(out)
    skipped = sorted([*problems, *errors], key=lambda error: error.case)  # workers finish in any order
    summary = RunSummary(out, [r["case"] for r in reports], [j.case.case_id for j in jobs if j not in pending],
                         skipped, _write_skipped(out, skipped))
    return summary, jobs


# ---------------------------------------------------------------- BraTS -> nnU-Net raw dataset

def dataset_folder(dataset_id: int, dataset_name: str, raw_root=None) -> Path:
    """``$nnUNet_raw/DatasetXXX_NAME``; refuses an ID already used by a dataset with another name."""
    if raw_root is None:
        from nnunetv2.paths import nnUNet_raw
        raw_root = nnUNet_raw
    if not raw_root:
        raise InputError("-", "$nnUNet_raw", "environment variable not set: expected the nnU-Net raw folder")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", dataset_name):
        raise InputError("-", dataset_name, "dataset name: expected letters, digits, '_' or '-'")
    folder_name = f"Dataset{int(dataset_id):03d}_{dataset_name}"
    raw_root = Path(raw_root)
    if raw_root.is_dir():
        for other in raw_root.glob(f"Dataset{int(dataset_id):03d}_*"):
            if other.name != folder_name:
                raise InputError("-", other, f"dataset ID {int(dataset_id)} is already used by {other.name}: "
                                             f"expected a free ID or -n {other.name.split('_', 1)[1]}")
    return raw_root / folder_name


def _dataset_json(labels: str, num_training: int, register: str) -> dict:
    if labels == "regions":
        label_dict = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3]}
    else:
        label_dict = {"background": 0, "tumor": 1}
    extra = {"regions_class_order": [1, 2, 3]} if labels == "regions" else {}
    return {
        "channel_names": CHANNEL_NAMES, "labels": label_dict, "numTraining": num_training, "file_ending": FILE_ENDING,
        **extra,
        "name": "BraTS converted by nnUNetv2_sam_convert_brats",
        "description": (f"T1, T1ce and FLAIR rigidly registered to T2 (--register {register}) and resampled onto "
                        f"its grid. Labels: {labels}" + (" (1 edema, 2 necrotic core, 3 enhancing tumour)"
                                                         if labels == "regions" else "")),
        "converted_by": "nnunet_sam_adapter.data.conversion",
    }


def _earlier_reports(out: Path) -> dict:
    """case -> report of every case this tool published in ``out``."""
    reports = {}
    for path in sorted((out / REPORTS_DIR).glob("*.json")) if (out / REPORTS_DIR).is_dir() else []:
        try:
            reports[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return reports


def _check_kept_cases(out: Path, case_ids: set, labels: str, remove_missing: bool) -> None:
    """Earlier cases that stay in the dataset must have been converted with the same --labels."""
    if remove_missing:
        return
    for case, report in _earlier_reports(out).items():
        earlier = report.get("settings", {}).get("labels")
        if case not in case_ids and earlier not in (None, labels):
            raise InputError(case, out / REPORTS_DIR / f"{case}.json",
                             f"kept from an earlier conversion with --labels {earlier}, now --labels {labels}: "
                             f"expected the same --labels, a new dataset, or --remove-missing")


def _remove_cases_not_in(out: Path, case_ids: set) -> list[str]:
    """Remove the published cases (those with a report) that are not in ``case_ids``; only on request."""
    removed = sorted(set(_earlier_reports(out)) - case_ids)
    for folder in ("imagesTr", "labelsTr", "imagesTs", REPORTS_DIR):
        for path in sorted((out / folder).glob("*")) if (out / folder).is_dir() else []:
            if path.is_file() and case_of_output(path.name) in removed:
                path.unlink()
    return removed


def _brats_job(out: Path, case: CaseFiles, staging_root: Path, register: str, labels: str, settings: dict) -> CaseJob:
    split = "imagesTr" if case.seg is not None else "imagesTs"
    other_split = "imagesTs" if split == "imagesTr" else "imagesTr"
    image_outputs = {m: out / split / nnunet_image_name(case.case_id, m) for m in CHANNELS}
    label_output = out / "labelsTr" / f"{case.case_id}{FILE_ENDING}" if case.seg is not None else None
    stale = [out / other_split / nnunet_image_name(case.case_id, m) for m in CHANNELS]
    if label_output is None:
        stale.append(out / "labelsTr" / f"{case.case_id}{FILE_ENDING}")
    return CaseJob(case, image_outputs, label_output, out / REPORTS_DIR / f"{case.case_id}.json", stale,
                   staging_root, register, labels, {**settings, "split": split})


def convert_brats(brats_dir, dataset_id: int, dataset_name: str = "BraTS", labels: str = "whole_tumor",
                  register: str = "auto", num_processes: int = 4, skip_bad: bool = False,
                  raw_root=None, remove_missing: bool = False) -> RunSummary:
    """Convert BraTS case folders into ``$nnUNet_raw/DatasetXXX_NAME`` (see module docstring).

    Cases with a seg go to imagesTr/labelsTr, the others to imagesTs. Cases converted earlier into the
    same dataset stay (``remove_missing``: remove those not in ``brats_dir``). dataset.json is removed
    while cases are being written and rewritten last, so its presence means the dataset is complete.
    """
    if labels not in LABEL_MODES or register not in REGISTER_MODES:
        raise ValueError(f"labels in {LABEL_MODES}, register in {REGISTER_MODES}; got {labels!r}, {register!r}")
    brats_dir = Path(brats_dir).resolve()
    out = dataset_folder(dataset_id, dataset_name, raw_root).resolve()
    settings = _settings(register, labels)
    removed = []

    def before_writing(jobs, pending):
        case_ids = {job.case.case_id for job in jobs}
        _check_kept_cases(out, case_ids, labels, remove_missing)
        if pending or remove_missing:
            (out / "dataset.json").unlink(missing_ok=True)
        if remove_missing:
            removed.extend(_remove_cases_not_in(out, case_ids))

    summary, _ = _run_cases(
        brats_dir, out, lambda case, staging: _brats_job(out, case, staging, register, labels, settings),
        command="nnUNetv2_sam_convert_brats", desc=f"converting {out.name}", allow_nnunet_naming=False, num_processes=num_processes,
        skip_bad=skip_bad, before_writing=before_writing,
        no_cases_hint="BraTS case folders <case>/<case>_t1.nii.gz ... or <case>/<case>-t1n.nii.gz ...")
    num_training = len([p for p in (out / "labelsTr").glob(f"*{FILE_ENDING}") if not p.name.startswith(".")])
    atomic_write_json(out / "dataset.json", _dataset_json(labels, num_training, register))
    summary.removed = removed
    return summary


# ---------------------------------------------------------------- new cases -> registered nnU-Net inputs

def register_cases(in_dir, out_dir, register: str = "auto", num_processes: int = 4,
                   skip_bad: bool = False, allow_missing: bool = False) -> RunSummary:
    """Register new cases (BraTS case folders or flat nnU-Net ``CASE_0000..0003`` files) to their T2 and
    write them flat in nnU-Net naming into ``out_dir``, ready for ``nnUNetv2_predict``. Segs are ignored;
    reports go to ``out_dir/registration_reports``. ``allow_missing``: a case needs only one modality; each
    missing one is written as MISSING_RAW_VALUE on the reference grid (T2's, or with T2 missing the first
    present of FLAIR, T1ce, T1) and listed under "missing_modalities" in the case's report."""
    if register not in REGISTER_MODES:
        raise ValueError(f"register must be one of {REGISTER_MODES}, got {register!r}")
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    settings = {**_settings(register, None), **({"allow_missing": True} if allow_missing else {})}

    def make_job(case: CaseFiles, staging_root: Path) -> CaseJob:
        case.seg = None
        image_outputs = {m: out_dir / nnunet_image_name(case.case_id, m) for m in CHANNELS}
        return CaseJob(case, image_outputs, None, out_dir / REPORTS_DIR / f"{case.case_id}.json", [],
                       staging_root, register, None, settings)

    summary, _ = _run_cases(in_dir, out_dir, make_job, command="nnUNetv2_sam_register", desc="registering", allow_nnunet_naming=True,
                            num_processes=num_processes, skip_bad=skip_bad,
                            no_cases_hint="BraTS case folders or CASE_0000..0003.nii.gz", allow_missing=allow_missing)
    return summary
