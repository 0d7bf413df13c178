"""Check a folder of nnU-Net prediction inputs before `nnUNetv2_predict` reads it (`nnUNetv2_sam_check_inputs`).

nnU-Net names a case's channels CASE_0000<file_ending> .. CASE_000N (one per `channel_names` entry of the
dataset.json). When one case lacks a channel, `nnUNetv2_predict` stops with a long traceback whose last
line does not name the case, and the crash can take nnU-Net's export worker with it, so an earlier case
reported done may never be written. This check names every problem first, one line each:

- a file whose name is not CASE_XXXX<file_ending>, or a channel number dataset.json does not have,
- a channel file missing,
- a channel that cannot be read completely (data/images.py: truncated or corrupt, not 3D, NaN/inf),
- a channel on another grid than the case's first channel (size, spacing, origin, direction).

A constant channel is accepted: `nnUNetv2_sam_register --allow-missing` writes a missing modality as zeros.
Inputs are only read.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from nnunet_sam_adapter.data.images import InputError, describe_differences, geometry_differences, read_image

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class InputFolderError(ValueError):
    """An input folder or dataset.json that cannot be checked at all (the message names it)."""


def load_dataset_json(dataset: int | str | None = None, dataset_json: str | Path | None = None) -> tuple[dict, Path]:
    """(dataset.json, its path): `dataset_json` itself, or DATASET's in $nnUNet_raw, $nnUNet_preprocessed or
    $nnUNet_results (the first that has one; a trained model's folder holds a copy)."""
    if dataset_json is not None:
        candidates = [Path(dataset_json)]
    else:
        from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

        try:
            name = maybe_convert_to_dataset_name(dataset)
        except RuntimeError as error:
            raise InputFolderError(f"dataset {dataset} not found in nnU-Net's folders ({error}): expected "
                                   f"$nnUNet_raw, $nnUNet_preprocessed or $nnUNet_results to hold it, or pass "
                                   f"-djfile") from None
        candidates = [Path(str(root)) / name / "dataset.json" for root in (nnUNet_raw, nnUNet_preprocessed,
                                                                          nnUNet_results) if root]
        if not any(path.is_file() for path in candidates):
            raise InputFolderError(f"dataset {name}: no dataset.json in {', '.join(map(str, candidates))}: "
                                   f"expected nnU-Net's dataset.json (or pass -djfile)")
    path = next((path for path in candidates if path.is_file()), candidates[-1])
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFolderError(f"{path}: cannot read dataset.json ({error}): expected nnU-Net's dataset.json") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("channel_names"), dict) or "file_ending" not in data:
        raise InputFolderError(f"{path}: no channel_names / file_ending: expected nnU-Net v2's dataset.json")
    return data, path


def check_input_folder(folder: str | Path, dataset_json: Mapping) -> tuple[list[str], list[InputError]]:
    """(the case IDs found, one InputError per problem) of an nnU-Net input folder, cases in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFolderError(f"{folder}: input folder does not exist: expected a folder of CASE_XXXX files")
    ending = dataset_json["file_ending"]
    names = {int(k): str(v) for k, v in dataset_json["channel_names"].items()}
    expected = ", ".join(f"_{k:04d} {v}" for k, v in sorted(names.items()))
    cases: dict[str, dict[int, Path]] = {}
    problems: list[InputError] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or not path.name.endswith(ending):
            continue
        match = _CHANNEL_FILE.match(path.name[: -len(ending)])
        if match is None:
            problems.append(InputError("?", path, f"not named CASE_XXXX{ending}: expected nnU-Net's input naming "
                                                  f"(one file per channel: {expected})"))
            continue
        cases.setdefault(match["case"], {})[int(match["channel"])] = path
    if not cases and not problems:
        raise InputFolderError(f"{folder}: no CASE_XXXX{ending} files: expected nnU-Net's input naming "
                               f"(one file per channel: {expected})")
    for case, channels in sorted(cases.items()):
        for channel in sorted(set(channels) - set(names)):
            problems.append(InputError(case, channels[channel], f"channel {channel} is not in dataset.json's "
                                                                f"channel_names: expected only {expected}"))
        for channel in sorted(set(names) - set(channels)):
            problems.append(InputError(case, folder / f"{case}_{channel:04d}{ending}",
                                       f"missing channel {channel} ({names[channel]}): file not found: expected one "
                                       f"file per channel ({expected})"))
        first = None
        for channel in sorted(set(names) & set(channels)):
            try:
                image = read_image(case, channels[channel], names[channel], label_map=True)
            except InputError as error:
                problems.append(error)
                continue
            if first is None:
                first = (channel, image)
                continue
            differences = geometry_differences(first[1], image)
            if differences:
                problems.append(InputError(case, channels[channel], f"{names[channel]} geometry differs from channel "
                                           f"{first[0]} ({names[first[0]]}): "
                                           f"{describe_differences([(p, b, a, t) for p, a, b, t in differences], names[first[0]])}: "
                                           f"expected every channel on the same grid"))
    return sorted(cases), problems
