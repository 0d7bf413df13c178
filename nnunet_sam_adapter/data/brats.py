"""The BraTS layout in one place: modality names and file suffixes, nnU-Net channel order, case discovery.

Both BraTS namings are read: 2018-2021 ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` and 2023+
``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``; new cases may also come flat in nnU-Net naming
``CASE_0000..0003.nii.gz``. nnU-Net channels: 0 T1, 1 T1ce, 2 T2, 3 FLAIR.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_sam_adapter.data.images import InputError

CHANNELS = ("t1", "t1ce", "t2", "flair")  # nnU-Net channel i = CHANNELS[i]
CHANNEL_NAMES = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
REFERENCE = "t2"  # every modality is registered to the case's T2
# With missing modalities allowed (nnUNetv2_sam_register --allow-missing) and T2 itself missing, the
# reference is the first present of these: FLAIR is T2-weighted too, so registration to it is closest.
REFERENCE_FALLBACK = ("t2", "flair", "t1ce", "t1")
FILE_ENDING = ".nii.gz"
BRATS_SUFFIXES = {
    "2021": {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", "seg": "_seg"},
    "2023": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"},
}
# BraTS seg label -> nnU-Net label for --labels regions (1 edema, 2 necrotic core, 3 enhancing)
REGION_LABELS = {"2021": {1: 2, 2: 1, 4: 3}, "2023": {1: 2, 2: 1, 3: 3}}

_SUFFIX_ROLE = {suffix: (naming, role) for naming, suffixes in BRATS_SUFFIXES.items()
                for role, suffix in suffixes.items()}
_BRATS_FILE = re.compile(r"^(?P<case>.+?)(?P<suffix>" + "|".join(sorted(map(re.escape, _SUFFIX_ROLE), key=len,
                                                                         reverse=True)) + r")\.nii(\.gz)?$")
_NNUNET_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")


@dataclass
class CaseFiles:
    """One case's input files. ``naming``: "2021", "2023" or "nnunet"."""
    case_id: str
    naming: str
    images: dict  # modality in CHANNELS -> Path
    seg: Path | None = None
    folders: set = field(default_factory=set)


def nnunet_image_name(case_id: str, modality: str) -> str:
    """``CASE_000i.nii.gz`` of a modality."""
    return f"{case_id}_{CHANNELS.index(modality):04d}{FILE_ENDING}"


def case_of_output(name: str) -> str:
    """Case ID of an nnU-Net file name (``CASE_0000.nii.gz``, ``CASE.nii.gz``, ``CASE.json``)."""
    stem = name[: -len(FILE_ENDING)] if name.endswith(FILE_ENDING) else name.rsplit(".", 1)[0]
    match = re.fullmatch(r"(.+)_\d{4}", stem)
    return match[1] if match else stem


def expected_path(case_id: str, naming: str, role: str, folder: Path) -> Path:
    """Where a case's file of ``role`` (modality or "seg") would be in ``naming``."""
    if naming == "nnunet":
        return folder / nnunet_image_name(case_id, role)
    return folder / f"{case_id}{BRATS_SUFFIXES[naming][role]}{FILE_ENDING}"


def _is_image_name(name: str) -> bool:
    return name.endswith((".nii.gz", ".nii"))


def _holds_images(folder: Path) -> bool:
    return any(_is_image_name(name) for _, _, names in os.walk(folder) for name in names)


def _hidden_case_warning(path: Path) -> InputError:
    """A hidden file or folder (name starting with '.', e.g. a case folder named '..' or macOS '._' copies)
    that holds case images: skipped, as nnU-Net skips hidden files, but said in one line."""
    match = _BRATS_FILE.match(path.name) or _NNUNET_FILE.match(path.name)
    case_id = match["case"] if match else path.name
    kind = "folder" if path.is_dir() else "file"
    return InputError(case_id, path, f"skipped: this {kind} name starts with '.' (hidden: never read as a case, as "
                                     "nnU-Net skips hidden files): expected case folders and files whose names "
                                     "do not start with '.' (rename it if it holds a case)")


def _visible_files(folder: Path, recursive: bool, hidden: list | None = None):
    """Files under ``folder`` whose path has no hidden part; hidden files and folders that hold NIfTI images
    are appended to ``hidden`` (one entry per hidden folder, one per hidden case of a folder)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        if hidden is not None:
            hidden.extend(Path(dirpath) / d for d in sorted(dirnames)
                          if d.startswith(".") and _holds_images(Path(dirpath) / d))
            seen = set()
            for name in sorted(filenames):
                if name.startswith(".") and _is_image_name(name):
                    match = _BRATS_FILE.match(name) or _NNUNET_FILE.match(name)
                    key = match["case"] if match else name
                    if key not in seen:
                        seen.add(key)
                        hidden.append(Path(dirpath) / name)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
        if not recursive:
            return


def _collect_files(folder: Path, allow_nnunet_naming: bool, problems: dict, hidden: list | None = None) -> dict:
    """case ID -> {"namings", "files" (role -> path), "folders"}; naming problems go to ``problems``,
    hidden files and folders that hold images to ``hidden``."""
    found: dict[str, dict] = {}

    def add(case_id, naming, role, path):
        entry = found.setdefault(case_id, {"namings": set(), "files": {}, "folders": set()})
        entry["namings"].add(naming)
        entry["folders"].add(path.parent)
        if role in entry["files"]:
            problems.setdefault(case_id, InputError(
                case_id, path, f"duplicate case ID: {role} also at {entry['files'][role]}"))
        entry["files"][role] = path

    for path in _visible_files(folder, recursive=True, hidden=hidden):
        match = _BRATS_FILE.match(path.name)
        if match:
            add(match["case"], *_SUFFIX_ROLE[match["suffix"]], path)
        elif allow_nnunet_naming and path.parent == folder and (match := _NNUNET_FILE.match(path.name)):
            channel = int(match["channel"])
            if channel >= len(CHANNELS):
                problems.setdefault(match["case"], InputError(
                    match["case"], path, f"unexpected channel {channel:04d}: expected 0000-0003 = T1, T1ce, T2, FLAIR"))
                continue
            add(match["case"], "nnunet", CHANNELS[channel], path)
    return found


def reference_modality(case: CaseFiles) -> str:
    """The modality the case is registered to: T2, or with T2 missing the first present fallback."""
    return next(m for m in REFERENCE_FALLBACK if m in case.images)


def _case_problem(case_id: str, entry: dict, allow_missing: bool = False) -> InputError | None:
    namings, files, folders = entry["namings"], entry["files"], sorted(entry["folders"])
    if len(folders) > 1:
        return InputError(case_id, folders[1], f"duplicate case ID: also found in {folders[0]}")
    if len(namings) > 1:
        return InputError(case_id, folders[0], f"mixes file namings {sorted(namings)}: expected one")
    missing = [m for m in CHANNELS if m not in files]
    if len(missing) == len(CHANNELS):
        found = f"only {files['seg'].name}" if "seg" in files else "no image"
        return InputError(case_id, folders[0], f"no modality at all ({found}): expected "
                                               f"{'at least one of' if allow_missing else 'all of'} "
                                               f"{', '.join(CHANNELS)}")
    if missing and not allow_missing:
        return InputError(case_id, expected_path(case_id, next(iter(namings)), missing[0], folders[0]),
                          f"missing modality {missing[0]}: file not found")
    return None


def find_cases(folder, allow_nnunet_naming: bool = False, allow_missing: bool = False,
               warnings: list | None = None) -> tuple[list[CaseFiles], list[InputError]]:
    """Cases under ``folder`` (BraTS case folders, searched recursively; with ``allow_nnunet_naming`` also
    flat ``CASE_0000..0003`` files) and the discovery problems: missing modality (unless ``allow_missing``:
    then a case needs one modality, and ``CaseFiles.images`` holds the present ones), no modality at all
    (e.g. a seg alone), duplicate case ID, mixed namings, unexpected nnU-Net channel. Hidden files and
    folders (a case folder named '..') are skipped; those holding images are appended to ``warnings``
    (InputError, one line each) when given."""
    folder = Path(folder)
    problems: dict[str, InputError] = {}
    hidden: list[Path] = []
    found = _collect_files(folder, allow_nnunet_naming, problems, hidden)
    if warnings is not None:
        warnings.extend(_hidden_case_warning(path) for path in hidden)
    cases = []
    for case_id, entry in sorted(found.items()):
        if case_id not in problems and (problem := _case_problem(case_id, entry, allow_missing)):
            problems[case_id] = problem
        if case_id in problems:
            continue
        files = entry["files"]
        cases.append(CaseFiles(case_id, next(iter(entry["namings"])), {m: files[m] for m in CHANNELS if m in files},
                               files.get("seg"), entry["folders"]))
    return cases, [problems[c] for c in sorted(problems)]
