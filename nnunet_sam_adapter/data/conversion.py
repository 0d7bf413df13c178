"""BraTS case folders -> nnU-Net v2 raw dataset, and new cases -> registered nnU-Net-named inputs.

Both namings are read: 2018-2021 ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` and 2023+
``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``. T1, T1ce and FLAIR are registered rigidly to the
case's T2 (``registration.py``) and resampled onto its grid. nnU-Net channels: 0 T1, 1 T1ce, 2 T2,
3 FLAIR. Every case is staged outside nnU-Net's view and published atomically with a per-case JSON
report written last (``registration_reports/<case>.json``), which also makes re-runs idempotent.

Label mapping (seg -> labelsTr):
- ``whole_tumor``: every tumour label -> 1 (the paper's task).
- ``regions`` (as nnU-Net's own Dataset137_BraTS21): 1 edema, 2 necrotic / non-enhancing core,
  3 enhancing tumour; regions whole tumour (1, 2, 3), tumour core (2, 3), enhancing tumour (3),
  ``regions_class_order`` (1, 2, 3). BraTS 2018-2021 labels 2/1/4 and 2023 labels 2/1/3 map to 1/2/3.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_sam_adapter.data import registration
from nnunet_sam_adapter.data.atomic_io import atomic_write_json, clean_stale_temp, commit, new_staging_dir

CHANNELS = ("t1", "t1ce", "t2", "flair")  # nnU-Net channel i = CHANNELS[i]
CHANNEL_NAMES = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
REFERENCE = "t2"
FILE_ENDING = ".nii.gz"
BRATS_SUFFIXES = {
    "2021": {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", "seg": "_seg"},
    "2023": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"},
}
# BraTS seg label -> nnU-Net label for --labels regions (1 edema, 2 necrotic core, 3 enhancing)
REGION_LABELS = {"2021": {1: 2, 2: 1, 4: 3}, "2023": {1: 2, 2: 1, 3: 3}}
LABEL_MODES = ("whole_tumor", "regions")
REGISTER_MODES = ("auto", "always", "never")
REPORTS_DIR = "registration_reports"
SKIPPED_FILE = "skipped_cases.json"

_BRATS_FILE = re.compile(r"^(?P<case>.+?)(?P<suffix>_t1|_t1ce|_t2|_flair|_seg|-t1n|-t1c|-t2w|-t2f|-seg)\.nii(\.gz)?$")
_NNUNET_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")


class ConversionError(Exception):
    """Bad input: names the case, the file and what was expected."""

    def __init__(self, case: str, file, problem: str):
        self.case, self.file, self.problem = case, str(file), problem
        super().__init__(f"case {case}: {file}: {problem}")


@dataclass
class CaseFiles:
    """One case's input files. ``naming``: "2021", "2023" or "nnunet"."""
    case_id: str
    naming: str
    images: dict  # modality in CHANNELS -> Path
    seg: Path | None = None
    folders: set = field(default_factory=set)


# ---------------------------------------------------------------- discovery

def _suffix_role(suffix: str) -> tuple[str, str]:
    for naming, suffixes in BRATS_SUFFIXES.items():
        for role, candidate in suffixes.items():
            if candidate == suffix:
                return naming, role
    raise KeyError(suffix)


def _visible_files(folder: Path, recursive: bool):
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
        if not recursive:
            return


def find_cases(folder, allow_nnunet_naming: bool = False) -> tuple[list[CaseFiles], list[ConversionError]]:
    """Cases under ``folder`` (BraTS case folders, searched recursively; with ``allow_nnunet_naming`` also
    flat ``CASE_0000..0003`` files) and the discovery problems: missing modality, duplicate case ID,
    mixed namings, unexpected nnU-Net channel."""
    folder = Path(folder)
    found: dict[str, dict] = {}
    problems: dict[str, ConversionError] = {}

    def add(case_id, naming, role, path):
        entry = found.setdefault(case_id, {"namings": set(), "files": {}, "folders": set()})
        entry["namings"].add(naming)
        entry["folders"].add(path.parent)
        if role in entry["files"]:
            problems.setdefault(case_id, ConversionError(
                case_id, path, f"duplicate case ID: {role} also at {entry['files'][role]}"))
        entry["files"][role] = path

    for path in _visible_files(folder, recursive=True):
        match = _BRATS_FILE.match(path.name)
        if match:
            naming, role = _suffix_role(match["suffix"])
            add(match["case"], naming, role, path)
        elif allow_nnunet_naming and path.parent == folder and (match := _NNUNET_FILE.match(path.name)):
            channel = int(match["channel"])
            if channel >= len(CHANNELS):
                problems.setdefault(match["case"], ConversionError(
                    match["case"], path, f"unexpected channel {channel:04d}: expected 0000-0003 = T1, T1ce, T2, FLAIR"))
                continue
            add(match["case"], "nnunet", CHANNELS[channel], path)

    cases = []
    for case_id, entry in sorted(found.items()):
        if case_id in problems:
            continue
        namings, files, folders = entry["namings"], entry["files"], entry["folders"]
        if len(folders) > 1:
            problems[case_id] = ConversionError(case_id, sorted(folders)[1], "duplicate case ID: also found in "
                                                f"{sorted(folders)[0]}")
            continue
        if len(namings) > 1:
            problems[case_id] = ConversionError(case_id, next(iter(folders)),
                                                f"mixes file namings {sorted(namings)}: expected one")
            continue
        naming = next(iter(namings))
        missing = [m for m in CHANNELS if m not in files]
        if missing:
            problems[case_id] = ConversionError(case_id, _expected_path(case_id, naming, missing[0], next(iter(folders))),
                                                f"missing modality {missing[0]}: file not found")
            continue
        cases.append(CaseFiles(case_id, naming, {m: files[m] for m in CHANNELS}, files.get("seg"), folders))
    return cases, [problems[c] for c in sorted(problems)]


def _expected_path(case_id: str, naming: str, role: str, folder: Path) -> Path:
    if naming == "nnunet":
        return folder / f"{case_id}_{CHANNELS.index(role):04d}{FILE_ENDING}"
    return folder / f"{case_id}{BRATS_SUFFIXES[naming][role]}{FILE_ENDING}"


# ---------------------------------------------------------------- reading and validation

def read_image(case_id: str, path: Path, what: str) -> sitk.Image:
    """Read a 3D scalar image and check it: readable, 3D, not empty, finite voxels."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ConversionError(case_id, path, f"unreadable {what} (expected a NIfTI image): "
                                             f"{str(error).strip().splitlines()[-1]}") from None
    if image.GetDimension() != 3:
        raise ConversionError(case_id, path, f"{what} is {image.GetDimension()}D with size {image.GetSize()}: "
                                             "expected a 3D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ConversionError(case_id, path, f"{what} has {image.GetNumberOfComponentsPerPixel()} components "
                                             "per voxel: expected a scalar image")
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0:
        raise ConversionError(case_id, path, f"{what} is empty (size {image.GetSize()}): expected voxels")
    non_finite = _count_non_finite(path, array)
    if non_finite:
        raise ConversionError(case_id, path, f"{what} has {non_finite} NaN/inf voxels: expected finite values")
    if what != "seg" and array.min() == array.max():
        raise ConversionError(case_id, path, f"{what} is empty (every voxel is {array.flat[0]}): "
                                             "expected an MRI volume")
    return image


def _count_non_finite(path: Path, array: np.ndarray) -> int:
    """NaN/inf voxels. ITK's NIfTI reader silently turns them into 0, so float NIfTI files are also read
    with nibabel (integer files cannot hold NaN)."""
    count = int((~np.isfinite(array)).sum()) if np.issubdtype(array.dtype, np.floating) else 0
    if str(path).endswith((".nii", ".nii.gz")):
        import nibabel

        nifti = nibabel.load(str(path))
        if nifti.get_data_dtype().kind == "f":
            count = max(count, int((~np.isfinite(np.asanyarray(nifti.dataobj))).sum()))
    return count


def convert_labels(case: CaseFiles, seg: sitk.Image, t2: sitk.Image, labels: str) -> sitk.Image:
    """BraTS seg -> nnU-Net label map (uint8) on T2's grid; checks geometry and label values."""
    if not registration.same_geometry(seg, t2):
        raise ConversionError(case.case_id, case.seg,
                              f"seg geometry (size {seg.GetSize()}, spacing {_round(seg.GetSpacing())}, origin "
                              f"{_round(seg.GetOrigin())}) does not match T2 (size {t2.GetSize()}, spacing "
                              f"{_round(t2.GetSpacing())}, origin {_round(t2.GetOrigin())}): expected the T2 grid")
    array = sitk.GetArrayFromImage(seg)
    mapping = REGION_LABELS[case.naming]
    expected = {0, *mapping}
    values = np.unique(array)
    unexpected = [v.item() for v in values if v not in expected or float(v) != int(v)]
    if unexpected:
        raise ConversionError(case.case_id, case.seg, f"label values {unexpected} outside the expected set "
                                                      f"{sorted(expected)} (BraTS {case.naming} naming)")
    out = np.zeros(array.shape, np.uint8)
    for brats_label, region_label in mapping.items():
        out[array == brats_label] = 1 if labels == "whole_tumor" else region_label
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(t2)
    return image


def _round(values, digits=3):
    return tuple(round(float(v), digits) for v in values)


# ---------------------------------------------------------------- one case

def _fingerprint(case: CaseFiles) -> dict:
    paths = [*case.images.values(), *([case.seg] if case.seg else [])]
    return {str(Path(p).resolve()): [os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in paths}


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
        transform, report = registration.register_rigid(t2, image)
        return registration.resample_to(t2, image, transform), {**report, "reason": reason}
    report = {"registered": False, "reason": reason}
    if _exact_geometry(image, t2):
        return None, report
    if registration.same_geometry(image, t2):  # header round-off only: take T2's geometry
        image = sitk.Image(image)
        image.CopyInformation(t2)
        return image, {**report, "resampled": False, "geometry_copied_from_t2": True}
    return registration.resample_to(t2, image), {**report, "resampled": True, "transform": "identity"}


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
        shutil.copyfile(source, staged)  # unchanged input: keep its bytes, skip re-compression
    else:
        sitk.WriteImage(image if image is not None else sitk.ReadImage(str(source)), str(staged), useCompression=True)


def process_case(job: CaseJob) -> dict:
    """Read, validate, register and write one case atomically; returns its report (raises ConversionError)."""
    start = time.perf_counter()
    case = job.case
    staging = job.staging_root / case.case_id
    staging.mkdir(parents=True, exist_ok=True)
    try:
        images = {m: read_image(case.case_id, case.images[m], m) for m in CHANNELS}
        t2 = images[REFERENCE]
        modality_reports, moves = {}, {}
        label_image = None
        if job.label_output is not None:
            label_image = convert_labels(case, read_image(case.case_id, case.seg, "seg"), t2, job.labels)
        for modality in CHANNELS:
            if modality == REFERENCE:
                aligned, report = None, {"registered": False, "reason": "reference"}
            else:
                aligned, report = align_modality(case, modality, images[modality], t2, job.register)
            staged = staging / job.image_outputs[modality].name
            _stage(aligned, case.images[modality], staged)
            moves[staged] = job.image_outputs[modality]
            modality_reports[modality] = report
        if label_image is not None:
            staged = staging / f"label_{job.label_output.name}"
            sitk.WriteImage(label_image, str(staged), useCompression=True)
            moves[staged] = job.label_output
        report = {
            "case": case.case_id, "naming": case.naming, "reference": REFERENCE,
            "inputs": _fingerprint(case), "settings": job.settings,
            "outputs": {str(final): os.path.getsize(staged) for staged, final in moves.items()},
            "modalities": modality_reports, "seconds": time.perf_counter() - start,
        }
        commit(moves, remove=job.stale_outputs, marker=(job.report_path, report))
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _worker(job: CaseJob) -> dict:
    """Pool entry point: errors come back as data so the main process decides (stop or --skip-bad)."""
    try:
        return {"case": job.case.case_id, "report": process_case(job)}
    except ConversionError as error:
        return {"case": job.case.case_id, "error": (error.case, error.file, error.problem)}
    except Exception as error:  # e.g. an ITK failure during registration: report it against the case
        return {"case": job.case.case_id, "error": (job.case.case_id, job.case.images[REFERENCE].parent,
                                                     f"{type(error).__name__}: {error}")}


def _init_worker(threads: int) -> None:
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(threads)


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
            error = ConversionError(*result["error"])
            if not skip_bad:
                raise error
            errors.append(error)
        else:
            reports.append(result["report"])

    progress = tqdm(total=len(jobs), desc=desc, unit="case")
    try:
        if num_processes == 1:
            for job in jobs:
                collect(_worker(job))
                progress.update()
        else:
            threads = max(1, (os.cpu_count() or 1) // num_processes)
            with multiprocessing.get_context("spawn").Pool(num_processes, _init_worker, (threads,)) as pool:
                for result in pool.imap_unordered(_worker, jobs):
                    collect(result)
                    progress.update()
    finally:
        progress.close()
    return reports, errors


def _raise_or_collect(problems: list[ConversionError], skip_bad: bool) -> list[ConversionError]:
    if problems and not skip_bad:
        raise problems[0]
    return list(problems)


def _settings(register: str, labels: str | None) -> dict:
    return {"register": register, "labels": labels, "registration_version": registration.REGISTRATION_VERSION,
            "channels": list(CHANNELS)}


def _write_skipped(folder: Path, skipped: list[ConversionError]) -> Path | None:
    path = folder / SKIPPED_FILE
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    atomic_write_json(path, [{"case": e.case, "file": e.file, "reason": e.problem} for e in skipped])
    return path


@dataclass
class RunSummary:
    output_dir: Path
    converted: list
    up_to_date: list
    skipped: list  # ConversionError
    skipped_file: Path | None = None


# ---------------------------------------------------------------- BraTS -> nnU-Net raw dataset

def dataset_folder(dataset_id: int, dataset_name: str, raw_root=None) -> Path:
    """``$nnUNet_raw/DatasetXXX_NAME``; refuses an ID already used by a dataset with another name."""
    if raw_root is None:
        from nnunetv2.paths import nnUNet_raw
        raw_root = nnUNet_raw
    if not raw_root:
        raise ConversionError("-", "$nnUNet_raw", "environment variable not set: expected the nnU-Net raw folder")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", dataset_name):
        raise ConversionError("-", dataset_name, "dataset name: expected letters, digits, '_' or '-'")
    folder_name = f"Dataset{int(dataset_id):03d}_{dataset_name}"
    raw_root = Path(raw_root)
    if raw_root.is_dir():
        for other in raw_root.glob(f"Dataset{int(dataset_id):03d}_*"):
            if other.name != folder_name:
                raise ConversionError("-", other, f"dataset ID {int(dataset_id)} is already used by {other.name}: "
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


def convert_brats(brats_dir, dataset_id: int, dataset_name: str = "BraTS", labels: str = "whole_tumor",
                  register: str = "auto", num_processes: int = 4, skip_bad: bool = False,
                  raw_root=None) -> RunSummary:
    """Convert BraTS case folders into ``$nnUNet_raw/DatasetXXX_NAME`` (see module docstring).

    Cases with a seg go to imagesTr/labelsTr, the others to imagesTs. dataset.json is removed while
    cases are being written and rewritten last, so its presence means the dataset is complete.
    """
    if labels not in LABEL_MODES or register not in REGISTER_MODES:
        raise ValueError(f"labels in {LABEL_MODES}, register in {REGISTER_MODES}; got {labels!r}, {register!r}")
    brats_dir = Path(brats_dir).resolve()
    if not brats_dir.is_dir():
        raise ConversionError("-", brats_dir, "input folder not found: expected BraTS case folders")
    out = dataset_folder(dataset_id, dataset_name, raw_root).resolve()
    if out == brats_dir or out in brats_dir.parents or brats_dir in out.parents:
        raise ConversionError("-", out, f"output overlaps the input folder {brats_dir}: expected separate folders")
    cases, problems = find_cases(brats_dir)
    if not cases and not problems:
        raise ConversionError("-", brats_dir, "no BraTS cases found: expected <case>/<case>_t1.nii.gz ... or "
                                              "<case>/<case>-t1n.nii.gz ...")
    skipped = _raise_or_collect(problems, skip_bad)

    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temp(out)
    settings = _settings(register, labels)
    jobs = []
    staging_root = new_staging_dir(out)
    for case in cases:
        split = "imagesTr" if case.seg is not None else "imagesTs"
        image_outputs = {m: out / split / f"{case.case_id}_{i:04d}{FILE_ENDING}" for i, m in enumerate(CHANNELS)}
        label_output = out / "labelsTr" / f"{case.case_id}{FILE_ENDING}" if case.seg is not None else None
        other_split = "imagesTs" if split == "imagesTr" else "imagesTr"
        stale = [out / other_split / f"{case.case_id}_{i:04d}{FILE_ENDING}" for i in range(len(CHANNELS))]
        if label_output is None:
            stale.append(out / "labelsTr" / f"{case.case_id}{FILE_ENDING}")
        jobs.append(CaseJob(case, image_outputs, label_output, out / REPORTS_DIR / f"{case.case_id}.json",
                            stale, staging_root, register, labels, {**settings, "split": split}))
    pending = [job for job in jobs if not up_to_date(job)]
    try:
        if pending:
            (out / "dataset.json").unlink(missing_ok=True)
        reports, errors = run_jobs(pending, num_processes, skip_bad, desc=f"converting {out.name}")
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
        clean_stale_temp(out)
    skipped += errors
    good = {job.case.case_id for job in jobs} - {e.case for e in errors}
    _remove_orphans(out, good)
    num_training = sum(1 for job in jobs if job.case.case_id in good and job.label_output is not None)
    atomic_write_json(out / "dataset.json", _dataset_json(labels, num_training, register))
    return RunSummary(out, [r["case"] for r in reports], [j.case.case_id for j in jobs if j not in pending],
                      skipped, _write_skipped(out, skipped))


def _case_of_output(name: str) -> str:
    stem = name[: -len(FILE_ENDING)] if name.endswith(FILE_ENDING) else name.rsplit(".", 1)[0]
    match = re.fullmatch(r"(.+)_\d{4}", stem)
    return match[1] if match else stem


def _remove_orphans(out: Path, good: set) -> None:
    """Delete outputs of cases not converted in this run (removed from the input or now skipped), so the
    dataset never holds a case its dataset.json does not count."""
    for folder in ("imagesTr", "labelsTr", "imagesTs", REPORTS_DIR):
        for path in (out / folder).glob("*") if (out / folder).is_dir() else []:
            if path.is_file() and not path.name.startswith(".") and _case_of_output(path.name) not in good:
                path.unlink()


# ---------------------------------------------------------------- new cases -> registered nnU-Net inputs

def register_cases(in_dir, out_dir, register: str = "auto", num_processes: int = 4,
                   skip_bad: bool = False) -> RunSummary:
    """Register new cases (BraTS case folders or flat nnU-Net ``CASE_0000..0003`` files) to their T2 and
    write them flat in nnU-Net naming into ``out_dir``, ready for ``nnUNetv2_predict``. Segs are ignored;
    reports go to ``out_dir/registration_reports``."""
    if register not in REGISTER_MODES:
        raise ValueError(f"register must be one of {REGISTER_MODES}, got {register!r}")
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_dir.is_dir():
        raise ConversionError("-", in_dir, "input folder not found")
    if out_dir == in_dir or in_dir in out_dir.parents or out_dir in in_dir.parents:
        raise ConversionError("-", out_dir, f"output overlaps the input folder {in_dir}: expected separate folders")
    cases, problems = find_cases(in_dir, allow_nnunet_naming=True)
    if not cases and not problems:
        raise ConversionError("-", in_dir, "no cases found: expected BraTS case folders or CASE_0000..0003.nii.gz")
    skipped = _raise_or_collect(problems, skip_bad)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temp(out_dir)
    settings = _settings(register, None)
    staging_root = new_staging_dir(out_dir)
    jobs = []
    for case in cases:
        case.seg = None
        image_outputs = {m: out_dir / f"{case.case_id}_{i:04d}{FILE_ENDING}" for i, m in enumerate(CHANNELS)}
        jobs.append(CaseJob(case, image_outputs, None, out_dir / REPORTS_DIR / f"{case.case_id}.json", [],
                            staging_root, register, None, settings))
    pending = [job for job in jobs if not up_to_date(job)]
    try:
        reports, errors = run_jobs(pending, num_processes, skip_bad, desc="registering")
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
        clean_stale_temp(out_dir)
    skipped += errors
    return RunSummary(out_dir, [r["case"] for r in reports], [j.case.case_id for j in jobs if j not in pending],
                      skipped, _write_skipped(out_dir, skipped))
