"""Planning and preprocessing for the SAM 2d configuration, the SAM 3D configuration `3d_sam` (beyond the
paper, issue #18) and nnU-Net's stock plans for baselines.

nnU-Net only looks for `-pl` planners inside nnunetv2, so this drives its API directly:
fingerprint -> SAMPlanner -> DefaultPreprocessor, the same steps as `nnUNetv2_plan_and_preprocess`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from nnunet_sam_adapter.model.backbones import BACKBONE_NAMES, VIT_CONFIGS, build_backbone
from nnunet_sam_adapter.model.checkpoints import CHECKPOINT_ENV_VAR, SAMCheckpointError, check_checkpoint
from nnunet_sam_adapter.methods import CROSS_MODAL_3D_CLASS, CROSS_MODAL_CLASS, SAM_3D_CONFIGURATION
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
    slices: int | None = None        # 3d_sam: slices per stack D (None: `slices_and_batch_3d`'s rule)

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
        if self.slices is not None and self.slices < 1:
            raise ValueError(f"slices must be >= 1, got {self.slices}")
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


# The 3D configuration's stack depth D (`slices_and_batch_3d`): the stack covers about CONTEXT_MM_3D of
# through-plane extent, within SLICES_3D slices.
CONTEXT_MM_3D = 16.0
SLICES_3D = (8, 16)


def slices_and_batch_3d(spacing_through_plane: float, median_slices: float, batch_size_2d: int,
                        slices: int | None = None) -> tuple[int, int]:
    """(D, batch size) of the SAM 3D configuration (documented in docs/method.md, "3D context").

    Spacing: D = round(CONTEXT_MM_3D / spacing) clipped to SLICES_3D = [8, 16] slices (16 at 1 mm, 8 from
    2 mm on: about 16 mm of through-plane context, at least 8 slices for a 3x3x3 kernel to matter).
    Memory: the frozen encoder's cost and activation memory grow with the images it runs per step, B x D
    (the cross-slice adapters add a few depthwise convolutions), and the 2d configuration's batch is what
    the user (paper: 24 at 256 px on 24 GB) set to fit memory. So D <= that batch, B = max(1, batch // D),
    and B x D <= the 2d batch: a 3d step costs at most a 2d step. D is also at most the median number of
    slices (a stack deeper than the image would be padding). `slices` overrides the spacing rule.
    """
    if slices is None:
        slices = min(max(round(CONTEXT_MM_3D / float(spacing_through_plane)), SLICES_3D[0]), SLICES_3D[1])
    depth = max(1, min(int(slices), int(batch_size_2d), int(round(median_slices))))
    return depth, max(1, int(batch_size_2d) // depth)


def sam_3d_configuration(fullres_plan: dict, sam_2d_plan: dict, settings: SAMPlanSettings,
                         data_identifier: str) -> dict:
    """nnU-Net's 3d_fullres plan + the SAM 2d one -> the SAM 3D configuration (beyond the paper, issue #18):
    3d_fullres's spacing, resampling and normalisation (so nnU-Net's DefaultPreprocessor, 3D data loader,
    augmentation and sliding window treat it as a 3d configuration), patch [D, S, S] with S the SAM input,
    batch size and D from `slices_and_batch_3d`, the 3D network with the 2d configuration's kwargs, and the
    2d configuration's 'sam' block (with this D and batch)."""
    depth, batch = slices_and_batch_3d(fullres_plan["spacing"][0], fullres_plan["median_image_size_in_voxels"][0],
                                       settings.batch_size, settings.slices)
    plan = dict(fullres_plan)
    plan["data_identifier"] = data_identifier
    plan["patch_size"] = [depth, settings.input_size, settings.input_size]
    plan["batch_size"] = batch
    plan["normalization_schemes"] = list(sam_2d_plan["normalization_schemes"])
    arch_kwargs = {**sam_2d_plan["architecture"]["arch_kwargs"], "slice_adapter_depth": "all",
                   "slice_kernel": [3, 3, 3]}
    plan["architecture"] = {"network_class_name": CROSS_MODAL_3D_CLASS, "arch_kwargs": arch_kwargs,
                            "_kw_requires_import": []}
    plan["sam"] = {**sam_2d_plan["sam"], "slices": depth, "batch_size": batch}
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
                        verbose: bool = False, with_3d: bool = True) -> list[str]:
    """Fingerprint, SAM plans (+ preprocessing of their 2d configuration, and of the 3D one `3d_sam` when
    `with_3d` and the dataset is 3D), and optionally nnU-Net's stock plans preprocessed for
    `stock_configurations` (e.g. ('2d',) for the stock baseline). Returns the plans identifiers written."""
    check_planned_checkpoint(settings)  # before anything is fingerprinted or planned
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset, plan_experiment_dataset, preprocess_dataset)

    from nnunet_sam_adapter.planners.sam_planner import SAMPlanner

    extract_fingerprint_dataset(dataset_id, num_processes=num_processes, check_dataset_integrity=verify_dataset,
                                clean=True, verbose=verbose)
    planner = SAMPlanner(dataset_id, sam_settings=settings, with_3d=with_3d)
    plans = planner.plan_experiment()
    configurations = ("2d", SAM_3D_CONFIGURATION) if with_3d and SAM_3D_CONFIGURATION in plans["configurations"] \
        else ("2d",)
    preprocess_dataset(dataset_id, planner.plans_identifier, configurations, (num_processes,) * len(configurations),
                       verbose=verbose)
    written = [planner.plans_identifier]
    if stock_configurations:
        _, stock_name = plan_experiment_dataset(dataset_id)
        preprocess_dataset(dataset_id, stock_name, tuple(stock_configurations),
                           (num_processes,) * len(stock_configurations), verbose=verbose)
        written.append(stock_name)
    return written
