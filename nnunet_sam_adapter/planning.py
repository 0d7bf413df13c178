"""Planning and preprocessing for the SAM 2d configuration (and nnU-Net's stock plans for baselines).

nnU-Net only looks for `-pl` planners inside nnunetv2, so this drives its API directly:
fingerprint -> SAMPlanner -> DefaultPreprocessor, the same steps as `nnUNetv2_plan_and_preprocess`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from nnunet_sam_adapter.model.backbones import BACKBONE_NAMES, VIT_CONFIGS, build_backbone
from nnunet_sam_adapter.model.checkpoints import CHECKPOINT_ENV_VAR, SAMCheckpointError, check_checkpoint
from nnunet_sam_adapter.methods import CROSS_MODAL_CLASS
from nnunet_sam_adapter.model.modalities import modality_channels, stream_channels


@dataclass
class SAMPlanSettings:
    """What the user chooses for the SAM configuration (defaults: the paper's setup)."""

    backbone: str = "vit_b"          # paper: SAM ViT-B
    checkpoint: str | None = None    # SAM weights for training; not needed to predict
    input_size: int = 256            # paper: 256x256
    batch_size: int = 24             # paper: batch size 24
    adapter_depth: int = 6           # paper: adapters in the first 6 blocks
    allow_random_encoder: bool = False

    def __post_init__(self):
        if self.backbone not in BACKBONE_NAMES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(BACKBONE_NAMES)}")
        if self.input_size % 16 or self.input_size <= 0:
            raise ValueError(f"input size must be a positive multiple of 16, got {self.input_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        depth = backbone_depth(self.backbone, self.input_size)
        if not 0 <= self.adapter_depth <= depth:
            raise ValueError(f"adapter depth must be in 0..{depth} for backbone {self.backbone}, "
                             f"got {self.adapter_depth}")
        if self.checkpoint:
            if not os.path.isfile(self.checkpoint):
                raise SAMCheckpointError(f"SAM checkpoint {self.checkpoint} does not exist")
            self.checkpoint = os.path.abspath(self.checkpoint)


def backbone_depth(backbone: str, input_size: int) -> int:
    """Number of transformer blocks of a backbone."""
    if backbone in VIT_CONFIGS:
        return VIT_CONFIGS[backbone].depth
    # LiteMedSAM: small enough to build on the CPU (its TinyViT cannot be built on the meta device).
    return len(build_backbone(backbone, input_size, num_outputs=2).block_widths)


def sam_2d_configuration(stock_plan: dict, settings: SAMPlanSettings, dataset_json: dict) -> dict:
    """nnU-Net's 2d plan -> the SAM one: patch = SAM input, batch size, network class and kwargs, and a
    'sam' block (checkpoint, modality channels) that the trainers read."""
    channel_names = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    plan = dict(stock_plan)
    plan["patch_size"] = [settings.input_size, settings.input_size]
    plan["batch_size"] = settings.batch_size
    plan["architecture"] = {
        "network_class_name": CROSS_MODAL_CLASS,
        "arch_kwargs": {"backbone": settings.backbone, "input_size": settings.input_size,
                        "adapter_depth": settings.adapter_depth,
                        "stream_channels": stream_channels(channel_names)},
        "_kw_requires_import": [],
    }
    plan["sam"] = {**asdict(settings), "modality_channels": modality_channels(channel_names)}
    return plan


def check_planned_checkpoint(settings: SAMPlanSettings) -> None:
    """Before anything is planned: the checkpoint the trainers will load (--checkpoint, else
    $nnUNet_sam_checkpoint) exists, is readable and holds the backbone's model; the bundled LiteMedSAM
    weights are trusted. Raises SAMCheckpointError (plans are then never written)."""
    checkpoint = settings.checkpoint or os.environ.get(CHECKPOINT_ENV_VAR)
    if checkpoint:
        check_checkpoint(checkpoint, settings.backbone)


def plan_and_preprocess(dataset_id: int, settings: SAMPlanSettings, num_processes: int = 2,
                        stock_configurations: tuple[str, ...] = (), verify_dataset: bool = True,
                        verbose: bool = False) -> list[str]:
    """Fingerprint, SAM plans (+ preprocessing of their 2d configuration), and optionally nnU-Net's
    stock plans preprocessed for `stock_configurations` (e.g. ('2d',) for the stock baseline).
    Returns the plans identifiers written."""
    check_planned_checkpoint(settings)  # before anything is fingerprinted or planned
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset, plan_experiment_dataset, preprocess_dataset)

    from nnunet_sam_adapter.planners.sam_planner import SAMPlanner

    extract_fingerprint_dataset(dataset_id, num_processes=num_processes, check_dataset_integrity=verify_dataset,
                                clean=True, verbose=verbose)
    planner = SAMPlanner(dataset_id, sam_settings=settings)
    planner.plan_experiment()
    preprocess_dataset(dataset_id, planner.plans_identifier, ("2d",), (num_processes,), verbose=verbose)
    written = [planner.plans_identifier]
    if stock_configurations:
        _, stock_name = plan_experiment_dataset(dataset_id)
        preprocess_dataset(dataset_id, stock_name, tuple(stock_configurations),
                           (num_processes,) * len(stock_configurations), verbose=verbose)
        written.append(stock_name)
    return written
