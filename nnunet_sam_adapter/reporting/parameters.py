"""Table 3's numbers: parameters of every network the dataset's plans can build, the SAM settings, and
the paper's SAM networks at given settings (`nnUNetv2_sam_params`).

Never raises for a network that cannot be built for these plans (e.g. MONAI's SwinUNETR on a stock
2d patch of [64, 48]): its entry says why, so a reporting step never discards finished work.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_sam_adapter.methods import ABLATIONS, METHODS, Method
from nnunet_sam_adapter.paths import load_json, load_plans_json, nnunet_dirs


def _plans(preprocessed: Path, method: Method) -> dict | None:
    """The method's plans, None when the file or its configuration does not exist (the benchmark says how
    to write them; a report leaves the row out)."""
    plans = load_plans_json(preprocessed / f"{method.plans}.json")
    if plans is None or method.configuration not in plans["configurations"]:
        return None
    return plans


def network_parameters(method: Method, dataset: int | str) -> dict | None:
    """{'label', 'total', 'trainable', 'percent'} of the network `method`'s trainer builds from the plans;
    {'label', 'error'} when it cannot be built; None when the plans or configuration do not exist."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_sam_adapter.model.parameters import parameter_report

    _, preprocessed, _ = nnunet_dirs(dataset)
    plans = _plans(preprocessed, method)
    if plans is None:
        return None
    try:
        dataset_json = load_json(preprocessed / "dataset.json")
        plans_manager = PlansManager(plans)
        configuration = plans_manager.get_configuration(method.configuration)
        inputs = determine_num_input_channels(plans_manager, configuration, dataset_json)
        outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
        build = method.trainer_class().build_network_architecture
        try:
            with torch.device("meta"):
                network = build(plans_manager, configuration, inputs, outputs, method.deep_supervision)
        except Exception:  # some modules (LiteMedSAM's TinyViT) cannot be built on meta
            network = build(plans_manager, configuration, inputs, outputs, method.deep_supervision)
    except Exception as error:
        return {"label": method.label, "error": f"not built for these plans: {type(error).__name__}: {error}"}
    return {"label": method.label, **parameter_report(network)}


def all_network_parameters(dataset: int | str, run_methods=()) -> dict[str, dict]:
    """network_parameters of every registered method whose plans exist (ablation rows only when in
    `run_methods`: they are one-change copies of ours)."""
    found = {}
    for method in METHODS.values():
        if method.name in ABLATIONS and method.name not in run_methods:
            continue
        report = network_parameters(method, dataset)
        if report is not None:
            found[method.name] = report
    return found


def sam_description(dataset: int | str) -> dict | None:
    """Backbone and weights of the SAM plans (None without readable SAM plans with a 2d configuration)."""
    from nnunet_sam_adapter.model.checkpoints import default_checkpoint

    _, preprocessed, _ = nnunet_dirs(dataset)
    plans = _plans(preprocessed, METHODS["ours"])  # the SAM plans and their 2d configuration
    if plans is None:
        return None
    sam = plans["configurations"]["2d"].get("sam", {})
    weights = sam.get("checkpoint") or default_checkpoint(sam.get("backbone", ""))
    return {"backbone": sam.get("backbone"), "input_size": sam.get("input_size"),
            "adapter_depth": sam.get("adapter_depth"), "batch_size": sam.get("batch_size"),
            "weights": weights or "RANDOM (no pretrained weights: the numbers do not reflect the method)"}


def method_parameter_reports(backbone: str = "vit_b", input_size: int = 256, adapter_depth: int = 6,
                             num_classes: int = 2, input_channels: int = 4) -> dict[str, dict]:
    """Parameter report + breakdown of ours, ours_3d and the paper's SAM baselines (Fig. 3), built on the meta
    device (no memory, no weights): {method: {'report': ..., 'parts': ...}}. LiteMedSAM's TinyViT
    cannot be built on meta (it calls .item() in __init__); it is small enough for the CPU."""
    import torch

    from nnunet_sam_adapter.model.backbones import VIT_CONFIGS
    from nnunet_sam_adapter.model.network import SAMCrossModal3DNetwork, SAMCrossModalNetwork, SAMSingleStreamNetwork
    from nnunet_sam_adapter.model.parameters import parameter_breakdown, parameter_report

    with torch.device("meta" if backbone in VIT_CONFIGS else "cpu"):
        models = {
            METHODS["ours"].label: SAMCrossModalNetwork(input_channels, num_classes, backbone, input_size,
                                                        adapter_depth),
            # beyond the paper (issue #18): ours + a depthwise 3x3x3 cross-slice adapter after every block
            METHODS["ours_3d"].label: SAMCrossModal3DNetwork(input_channels, num_classes, backbone, input_size,
                                                             adapter_depth),
            f"early fusion ({input_channels} -> 3)": SAMSingleStreamNetwork(input_channels, num_classes,
                                                                           backbone, input_size),
            "single modality (1 -> 3)": SAMSingleStreamNetwork(input_channels, num_classes, backbone,
                                                               input_size, channels=[0]),
        }
    return {name: {"report": parameter_report(m), "parts": parameter_breakdown(m)} for name, m in models.items()}
