"""nnU-Net experiment planner for the SAM configurations (plans identifier `nnUNetSAMPlans`): 2d (the paper)
and 3d_sam (beyond the paper, issue #18)."""

from __future__ import annotations

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from nnunet_sam_adapter.methods import SAM_3D_CONFIGURATION, SAM_PLANS_NAME
from nnunet_sam_adapter.planning import SAMPlanSettings, sam_2d_configuration, sam_3d_configuration


class SAMPlanner(ExperimentPlanner):
    """nnU-Net's planner with its 2d configuration turned into the SAM network's: nnU-Net still decides
    spacing, resampling and masking; the patch becomes the SAM input, normalisation is z-score and the
    architecture is the cross-modality network. Kept: the 2d configuration (the paper's, SAM is 2D) and, for
    3D datasets with `with_3d`, `3d_sam`: nnU-Net's 3d_fullres turned into stacks of D SAM slices
    (`planning.sam_3d_configuration`); nnU-Net's own 3d configurations are dropped."""

    def __init__(self, dataset_name_or_id, gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = SAM_PLANS_NAME,
                 overwrite_target_spacing=None, suppress_transpose: bool = False,
                 sam_settings: SAMPlanSettings | None = None, with_3d: bool = True):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self.sam_settings = sam_settings or SAMPlanSettings()
        self.with_3d = with_3d

    def determine_normalization_scheme_and_whether_mask_is_used_for_norm(self):
        schemes, use_mask = super().determine_normalization_scheme_and_whether_mask_is_used_for_norm()
        return ["ZScoreNormalization"] * len(schemes), use_mask

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset,
                                    _cache):
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                   approximate_n_voxels_dataset, _cache)
        if len(spacing) != 2:
            return plan  # 3d configurations are dropped in save_plans (3d_fullres becomes 3d_sam there)
        return sam_2d_configuration(plan, self.sam_settings, self.dataset_json)

    def save_plans(self, plans):
        configurations = plans["configurations"]
        plans["configurations"] = {"2d": configurations["2d"]}
        if self.with_3d and "3d_fullres" in configurations:
            plans["configurations"][SAM_3D_CONFIGURATION] = sam_3d_configuration(
                configurations["3d_fullres"], configurations["2d"], self.sam_settings,
                self.generate_data_identifier(SAM_3D_CONFIGURATION))
        super().save_plans(plans)
