"""THE registry of methods: name -> label, nnU-Net trainer, plans, configuration (as segment-anything's
`sam_model_registry` maps a variant name to its builder). Everything else (benchmark, tables, speed,
parameter counts, trainers) reads the names and labels from here.

    ours            SAMCrossModalNetwork (T1-based + T2-based streams, cross-modality adapters)
    early_fusion    all four channels -> 3 -> one SAM (paper Fig. 3 / Table 1 "Early fusion", Table 2 "SAM")
    T1, T1ce, T2, FLAIR
                    one modality -> 3 -> one SAM (paper Table 1)
    nnunet_2d, nnunet_3d_fullres
                    stock nnU-Net (paper Table 2 "nnU-Net")
    swinunetr_2d, unetr_2d
                    MONAI stand-ins for the paper's Swin-Unet and TransUNet (Table 2)
    ours_plus       beyond the paper: ours + adapters in every block + a full-resolution refinement head
                    (docs/method.md lists the differences)
    ours_missing, early_fusion_missing, nnunet_2d_missing
                    the same trainers with modality dropout (missing modalities at inference)
    ours_adapters_0, ours_adapters_all, ours_frozen_stems, ours_adapter_init_default, ours_lr_1e-2,
    ours_concat, ours_refine
                    the ablation of ours: one change each (ABLATIONS, docs/results_real_proxy.md)

Every SAM method reads the same SAM 2d configuration (written by the SAM planner): backbone, input
size and the dataset's modality channels, so they differ only in what the paper varies. This module
imports no torch at import time (the CLIs read the registry before deciding to load anything).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from nnunet_sam_adapter.model.modalities import MODALITIES
from nnunet_sam_adapter.paths import results_folder_name

SAM_PLANS_NAME = "nnUNetSAMPlans"
STOCK_PLANS_NAME = "nnUNetPlans"
CROSS_MODAL_CLASS = "nnunet_sam_adapter.model.network.SAMCrossModalNetwork"
# Plans written before the package was split into stage folders name this path (still importable).
LEGACY_CROSS_MODAL_CLASSES = ("nnunet_sam_adapter.network.SAMCrossModalNetwork",)

_SAM_TRAINERS = "nnunet_sam_adapter.trainers.sam_trainers."
_MONAI_TRAINERS = "nnunet_sam_adapter.trainers.monai_baseline_trainers."
_STOCK_TRAINER = "nnunetv2.training.nnUNetTrainer.nnUNetTrainer.nnUNetTrainer"
_MISSING_TRAINERS = "nnunet_sam_adapter.trainers.missing_modality_trainers."


@dataclass(frozen=True)
class Method:
    """One method of the paper's tables: an nnU-Net trainer on a plans configuration."""

    name: str
    label: str
    trainer: str          # dotted path of the nnU-Net trainer class
    plans: str
    configuration: str
    deep_supervision: bool = False  # what the trainer builds its network with
    network_options: dict = field(default_factory=dict)  # SAMCrossModalNetwork kwargs over the plans' ones

    @property
    def trainer_name(self) -> str:
        return self.trainer.rsplit(".", 1)[1]

    @property
    def folder_name(self) -> str:
        """nnU-Net's results folder of this trainer/plans/configuration."""
        return results_folder_name(self.trainer_name, self.plans, self.configuration)

    @property
    def is_sam(self) -> bool:
        return self.name in SAM_METHODS or self.name in VARIANT_METHODS or self.name in ABLATIONS


# What ours_plus changes on the paper's network (same plans): see docs/method.md.
OURS_PLUS_OPTIONS = {"adapter_depth": "all", "refine_head": True}

# The ablation of ours (issue #13): method -> (label, trainer class, what it changes on the network).
# Each changes one thing; ours_lr_1e-2 changes the trainer's learning rate (its trainer class says so).
ABLATIONS: dict[str, tuple[str, str, dict]] = {
    "ours_adapters_0": ("Ours, no adapters (n = 0)", "SAMCrossModalNoAdaptersTrainer", {"adapter_depth": 0}),
    "ours_adapters_all": ("Ours, adapters after every block", "SAMCrossModalAllAdaptersTrainer",
                          {"adapter_depth": "all"}),
    "ours_frozen_stems": ("Ours, 1x1 stems frozen", "SAMCrossModalFrozenStemsTrainer", {"trainable_stems": False}),
    "ours_adapter_init_default": ("Ours, adapters at PyTorch's default init", "SAMCrossModalDefaultInitTrainer",
                                  {"adapter_init": "default"}),
    "ours_lr_1e-2": ("Ours, learning rate 1e-2 (nnU-Net's initial lr)", "SAMCrossModalLR1e2Trainer", {}),
    "ours_concat": ("Ours, embeddings concatenated (1x1 conv) instead of summed", "SAMCrossModalConcatTrainer",
                    {"embedding_fusion": "concat"}),
    "ours_refine": ("Ours + full-resolution refinement head", "SAMCrossModalRefineTrainer", {"refine_head": True}),
}
_ABLATION_TRAINERS = "nnunet_sam_adapter.trainers.ablation_trainers."

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ours", "Ours (cross-modality adapters)", _SAM_TRAINERS + "SAMCrossModalTrainer", SAM_PLANS_NAME, "2d"),
    Method("ours_plus", "Ours+ (beyond the paper)", _SAM_TRAINERS + "SAMCrossModalPlusTrainer", SAM_PLANS_NAME,
           "2d", network_options=OURS_PLUS_OPTIONS),
    Method("early_fusion", "SAM, early fusion", _SAM_TRAINERS + "SAMEarlyFusionTrainer", SAM_PLANS_NAME, "2d"),
    Method("T1", "SAM, T1 only", _SAM_TRAINERS + "SAMSingleModalityT1Trainer", SAM_PLANS_NAME, "2d"),
    Method("T1ce", "SAM, T1ce only", _SAM_TRAINERS + "SAMSingleModalityT1ceTrainer", SAM_PLANS_NAME, "2d"),
    Method("T2", "SAM, T2 only", _SAM_TRAINERS + "SAMSingleModalityT2Trainer", SAM_PLANS_NAME, "2d"),
    Method("FLAIR", "SAM, FLAIR only", _SAM_TRAINERS + "SAMSingleModalityFLAIRTrainer", SAM_PLANS_NAME, "2d"),
    Method("nnunet_2d", "nnU-Net 2d", _STOCK_TRAINER, STOCK_PLANS_NAME, "2d", deep_supervision=True),
    Method("nnunet_3d_fullres", "nnU-Net 3d_fullres", _STOCK_TRAINER, STOCK_PLANS_NAME, "3d_fullres",
           deep_supervision=True),
    Method("swinunetr_2d", "MONAI SwinUNETR 2D", _MONAI_TRAINERS + "MONAISwinUNETR2DTrainer", STOCK_PLANS_NAME, "2d"),
    Method("unetr_2d", "MONAI UNETR 2D", _MONAI_TRAINERS + "MONAIUNETR2DTrainer", STOCK_PLANS_NAME, "2d"),
    # Trained with modality dropout (training/modality_dropout.py) for missing modalities at inference.
    Method("ours_missing", "Ours + modality dropout", _MISSING_TRAINERS + "SAMCrossModalMissingModalityTrainer",
           SAM_PLANS_NAME, "2d"),
    Method("early_fusion_missing", "SAM, early fusion + modality dropout",
           _MISSING_TRAINERS + "SAMEarlyFusionMissingModalityTrainer", SAM_PLANS_NAME, "2d"),
    Method("nnunet_2d_missing", "nnU-Net 2d + modality dropout", _MISSING_TRAINERS + "nnUNetTrainerMissingModality",
           STOCK_PLANS_NAME, "2d", deep_supervision=True),
    *(Method(name, label, _ABLATION_TRAINERS + trainer, SAM_PLANS_NAME, "2d", network_options=options)
      for name, (label, trainer, options) in ABLATIONS.items()),
)}
SAM_METHODS = ("ours", "early_fusion", *MODALITIES)
VARIANT_METHODS = ("ours_plus",)  # SAM networks beyond the paper (optional in the benchmark)
CROSS_MODAL_METHODS = ("ours", *VARIANT_METHODS, *ABLATIONS)  # SAMCrossModalNetwork + their network_options
DEFAULT_METHODS = (*SAM_METHODS, "nnunet_2d")
OPTIONAL_METHODS = tuple(name for name in METHODS if name not in DEFAULT_METHODS)


class SAMPlansError(ValueError):
    """A configuration that was not written by the SAM planner."""


def sam_settings(configuration: dict, plans_name: str = "") -> dict:
    """The planner's 'sam' block of a configuration: backbone, checkpoint, modality_channels, ..."""
    network_class = configuration.get("architecture", {}).get("network_class_name")
    if "sam" not in configuration or network_class not in (CROSS_MODAL_CLASS, *LEGACY_CROSS_MODAL_CLASSES):
        raise SAMPlansError(
            f"plans {plans_name or '(unnamed)'} have no SAM configuration: SAM trainers need the plans written "
            f"by nnUNetv2_sam_plan_and_preprocess (pass -p {SAM_PLANS_NAME} to nnUNetv2_train / nnUNetv2_predict)")
    return configuration["sam"]


def build_method_network(method: str, configuration: dict, num_input_channels: int, num_outputs: int,
                         plans_name: str = ""):
    """Network (nn.Module) of SAM `method` from a SAM 2d configuration dict (ConfigurationManager.configuration)."""
    from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork

    settings = sam_settings(configuration, plans_name)
    arch_kwargs = dict(configuration["architecture"]["arch_kwargs"])
    if method in CROSS_MODAL_METHODS:
        options = METHODS[method].network_options
        return SAMCrossModalNetwork(num_input_channels, num_outputs, **{**arch_kwargs, **options})
    if method == "early_fusion":
        channels = None
    elif method in MODALITIES:
        channels = [settings["modality_channels"][method]]
    else:
        raise ValueError(f"unknown method {method!r} for a SAM network; expected one of "
                         f"{', '.join((*SAM_METHODS, *CROSS_MODAL_METHODS[1:]))}")
    # The cross-modal kwargs (adapters, streams) do not apply to a single stream; the rest (backbone,
    # input size, execution options) are shared so the methods differ only in what the paper varies.
    accepted = inspect.signature(SAMSingleStreamNetwork).parameters
    shared = {k: v for k, v in arch_kwargs.items() if k in accepted}
    return SAMSingleStreamNetwork(num_input_channels, num_outputs, channels=channels, **shared)
