"""One converted + planned tiny dataset for the whole test session, shared by the end-to-end tests.

6 phantom cases of 12 x 64 x 48 voxels (BraTS-like at 3 mm: the stock 2d patch is [64, 48], a real-data
shape that is not a multiple of 32), converted with `nnUNetv2_sam_convert_brats --register never`, then
`nnUNetv2_sam_plan_and_preprocess` (tiny backbone + tiny SAM checkpoint, 64 px, batch 4, adapters after 2
blocks) with nnU-Net's stock 2d plans. Tests only read it; each test that trains gets a results folder of
its own (`PlannedDataset.env_with_results`), so no run is reused across tests unless a test says so.
tests/test_end_to_end.py keeps its own dataset: converting misaligned cases with registration is its point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from nnunet_sam_adapter.data.synthetic import write_brats_dataset
from console import nnunet_env_in, run
from sam_checkpoint_factory import write_tiny_sam_checkpoint

DATASET_ID = "904"
DATASET_NAME = "Dataset904_SynTiny"
PHANTOM = {"shape_zyx": (12, 64, 48), "misalign": False}


@dataclass(frozen=True)
class PlannedDataset:
    root: Path
    env: dict          # nnUNet_raw / _preprocessed / _results + nnUNet_extTrainer
    dataset_id: str
    name: str          # nnU-Net's folder name, DatasetXXX_Name
    checkpoint: Path   # the tiny SAM checkpoint the plans name

    def env_with_results(self, name: str) -> dict:
        """The dataset's env with a results folder of its own under the session root."""
        results = self.root / "results" / name
        results.mkdir(parents=True, exist_ok=False)
        return {**self.env, "nnUNet_results": str(results)}


@pytest.fixture(scope="session")
def planned_dataset(tmp_path_factory) -> PlannedDataset:
    root = tmp_path_factory.mktemp("planned_dataset")
    env = nnunet_env_in(root / "nnunet")
    write_brats_dataset(root / "brats", n_cases=6, seed=4, **PHANTOM)
    checkpoint = write_tiny_sam_checkpoint(root / "weights" / "tiny_sam.pth", randomize=False)
    run(["nnUNetv2_sam_convert_brats", "-i", root / "brats", "-d", DATASET_ID, "-n", "SynTiny", "--register",
         "never", "-np", "2"], env)
    run(["nnUNetv2_sam_plan_and_preprocess", "-d", DATASET_ID, "--backbone", "tiny", "--checkpoint", checkpoint,
         "--input-size", "64", "--batch-size", "4", "--adapter-depth", "2", "--stock", "2d", "-np", "2"], env)
    return PlannedDataset(root, env, DATASET_ID, DATASET_NAME, checkpoint)
