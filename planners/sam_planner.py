"""nnU-Net experiment planner for the SAM 2d configuration (plans identifier `nnUNetSAMPlans`)."""

from __future__ import annotations

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from nnunet_sam_adapter.methods import SAM_PLANS_NAME
from nnunet_sam_adapter.planning import SAMPlanSettings, sam_2d_configuration


class SAMPlanner(ExperimentPlanner):
    """nnU-Net's planner with its 2d configuration turned into the SAM network's: nnU-Net still decides
    spacing, resampling and masking; the patch becomes the SAM input, normalisation is z-score and the
    architecture is the cross-modality network. Only the 2d configuration is kept (SAM is 2D)."""

    def __init__(self, dataset_name_or_id, gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = SAM_PLANS_NAME,
                 overwrite_target_spacing=None, suppress_transpose: bool = False,
                 sam_settings: SAMPlanSettings | None = None):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self.sam_settings = sam_settings or SAMPlanSettings()

    def determine_normalization_scheme_and_whether_mask_is_used_for_norm(self):
        schemes, use_mask = super().determine_normalization_scheme_and_whether_mask_is_used_for_norm()
        return ["ZScoreNormalization"] * len(schemes), use_mask

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset,
                                    _cache):
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                   approximate_n_voxels_dataset, _cache)
        if len(spacing) != 2:
            return plan  # 3d configurations are dropped in save_plans
        return sam_2d_configuration(plan, self.sam_settings, self.dataset_json)

    def save_plans(self, plans):
        plans["configurations"] = {"2d": plans["configurations"]["2d"]}
        super().save_plans(plans)
