"""Table 3's numbers: parameters of every network the dataset's plans can build, and the SAM settings.

Never raises for a network that cannot be built for these plans (e.g. MONAI's SwinUNETR on a stock
2d patch of [64, 48]): its entry says why, so a reporting step never discards finished work.
"""

from __future__ import annotations

from nnunet_sam_adapter.benchmark.layout import BenchmarkError, load_plans, trainer_class
from nnunet_sam_adapter.methods import ABLATIONS, METHODS, SAM_PLANS_NAME, Method
from nnunet_sam_adapter.paths import load_json, nnunet_dirs


def network_parameters(method: Method, dataset: int | str) -> dict | None:
    """{'label', 'total', 'trainable', 'percent'} of the network `method`'s trainer builds from the plans;
    {'label', 'error'} when it cannot be built; None when the plans or configuration do not exist."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_sam_adapter.model.parameters import parameter_report

    _, preprocessed, _ = nnunet_dirs(dataset)
    try:
        plans = load_plans(preprocessed, method)
    except BenchmarkError:
        return None
    try:
        dataset_json = load_json(preprocessed / "dataset.json")
        plans_manager = PlansManager(plans)
        configuration = plans_manager.get_configuration(method.configuration)
        inputs = determine_num_input_channels(plans_manager, configuration, dataset_json)
        outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
        build = trainer_class(method).build_network_architecture
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
    """Backbone and weights of the SAM plans (None without SAM plans)."""
    from nnunet_sam_adapter.model.checkpoints import default_checkpoint

    _, preprocessed, _ = nnunet_dirs(dataset)
    plans = load_json(preprocessed / f"{SAM_PLANS_NAME}.json")
    if not plans:
        return None
    sam = plans["configurations"]["2d"].get("sam", {})
    weights = sam.get("checkpoint") or default_checkpoint(sam.get("backbone", ""))
    return {"backbone": sam.get("backbone"), "input_size": sam.get("input_size"),
            "adapter_depth": sam.get("adapter_depth"), "batch_size": sam.get("batch_size"),
            "weights": weights or "RANDOM (no pretrained weights: the numbers do not reflect the method)"}
