"""The methods the paper compares, as networks built from nnU-Net plans.

    ours            SAMCrossModalNetwork (T1-based + T2-based streams, cross-modality adapters)
    early_fusion    all four channels -> 3 -> one SAM (paper Fig. 3 / Table 1 "Early fusion", Table 2 "SAM")
    T1, T1ce, T2, FLAIR
                    one modality -> 3 -> one SAM (paper Table 1)

Every SAM method reads the same SAM 2d configuration (written by the SAM planner): backbone, input
size and the dataset's modality channels, so they differ only in what the paper varies.
"""

from __future__ import annotations

import inspect

from torch import nn

from nnunet_sam_adapter.model.modalities import MODALITIES
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork

CROSS_MODAL_CLASS = f"{SAMCrossModalNetwork.__module__}.{SAMCrossModalNetwork.__qualname__}"
# Plans written before the package was split into stage folders name this path (still importable).
LEGACY_CROSS_MODAL_CLASSES = ("nnunet_sam_adapter.network.SAMCrossModalNetwork",)
SAM_METHODS = ("ours", "early_fusion", *MODALITIES)


class SAMPlansError(ValueError):
    """A configuration that was not written by the SAM planner."""


def sam_settings(configuration: dict, plans_name: str = "") -> dict:
    """The planner's 'sam' block of a configuration: backbone, checkpoint, modality_channels, ..."""
    network_class = configuration.get("architecture", {}).get("network_class_name")
    if "sam" not in configuration or network_class not in (CROSS_MODAL_CLASS, *LEGACY_CROSS_MODAL_CLASSES):
        raise SAMPlansError(
            f"plans {plans_name or '(unnamed)'} have no SAM configuration: SAM trainers need the plans written "
            f"by nnUNetv2_sam_plan_and_preprocess (pass -p nnUNetSAMPlans to nnUNetv2_train / nnUNetv2_predict)")
    return configuration["sam"]


def build_method_network(method: str, configuration: dict, num_input_channels: int, num_outputs: int,
                         plans_name: str = "") -> nn.Module:
    """Network of `method` from a SAM 2d configuration dict (nnU-Net's ConfigurationManager.configuration)."""
    settings = sam_settings(configuration, plans_name)
    arch_kwargs = dict(configuration["architecture"]["arch_kwargs"])
    if method == "ours":
        return SAMCrossModalNetwork(num_input_channels, num_outputs, **arch_kwargs)
    if method == "early_fusion":
        channels = None
    elif method in MODALITIES:
        channels = [settings["modality_channels"][method]]
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(SAM_METHODS)}")
    # The cross-modal kwargs (adapters, streams) do not apply to a single stream; the rest (backbone,
    # input size, execution options) are shared so the methods differ only in what the paper varies.
    accepted = inspect.signature(SAMSingleStreamNetwork).parameters
    shared = {k: v for k, v in arch_kwargs.items() if k in accepted}
    return SAMSingleStreamNetwork(num_input_channels, num_outputs, channels=channels, **shared)
