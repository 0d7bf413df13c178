"""BraTS case folders -> nnU-Net v2 raw dataset, and new cases -> registered nnU-Net-named inputs.

The BraTS layout (namings, suffixes, case discovery) is in ``brats.py``; images are read completely and
validated by ``images.py``. T1, T1ce and FLAIR are registered rigidly to the case's T2
(``registration.py``) and resampled onto its grid. Both commands share one skeleton (``_run_cases``):
discover cases, claim the output folder (``output_folder.py``), stage every case outside nnU-Net's view
and publish it atomically with a per-case JSON report written last (``registration_reports/<case>.json``,
``case_pipeline.py``), which also makes re-runs idempotent.

Data safety: an existing output folder that this tool did not create is refused (nothing is changed);
converting more cases into a dataset keeps the earlier ones (``remove_missing`` removes the cases that
are no longer in the input, never by default). Pool workers exit when the parent process dies
(``worker_pool.py``).

Label mapping (seg -> labelsTr):
- ``whole_tumor``: every tumour label -> 1 (the paper's task).
- ``regions`` (as nnU-Net's own Dataset137_BraTS21): 1 edema, 2 necrotic / non-enhancing core,
  3 enhancing tumour; regions whole tumour (1, 2, 3), tumour core (2, 3), enhancing tumour (3),
  ``regions_class_order`` (1, 2, 3). BraTS 2018-2021 labels 2/1/4 and 2023 labels 2/1/3 map to 1/2/3.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from nnunet_sam_adapter.atomic_io import atomic_write_json, clean_stale_temp, new_staging_dir
from nnunet_sam_adapter.data import registration
from nnunet_sam_adapter.data.brats import (CHANNEL_NAMES, CHANNELS, FILE_ENDING, CaseFiles, case_of_output,
                                           find_cases, nnunet_image_name)
from nnunet_sam_adapter.data.case_pipeline import CaseJob, run_jobs, up_to_date
from nnunet_sam_adapter.data.images import InputError
from nnunet_sam_adapter.data.output_folder import REPORTS_DIR, claim_output_folder, unclaim_if_empty

LABEL_MODES = ("whole_tumor", "regions")
REGISTER_MODES = ("auto", "always", "never")
SKIPPED_FILE = "skipped_cases.json"


# ---------------------------------------------------------------- the skeleton both commands share

@dataclass
class RunSummary:
    output_dir: Path
    converted: list
    up_to_date: list
    skipped: list  # InputError
    skipped_file: Path | None = None
    removed: list | None = None  # cases removed on request (remove_missing)
    warnings: list | None = None  # InputError: hidden files/folders holding images, skipped (find_cases)
    flagged: list | None = None  # (case, modality, alignment) kept below the alignment threshold on request


def _settings(register: str, labels: str | None, keep_poor_registration: bool = False) -> dict:
    return {"register": register, "labels": labels, "registration_version": registration.REGISTRATION_VERSION,
            "channels": list(CHANNELS),
            **({"keep_poor_registration": True} if keep_poor_registration else {})}


def _print_warning(warning: InputError) -> None:
    print(f"warning: {warning}", file=sys.stderr)


def _write_skipped(folder: Path, skipped: list[InputError]) -> Path | None:
    path = folder / SKIPPED_FILE
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    atomic_write_json(path, [{"case": e.case, "file": e.file, "reason": e.problem} for e in skipped])
    return path


def _run_cases(in_dir: Path, out: Path, make_job, *, command: str, desc: str, allow_nnunet_naming: bool,
               num_processes: int, skip_bad: bool, no_cases_hint: str, before_writing=None,
               allow_missing: bool = False, warn=None) -> tuple[RunSummary, list]:
    """Discover the cases in ``in_dir``, claim ``out``, make one CaseJob per case (``make_job(case,
    staging_root)``), let ``before_writing(jobs, pending)`` check/prepare, run the pending jobs, list the
    skipped cases. Returns (summary, jobs)."""
    if not in_dir.is_dir():
        raise InputError("-", in_dir, "input folder not found: expected a folder of cases")
    if out == in_dir or in_dir in out.parents or out in in_dir.parents:
        raise InputError("-", out, f"output overlaps the input folder {in_dir}: expected separate folders")
    warnings: list[InputError] = []
    cases, problems = find_cases(in_dir, allow_nnunet_naming=allow_nnunet_naming, allow_missing=allow_missing,
                                 warnings=warnings)
    for warning in warnings:  # at once: the run may stop later on another case
        (warn or _print_warning)(warning)
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
            unclaim_if_empty(out)
        raise
    shutil.rmtree(staging_root, ignore_errors=True)
    clean_stale_temp(out)
    skipped = sorted([*problems, *errors], key=lambda error: error.case)  # workers finish in any order
    flagged = sorted((r["case"], m, r["modalities"][m]["alignment"]) for r in reports for m in r.get("poor_alignment", []))
    summary = RunSummary(out, [r["case"] for r in reports], [j.case.case_id for j in jobs if j not in pending],
                         skipped, _write_skipped(out, skipped), warnings=warnings, flagged=flagged)
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
                   staging_root, register, labels, {**settings, "split": split},
                   keep_poor_registration=bool(settings.get("keep_poor_registration")))


def convert_brats(brats_dir, dataset_id: int, dataset_name: str = "BraTS", labels: str = "whole_tumor",
                  register: str = "auto", num_processes: int = 4, skip_bad: bool = False,
                  raw_root=None, remove_missing: bool = False, keep_poor_registration: bool = False,
                  warn=None) -> RunSummary:
    """Convert BraTS case folders into ``$nnUNet_raw/DatasetXXX_NAME`` (see module docstring).

    Cases with a seg go to imagesTr/labelsTr, the others to imagesTs. Cases converted earlier into the
    same dataset stay (``remove_missing``: remove those not in ``brats_dir``). dataset.json is removed
    while cases are being written and rewritten last, so its presence means the dataset is complete.
    """
    if labels not in LABEL_MODES or register not in REGISTER_MODES:
        raise ValueError(f"labels in {LABEL_MODES}, register in {REGISTER_MODES}; got {labels!r}, {register!r}")
    brats_dir = Path(brats_dir).resolve()
    out = dataset_folder(dataset_id, dataset_name, raw_root).resolve()
    settings = _settings(register, labels, keep_poor_registration)
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
        skip_bad=skip_bad, before_writing=before_writing, warn=warn,
        no_cases_hint="BraTS case folders <case>/<case>_t1.nii.gz ... or <case>/<case>-t1n.nii.gz ...")
    num_training = len([p for p in (out / "labelsTr").glob(f"*{FILE_ENDING}") if not p.name.startswith(".")])
    atomic_write_json(out / "dataset.json", _dataset_json(labels, num_training, register))
    summary.removed = removed
    return summary


# ---------------------------------------------------------------- new cases -> registered nnU-Net inputs

def register_cases(in_dir, out_dir, register: str = "auto", num_processes: int = 4,
                   skip_bad: bool = False, allow_missing: bool = False, keep_poor_registration: bool = False,
                   warn=None) -> RunSummary:
    """Register new cases (BraTS case folders or flat nnU-Net ``CASE_0000..0003`` files) to their T2 and
    write them flat in nnU-Net naming into ``out_dir``, ready for ``nnUNetv2_predict``. Segs are ignored;
    reports go to ``out_dir/registration_reports``. ``allow_missing``: a case needs only one modality; each
    missing one is written as MISSING_RAW_VALUE on the reference grid (T2's, or with T2 missing the first
    present of FLAIR, T1ce, T1) and listed under "missing_modalities" in the case's report."""
    if register not in REGISTER_MODES:
        raise ValueError(f"register must be one of {REGISTER_MODES}, got {register!r}")
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    settings = {**_settings(register, None, keep_poor_registration),
                **({"allow_missing": True} if allow_missing else {})}

    def make_job(case: CaseFiles, staging_root: Path) -> CaseJob:
        case.seg = None
        image_outputs = {m: out_dir / nnunet_image_name(case.case_id, m) for m in CHANNELS}
        return CaseJob(case, image_outputs, None, out_dir / REPORTS_DIR / f"{case.case_id}.json", [],
                       staging_root, register, None, settings, keep_poor_registration=keep_poor_registration)

    summary, _ = _run_cases(in_dir, out_dir, make_job, command="nnUNetv2_sam_register", desc="registering", allow_nnunet_naming=True,
                            num_processes=num_processes, skip_bad=skip_bad,
                            no_cases_hint="BraTS case folders or CASE_0000..0003.nii.gz", allow_missing=allow_missing,
                            warn=warn)
    return summary
