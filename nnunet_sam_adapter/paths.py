"""nnU-Net's folders and identifiers, in one place: the dataset's preprocessed and results folders (from
nnU-Net's env vars), a run's results-folder name (nnU-Net's own `Trainer__Plans__configuration`), a
fold's validation cases (`splits_final.json`) and the folder to put in `nnUNet_extTrainer`.

Ground floor: any stage may import it; it imports no torch and no other stage of the package (nnU-Net's
modules are imported inside the functions).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

NNUNET_FOLDER_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")  # nnU-Net's folders (env vars)
SPLITS_FILE = "splits_final.json"


class NnUNetPathError(RuntimeError):
    """nnU-Net's folders are not set up as needed (env var unset, dataset or splits missing); the message
    says what to do."""


def load_json(path: str | Path) -> dict | list | None:
    """A JSON file (plans, dataset.json, splits, run records), None when it is missing or not valid JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def load_plans_json(path: str | Path) -> dict | None:
    """An nnU-Net plans file, None when it is missing, not valid JSON or not plans (no 'configurations' dict)."""
    plans = load_json(path)
    return plans if isinstance(plans, dict) and isinstance(plans.get("configurations"), dict) else None


def nnunet_dirs(dataset: int | str) -> tuple[str, Path, Path]:
    """(dataset name, preprocessed folder, results folder) from nnU-Net's env vars."""
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    for env in (nnUNet_preprocessed, nnUNet_results):
        if not env.is_set():
            raise NnUNetPathError(f"environment variable {env.env_var_name} is not set: training, prediction and "
                                  f"evaluation go through nnU-Net's folders (see nnU-Net's "
                                  f"documentation/setting_up_paths.md)")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as error:
        raise NnUNetPathError(f"dataset {dataset} not found: {error}") from error
    return name, Path(str(nnUNet_preprocessed)) / name, Path(str(nnUNet_results)) / name


def raw_images_dir(dataset_name: str) -> Path | None:
    """$nnUNet_raw/DATASET/imagesTr, None when nnUNet_raw is not set."""
    from nnunetv2.paths import nnUNet_raw

    return Path(str(nnUNet_raw)) / dataset_name / "imagesTr" if nnUNet_raw.is_set() else None


def results_folder_name(trainer_name: str, plans: str, configuration: str) -> str:
    """nnU-Net's results folder of a trainer class name, plans name and configuration
    (`Trainer__Plans__configuration`, nnU-Net's own `convert_trainer_plans_config_to_identifier`)."""
    from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier

    return convert_trainer_plans_config_to_identifier(trainer_name, plans, configuration)


def load_splits(preprocessed: Path) -> list | None:
    """nnU-Net's splits_final.json of a preprocessed dataset, None before the first training writes it."""
    return load_json(Path(preprocessed) / SPLITS_FILE)


def validation_cases(preprocessed: Path, fold: int) -> list[str]:
    """The fold's validation case IDs (sorted) from nnU-Net's splits_final.json."""
    splits_file = Path(preprocessed) / SPLITS_FILE
    splits = load_splits(preprocessed)
    if splits is None:
        raise NnUNetPathError(f"{splits_file} is missing: no method has been trained yet (nnU-Net writes it "
                              f"at the first training)")
    if not 0 <= fold < len(splits):
        raise NnUNetPathError(f"fold {fold} not in {splits_file} ({len(splits)} folds)")
    return sorted(splits[fold]["val"])


def trainer_dir() -> str:
    """The folder of our trainer classes, for nnU-Net's `nnUNet_extTrainer` env var (found without
    importing the trainers)."""
    spec = importlib.util.find_spec("nnunet_sam_adapter.trainers")
    return os.path.abspath(spec.submodule_search_locations[0])
