"""An nnU-Net trainer built in-process the way `nnUNetv2_train` builds it (for the benchmark's runs and the
speed benchmark's untrained model folders)."""

from __future__ import annotations

from pathlib import Path

from nnunet_sam_adapter.paths import load_json


def build_trainer(trainer_class: type, plans: dict, configuration: str, fold: int, preprocessed: Path, device):
    """trainer_class(plans, configuration, fold, the dataset's preprocessed dataset.json, device)."""
    plans = {**plans, "continue_training": False}  # nnU-Net's trainer pops this key
    return trainer_class(plans=plans, configuration=configuration, fold=fold,
                         dataset_json=load_json(Path(preprocessed) / "dataset.json"), device=device)
