"""SAM plan settings and the 2d and 3d_sam configurations the planner writes (the full planner runs end to end)."""

from __future__ import annotations

import pytest
import torch

from nnunet_sam_adapter.model.checkpoints import SAMCheckpointError
from nnunet_sam_adapter.methods import CROSS_MODAL_CLASS, SAMPlansError, build_method_network, sam_settings
from nnunet_sam_adapter.model.modalities import ModalityError
from nnunet_sam_adapter.model.network import SAMCrossModal3DNetwork, SAMCrossModalNetwork, SAMSingleStreamNetwork
from nnunet_sam_adapter.planning import (SAMPlanSettings, backbone_depth, sam_2d_configuration, sam_3d_configuration,
                                         slices_and_batch_3d)

STOCK_2D = {"data_identifier": "nnUNetSAMPlans_2d", "batch_size": 12, "patch_size": [192, 160],
            "spacing": [1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"] * 4,
            "architecture": {"network_class_name": "PlainConvUNet", "arch_kwargs": {}, "_kw_requires_import": []}}


def test_settings_defaults_are_the_papers():
    settings = SAMPlanSettings()
    assert (settings.backbone, settings.input_size, settings.batch_size, settings.adapter_depth) == ("vit_b", 256, 24, 6)


@pytest.mark.parametrize("kwargs, message", [
    ({"backbone": "vit_x"}, "unknown backbone"),
    ({"input_size": 250}, "multiple of 16"),
    ({"batch_size": 0}, "batch size"),
    ({"backbone": "tiny", "adapter_depth": 5}, "0..4"),
])
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAMPlanSettings(**kwargs)


def test_settings_reject_missing_checkpoint_and_store_absolute_path(tmp_path, monkeypatch):
    with pytest.raises(SAMCheckpointError, match="does not exist"):
        SAMPlanSettings(checkpoint=str(tmp_path / "nope.pth"))
    (tmp_path / "w.pth").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert SAMPlanSettings(checkpoint="w.pth").checkpoint == str(tmp_path / "w.pth")


def test_backbone_depths():
    assert backbone_depth("vit_b", 256) == 12 and backbone_depth("vit_h", 256) == 32
    assert backbone_depth("litemedsam", 64) == 10


def test_configuration_for_brats_2023_channel_names():
    dataset_json = {"channel_names": {"0": "t2f", "1": "t1n", "2": "t1c", "3": "t2w"}}
    plan = sam_2d_configuration(STOCK_2D, SAMPlanSettings(backbone="tiny", input_size=64, batch_size=3,
                                                          adapter_depth=2), dataset_json)
    assert plan["patch_size"] == [64, 64] and plan["batch_size"] == 3
    assert plan["spacing"] == STOCK_2D["spacing"]  # nnU-Net's decisions are kept
    assert plan["architecture"]["network_class_name"] == CROSS_MODAL_CLASS
    assert plan["architecture"]["arch_kwargs"]["stream_channels"] == [[1, 2], [3, 0]]
    assert plan["sam"]["modality_channels"] == {"FLAIR": 0, "T1": 1, "T1ce": 2, "T2": 3}


def test_configuration_needs_all_four_modalities():
    with pytest.raises(ModalityError, match="FLAIR"):
        sam_2d_configuration(STOCK_2D, SAMPlanSettings(backbone="tiny", adapter_depth=2),
                             {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "CT"}})


def test_methods_build_from_the_configuration():
    dataset_json = {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}}
    plan = sam_2d_configuration(STOCK_2D, SAMPlanSettings(backbone="tiny", input_size=32, adapter_depth=1),
                                dataset_json)
    ours = build_method_network("ours", plan, 4, 2)
    assert isinstance(ours, SAMCrossModalNetwork) and ours.adapter_depth == 1
    flair = build_method_network("FLAIR", plan, 4, 2)
    assert isinstance(flair, SAMSingleStreamNetwork) and flair.channels == [3]
    assert build_method_network("early_fusion", plan, 4, 3).channels == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown method"):
        build_method_network("T3", plan, 4, 2)


def test_stock_plans_are_refused_with_a_pointer_to_the_sam_planner():
    with pytest.raises(SAMPlansError, match="nnUNetv2_sam_plan_and_preprocess"):
        sam_settings(STOCK_2D, "nnUNetPlans")


# ---------------------------------------------------------------- the SAM 3D configuration (issue #18)

STOCK_3D = {"data_identifier": "nnUNetSAMPlans_3d_fullres", "batch_size": 2, "patch_size": [12, 64, 48],
            "spacing": [3.0, 3.0, 3.0], "median_image_size_in_voxels": [12, 64, 48],
            "normalization_schemes": ["CTNormalization"] * 4, "batch_dice": True,
            "architecture": {"network_class_name": "PlainConvUNet", "arch_kwargs": {}, "_kw_requires_import": []}}


@pytest.mark.parametrize("spacing, median, batch, slices, expected", [
    (1.0, 155, 24, None, (16, 1)),   # BraTS at 1 mm, the paper's batch: 16 slices (16 mm), one stack
    (1.0, 155, 48, None, (16, 3)),
    (2.0, 78, 24, None, (8, 3)),     # 8 slices from 2 mm on (at least 8)
    (3.0, 52, 24, None, (8, 3)),
    (3.0, 12, 4, None, (4, 1)),      # the tests' dataset: D <= the 2d batch (memory), B x D <= it
    (1.0, 5, 24, None, (5, 4)),      # never deeper than the median image
    (1.0, 155, 24, 12, (12, 2)),     # --slices overrides the spacing rule, not the memory rule
])
def test_3d_slices_and_batch_rule(spacing, median, batch, slices, expected):
    assert slices_and_batch_3d(spacing, median, batch, slices) == expected


def test_3d_configuration_from_3d_fullres_and_the_2d_one():
    dataset_json = {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}}
    settings = SAMPlanSettings(backbone="tiny", input_size=32, batch_size=6, adapter_depth=1)
    plan_2d = sam_2d_configuration(STOCK_2D, settings, dataset_json)
    plan = sam_3d_configuration(STOCK_3D, plan_2d, settings, "nnUNetSAMPlans_3d_sam")
    assert plan["patch_size"] == [6, 32, 32] and plan["batch_size"] == 1  # 3 mm: 8 slices, capped by batch 6
    assert plan["spacing"] == STOCK_3D["spacing"] and plan["data_identifier"] == "nnUNetSAMPlans_3d_sam"
    assert plan["normalization_schemes"] == plan_2d["normalization_schemes"]
    assert plan["sam"] == {**plan_2d["sam"], "slices": 6, "batch_size": 1}
    assert plan["architecture"]["arch_kwargs"] == {**plan_2d["architecture"]["arch_kwargs"],
                                                   "slice_adapter_depth": "all", "slice_kernel": [3, 3, 3]}
    assert STOCK_3D["patch_size"] == [12, 64, 48]  # the stock plan is not modified
    ours_3d = build_method_network("ours_3d", plan, 4, 2)
    assert isinstance(ours_3d, SAMCrossModal3DNetwork) and ours_3d.adapter_depth == 1
    assert ours_3d(torch.zeros(1, 4, 6, 32, 32)).shape == (1, 2, 6, 32, 32)
    with pytest.raises(SAMPlansError, match="-c 3d_sam"):
        build_method_network("ours_3d", plan_2d, 4, 2)
    with pytest.raises(SAMPlansError, match="-c 2d"):
        build_method_network("ours", plan, 4, 2)
    with pytest.raises(ValueError, match="slices must be >= 1"):
        SAMPlanSettings(backbone="tiny", adapter_depth=2, slices=0)
