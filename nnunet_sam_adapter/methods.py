"""THE registry of methods: name -> one `Method` entry (as segment-anything's `sam_model_registry` maps a
variant name to its builder). Every list of methods elsewhere (the benchmark's default set, the tables'
rows, the statistics' references, the demo's and the GPU check's trainings, the speed benchmark's
networks, the `_short` / `_debug` trainers) is derived from these entries by `method_names` /
`table_methods`; the trainer class (trainers/) is the only other place that names a method.

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
    ours_plus_up2   beyond the paper (issue #22): ours_plus with the frozen encoder at twice the patch size
                    (the stream images resized 2x before it, as SAM resizes its input; docs/method.md)
    ours_plus_ft    beyond the paper (issue #22): ours_plus with the SAM image encoder fine-tuned at 0.1 x the lr
    ours_3d         beyond the paper (issue #18): ours on nnU-Net's 3D pipeline (configuration 3d_sam, stacks
                    of D slices) with zero-initialised cross-slice adapters (docs/method.md, "3D context")
    <method>_missing
                    the method trained with modality dropout (missing modalities at inference), made by
                    `with_modality_dropout` for every multi-modal method: ours_missing, ours_plus_missing,
                    early_fusion_missing, nnunet_2d_missing, nnunet_3d_fullres_missing, ...
    <method>_missing_full50
                    the same with half the training samples keeping all four modalities
    ours_adapters_0, ours_adapters_all, ours_frozen_stems, ours_adapter_init_default, ours_lr_1e-2,
    ours_concat, ours_refine
                    the ablation of ours: one change each (ABLATIONS, docs/results_real_proxy.md)

Adding a method = one entry below + one trainer class in trainers/ (README, "Adding a method").
Every SAM method reads the same SAM 2d configuration (written by the SAM planner): backbone, input
size and the dataset's modality channels, so they differ only in what the paper varies; ours_3d reads the
planner's 3d_sam configuration, which carries the same settings. This module
imports no torch at import time (the CLIs read the registry before deciding to load anything).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field

from nnunet_sam_adapter.model.modalities import MODALITIES
from nnunet_sam_adapter.paths import results_folder_name

SAM_PLANS_NAME = "nnUNetSAMPlans"
STOCK_PLANS_NAME = "nnUNetPlans"
CROSS_MODAL_CLASS = "nnunet_sam_adapter.model.network.SAMCrossModalNetwork"
# Beyond the paper (issue #18): the SAM planner's 3D configuration (stacks of D slices of the SAM input,
# planning.sam_3d_configuration) and the network it names.
SAM_3D_CONFIGURATION = "3d_sam"
CROSS_MODAL_3D_CLASS = "nnunet_sam_adapter.model.network.SAMCrossModal3DNetwork"
# Plans written before the package was split into stage folders name this path (still importable).
LEGACY_CROSS_MODAL_CLASSES = ("nnunet_sam_adapter.network.SAMCrossModalNetwork",)

_SAM_TRAINERS = "nnunet_sam_adapter.trainers.sam_trainers."
_MONAI_TRAINERS = "nnunet_sam_adapter.trainers.monai_baseline_trainers."
_STOCK_TRAINER = "nnunetv2.training.nnUNetTrainer.nnUNetTrainer.nnUNetTrainer"
_MISSING_TRAINERS = "nnunet_sam_adapter.trainers.missing_modality_trainers."
_ABLATION_TRAINERS = "nnunet_sam_adapter.trainers.ablation_trainers."
_SEED_TRAINERS = "nnunet_sam_adapter.trainers.seed_trainers."

# The budget variants of every registered trainer (trainers/sam_trainers_short.py makes them):
# <Trainer>_<suffix> = (epochs, iterations per epoch, validation iterations per epoch).
BUDGETS = {"short": (10, 10, 3), "debug": (2, 4, 2)}
# Seed variants (trainers/seed_trainers.py): <Trainer>_seed<k> for k = 1 .. MAX_SEED, the trainer with python,
# numpy and torch seeded with k; seed 0 is the trainer itself (nnU-Net's own unseeded start). The benchmark's
# `--seeds N` trains seeds 0 .. N-1, each in nnU-Net's own results folder of its trainer name.
MAX_SEED = 4
TABLES = ("table1", "table2", "ablation")


@dataclass(frozen=True)
class Method:
    """One method: an nnU-Net trainer on a plans configuration, and where the benchmark uses it."""

    name: str
    label: str
    trainer: str          # dotted path of the nnU-Net trainer class
    plans: str
    configuration: str
    deep_supervision: bool = False  # what the trainer builds its network with
    network_options: dict = field(default_factory=dict)  # SAMCrossModalNetwork kwargs over the plans' ones
    is_sam: bool = False       # a SAM network (otherwise stock nnU-Net or MONAI)
    cross_modal: bool = False  # build_method_network builds SAMCrossModalNetwork(**network_options) for it
    default: bool = False      # in the benchmark's default set (the paper's methods); the others are optional
    reference: bool = False    # the paired statistics compare it with every other method
    quick: bool = False        # trained by the demo and `make gpu-check`, timed by the speed benchmark
    tables: tuple[str, ...] = ()  # the TABLES with a row for it
    table_row: int = 0         # rows are ordered by this, then by registry order (the paper's row order)
    dropout_of: str | None = None  # a `with_modality_dropout` variant: the method it adds modality dropout to
    dropout_full_set: float = 0.0  # its share of samples that keep all modalities (training/modality_dropout.py)

    @property
    def trainer_name(self) -> str:
        return self.trainer.rsplit(".", 1)[1]

    @property
    def folder_name(self) -> str:
        """nnU-Net's results folder of this trainer/plans/configuration."""
        return results_folder_name(self.trainer_name, self.plans, self.configuration)

    def trainer_class(self, seed: int = 0) -> type:
        """The nnU-Net trainer class (seed > 0: its `_seed<k>` variant), imported now (trainers import torch
        and nnU-Net)."""
        path = self.trainer if seed == 0 else f"{_SEED_TRAINERS}{self.seed_trainer_name(seed)}"
        module, _, name = path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as error:  # the cause, e.g. a sub-package that exists only once the package is installed
            why = f"{type(error).__name__}: {error}"
        except AttributeError:
            why = f"{module} has no attribute {name}"
        raise ImportError(f"trainer class {path} of method {self.name} cannot be imported: {why}")

    def seed_trainer_name(self, seed: int = 0) -> str:
        """The trainer's name for run `seed` of the benchmark: itself for 0, `<Trainer>_seed<k>` for k >= 1."""
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed {seed} out of range: seeds 0-{MAX_SEED} have trainers (methods.MAX_SEED)")
        return self.trainer_name if seed == 0 else f"{self.trainer_name}_seed{seed}"

    def seed_folder_name(self, seed: int = 0) -> str:
        """nnU-Net's results folder of run `seed` (seed 0: `folder_name`)."""
        return results_folder_name(self.seed_trainer_name(seed), self.plans, self.configuration)

    @property
    def budget_variants(self) -> dict[str, tuple[int, int, int]]:
        """{class name of each budget variant of the trainer: (epochs, iterations, validation iterations)}."""
        return {f"{self.trainer_name}_{suffix}": budget for suffix, budget in BUDGETS.items()}


# What ours_plus changes on the paper's network (same plans): see docs/method.md.
OURS_PLUS_OPTIONS = {"adapter_depth": "all", "refine_head": True}
# ours_plus_up2: ours_plus with the encoder at 2x the patch size (docs/method.md, "Encoder resolution").
OURS_PLUS_UP2_OPTIONS = {**OURS_PLUS_OPTIONS, "encoder_scale": 2}
# ours_plus_ft: ours_plus with the SAM image encoder fine-tuned (docs/method.md, "Encoder fine-tuned").
OURS_PLUS_FT_OPTIONS = {**OURS_PLUS_OPTIONS, "train_encoder": True}

# Table rows, in the paper's order: single modalities, other baselines, early fusion (= "SAM"), nnU-Net,
# ours, the ablation of ours, ours_plus.
_MODALITY_ROW, _BASELINE_ROW, _EARLY_FUSION_ROW, _NNUNET_ROW, _OURS_ROW, _ABLATION_ROW, _PLUS_ROW = range(7)
_SAM = {"plans": SAM_PLANS_NAME, "configuration": "2d", "is_sam": True}
_STOCK_2D = {"plans": STOCK_PLANS_NAME, "configuration": "2d"}


def _ablation(name: str, label: str, trainer: str, options: dict) -> Method:
    """ours with one change (issue #13): a row of the ablation table only."""
    return Method(name, label, _ABLATION_TRAINERS + trainer, **_SAM, cross_modal=True, network_options=options,
                  tables=("ablation",), table_row=_ABLATION_ROW)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ours", "Ours (cross-modality adapters)", _SAM_TRAINERS + "SAMCrossModalTrainer", **_SAM,
           cross_modal=True, default=True, reference=True, quick=True, tables=("table1", "table2", "ablation"),
           table_row=_OURS_ROW),
    Method("ours_plus", "Ours+ (beyond the paper)", _SAM_TRAINERS + "SAMCrossModalPlusTrainer", **_SAM,
           cross_modal=True, network_options=OURS_PLUS_OPTIONS, reference=True, tables=("table1", "table2", "ablation"),
           table_row=_PLUS_ROW),
    Method("ours_plus_up2", "Ours+, encoder at 2x the patch size (beyond the paper)",
           _SAM_TRAINERS + "SAMCrossModalPlusUp2Trainer", **_SAM, cross_modal=True,
           network_options=OURS_PLUS_UP2_OPTIONS, reference=True, tables=("table2",), table_row=_PLUS_ROW),
    Method("ours_plus_ft", "Ours+, encoder fine-tuned (beyond the paper)",
           _SAM_TRAINERS + "SAMCrossModalPlusFineTuneTrainer", **_SAM, cross_modal=True,
           network_options=OURS_PLUS_FT_OPTIONS, reference=True, tables=("table2",), table_row=_PLUS_ROW),
    Method("early_fusion", "SAM, early fusion", _SAM_TRAINERS + "SAMEarlyFusionTrainer", **_SAM, default=True,
           quick=True, tables=("table1", "table2"), table_row=_EARLY_FUSION_ROW),
    Method("T1", "SAM, T1 only", _SAM_TRAINERS + "SAMSingleModalityT1Trainer", **_SAM, default=True,
           tables=("table1",), table_row=_MODALITY_ROW),
    Method("T1ce", "SAM, T1ce only", _SAM_TRAINERS + "SAMSingleModalityT1ceTrainer", **_SAM, default=True,
           tables=("table1",), table_row=_MODALITY_ROW),
    Method("T2", "SAM, T2 only", _SAM_TRAINERS + "SAMSingleModalityT2Trainer", **_SAM, default=True,
           tables=("table1",), table_row=_MODALITY_ROW),
    Method("FLAIR", "SAM, FLAIR only", _SAM_TRAINERS + "SAMSingleModalityFLAIRTrainer", **_SAM, default=True,
           tables=("table1",), table_row=_MODALITY_ROW),
    Method("nnunet_2d", "nnU-Net 2d", _STOCK_TRAINER, **_STOCK_2D, deep_supervision=True, default=True, quick=True,
           tables=("table2",), table_row=_NNUNET_ROW),
    Method("nnunet_3d_fullres", "nnU-Net 3d_fullres", _STOCK_TRAINER, STOCK_PLANS_NAME, "3d_fullres",
           deep_supervision=True, tables=("table2",), table_row=_NNUNET_ROW),
    Method("swinunetr_2d", "MONAI SwinUNETR 2D", _MONAI_TRAINERS + "MONAISwinUNETR2DTrainer", **_STOCK_2D,
           tables=("table2",), table_row=_BASELINE_ROW),
    Method("unetr_2d", "MONAI UNETR 2D", _MONAI_TRAINERS + "MONAIUNETR2DTrainer", **_STOCK_2D,
           tables=("table2",), table_row=_BASELINE_ROW),
    # Beyond the paper (issue #18): measured against nnunet_3d_fullres, hence its Table 2 row.
    Method("ours_3d", "Ours 3D (cross-slice adapters, beyond the paper)", _SAM_TRAINERS + "SAMCrossModal3DTrainer",
           SAM_PLANS_NAME, SAM_3D_CONFIGURATION, is_sam=True, cross_modal=True, tables=("table2",),
           table_row=_PLUS_ROW),
    _ablation("ours_adapters_0", "Ours, no adapters (n = 0)", "SAMCrossModalNoAdaptersTrainer", {"adapter_depth": 0}),
    _ablation("ours_adapters_all", "Ours, adapters after every block", "SAMCrossModalAllAdaptersTrainer",
              {"adapter_depth": "all"}),
    _ablation("ours_frozen_stems", "Ours, 1x1 stems frozen", "SAMCrossModalFrozenStemsTrainer",
              {"trainable_stems": False}),
    _ablation("ours_adapter_init_default", "Ours, adapters at PyTorch's default init",
              "SAMCrossModalDefaultInitTrainer", {"adapter_init": "default"}),
    # changes the trainer's learning rate (its trainer class says so), not the network
    _ablation("ours_lr_1e-2", "Ours, learning rate 1e-2 (nnU-Net's initial lr)", "SAMCrossModalLR1e2Trainer", {}),
    _ablation("ours_concat", "Ours, embeddings concatenated (1x1 conv) instead of summed",
              "SAMCrossModalConcatTrainer", {"embedding_fusion": "concat"}),
    _ablation("ours_refine", "Ours + full-resolution refinement head", "SAMCrossModalRefineTrainer",
              {"refine_head": True}),
)}


# Modality dropout (training/modality_dropout.py) is a property any multi-modal method can take: its
# `<name>_missing` variant trains the same network with the same plans through the generated trainer
# `dropout_trainer_name(trainer)` (trainers/missing_modality_trainers.py). Single-modality methods have
# nothing to drop.
DROPOUT_SUFFIX = "_missing"
# The second scheme: half the samples keep all four modalities (beyond the papers, training/modality_dropout.py):
# `<name>_missing_full50`, trainer `<Trainer>MissingModalityFull50`.
FULL_SET_SCHEMES = (0.5,)
# Trainer names of dropout variants that existed before the mechanism (their results folders keep their names).
_LEGACY_DROPOUT_TRAINERS = {"SAMCrossModalTrainer": "SAMCrossModalMissingModalityTrainer",
                            "SAMEarlyFusionTrainer": "SAMEarlyFusionMissingModalityTrainer"}


def _full_set_suffix(full_set: float) -> str:
    return f"_full{round(100 * full_set)}" if full_set else ""


def dropout_trainer_name(trainer_name: str, full_set: float = 0.0) -> str:
    """The generated modality-dropout trainer of a trainer: `<Trainer>MissingModality` (nnU-Net's
    nnUNetTrainerMissingModality), two older names kept; `<Trainer>MissingModalityFull50` for full_set 0.5."""
    if full_set:
        return f"{trainer_name}MissingModalityFull{round(100 * full_set)}"
    return _LEGACY_DROPOUT_TRAINERS.get(trainer_name, f"{trainer_name}MissingModality")


def with_modality_dropout(method: Method, full_set: float = 0.0) -> Method:
    """`method` trained with modality dropout (`full_set`: the share of samples that keep all modalities):
    same network, plans and configuration, its trainer's dropout variant, no table row of its own (the
    missing-modality table compares them)."""
    label = f"{method.label} + modality dropout" + (f" ({round(100 * full_set)}% full set)" if full_set else "")
    return Method(f"{method.name}{DROPOUT_SUFFIX}{_full_set_suffix(full_set)}", label,
                  _MISSING_TRAINERS + dropout_trainer_name(method.trainer_name, full_set),
                  method.plans, method.configuration, deep_supervision=method.deep_supervision,
                  network_options=dict(method.network_options), is_sam=method.is_sam, cross_modal=method.cross_modal,
                  dropout_of=method.name, dropout_full_set=full_set)


METHODS.update({variant.name: variant for variant in (
    with_modality_dropout(m, full_set) for m in list(METHODS.values()) if m.name not in MODALITIES
    for full_set in (0.0, *FULL_SET_SCHEMES))})


def dropout_variant(name: str, full_set: float = 0.0) -> str:
    """The registered name of method `name` with modality dropout (ValueError when it has none)."""
    variant = f"{name}{DROPOUT_SUFFIX}{_full_set_suffix(full_set)}"
    if METHODS.get(variant) is None or METHODS[variant].dropout_of != name:
        raise ValueError(f"method {name} has no modality-dropout variant (single-modality methods have nothing to drop)")
    return variant


def method_names(**fields) -> tuple[str, ...]:
    """Names of the registered methods whose fields have these values, in registry order
    (e.g. `method_names(default=True)`)."""
    return tuple(name for name, method in METHODS.items()
                 if all(getattr(method, key) == value for key, value in fields.items()))


def table_methods(table: str) -> tuple[str, ...]:
    """The methods with a row in `table` (one of TABLES), in row order."""
    return tuple(sorted((name for name, method in METHODS.items() if table in method.tables),
                        key=lambda name: METHODS[name].table_row))


def ablations() -> tuple[str, ...]:
    """The ablation of ours: the ablation table's rows other than the references (ours, ours_plus)."""
    return tuple(name for name in table_methods("ablation") if not METHODS[name].reference)


DEFAULT_METHODS = method_names(default=True)
OPTIONAL_METHODS = method_names(default=False)
SAM_METHODS = method_names(is_sam=True, default=True)  # the paper's SAM methods
REFERENCE_METHODS = method_names(reference=True)       # the paper's method, then the variant beyond it
VARIANT_METHODS = method_names(reference=True, default=False)  # beyond the paper
CROSS_MODAL_METHODS = method_names(cross_modal=True)
QUICK_METHODS = method_names(quick=True)
ABLATIONS = ablations()


class SAMPlansError(ValueError):
    """A configuration that was not written by the SAM planner."""


def sam_settings(configuration: dict, plans_name: str = "") -> dict:
    """The planner's 'sam' block of a configuration: backbone, checkpoint, modality_channels, ..."""
    network_class = configuration.get("architecture", {}).get("network_class_name")
    if "sam" not in configuration or network_class not in (CROSS_MODAL_CLASS, CROSS_MODAL_3D_CLASS,
                                                           *LEGACY_CROSS_MODAL_CLASSES):
        raise SAMPlansError(
            f"plans {plans_name or '(unnamed)'} have no SAM configuration: SAM trainers need the plans written "
            f"by nnUNetv2_sam_plan_and_preprocess (pass -p {SAM_PLANS_NAME} to nnUNetv2_train / nnUNetv2_predict)")
    return configuration["sam"]


def build_method_network(method: str, configuration: dict, num_input_channels: int, num_outputs: int,
                         plans_name: str = ""):
    """Network (nn.Module) of SAM `method` from a SAM configuration dict (ConfigurationManager.configuration):
    the 2d one, or for ours_3d the 3d_sam one (the method and the configuration must agree)."""
    from nnunet_sam_adapter.model.network import SAMCrossModal3DNetwork, SAMCrossModalNetwork, SAMSingleStreamNetwork

    settings = sam_settings(configuration, plans_name)
    arch_kwargs = dict(configuration["architecture"]["arch_kwargs"])
    is_3d = configuration["architecture"]["network_class_name"] == CROSS_MODAL_3D_CLASS
    wants_3d = method in METHODS and METHODS[method].configuration == SAM_3D_CONFIGURATION
    if is_3d != wants_3d:
        raise SAMPlansError(
            f"method {method} trains on the SAM {'3D configuration (-c ' + SAM_3D_CONFIGURATION if wants_3d else '2d configuration (-c 2d'}), "
            f"not on the {'3D' if is_3d else '2d'} configuration given (plans {plans_name or '(unnamed)'})")
    if method in method_names(cross_modal=True):
        options = METHODS[method].network_options
        network_class = SAMCrossModal3DNetwork if is_3d else SAMCrossModalNetwork
        return network_class(num_input_channels, num_outputs, **{**arch_kwargs, **options})
    if method == "early_fusion":
        channels = None
    elif method in MODALITIES:
        channels = [settings["modality_channels"][method]]
    else:
        raise ValueError(f"unknown method {method!r} for a SAM network; expected one of "
                         f"{', '.join(dict.fromkeys((*SAM_METHODS, *method_names(cross_modal=True))))}")
    # The cross-modal kwargs (adapters, streams) do not apply to a single stream; the rest (backbone,
    # input size, execution options) are shared so the methods differ only in what the paper varies.
    accepted = inspect.signature(SAMSingleStreamNetwork).parameters
    shared = {k: v for k, v in arch_kwargs.items() if k in accepted}
    return SAMSingleStreamNetwork(num_input_channels, num_outputs, channels=channels, **shared)
