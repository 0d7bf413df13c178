"""The ablation of ours (methods.ABLATIONS): each row changes the one thing it names, the paper's
defaults stay as they were, and the benchmark writes an ablation table when an ablation row ran."""
import pydoc

import pytest
import torch

from nnunet_sam_adapter.methods import ABLATIONS, METHODS, build_method_network
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork
from nnunet_sam_adapter.planning import SAMPlanSettings, sam_2d_configuration

STOCK_2D = {"data_identifier": "nnUNetSAMPlans_2d", "batch_size": 12, "patch_size": [64, 48],
            "spacing": [3.0, 3.0], "normalization_schemes": ["ZScoreNormalization"] * 4,
            "architecture": {"network_class_name": "PlainConvUNet", "arch_kwargs": {}, "_kw_requires_import": []}}


def _network(**options):
    """fp32 pinned: the comparisons below are about construction, not about a CPU's autocast default
    (under bf16 autocast a sum and a [I | I] 1x1 conv round differently, ~2e-3)."""
    torch.manual_seed(0)
    return SAMCrossModalNetwork(4, 2, backbone="tiny", input_size=32,
                                **{"adapter_depth": 2, "autocast": "off", **options})


def _trainable(network) -> set[str]:
    return {name for name, p in network.named_parameters() if p.requires_grad}


def test_each_switch_changes_only_what_it_names():
    paper, x = _network(), torch.randn(2, 4, 32, 32)
    assert len(_network(adapter_depth=0).adapters) == 0
    assert len(_network(adapter_depth="all").adapters) == len(paper.sam.block_widths)
    frozen = _network(trainable_stems=False)
    assert _trainable(paper) - _trainable(frozen) == {n for n in _trainable(paper) if n.startswith("stems.")} != set()
    torch.testing.assert_close(frozen(x), paper(x))  # same init, only trainability differs
    default_init = _network(adapter_init="default")
    assert all(a.fuse.weight.abs().sum() > 0 for a in default_init.adapters)
    assert all(a.fuse.weight.abs().sum() == 0 for a in paper.adapters)
    concat = _network(embedding_fusion="concat")
    torch.testing.assert_close(concat(x), paper(x))  # starts as the sum (weights [I | I])
    concat(x).square().mean().backward()
    assert concat.fuse_embeddings.weight.grad.abs().sum() > 0
    assert paper.fuse_embeddings is None and paper.refine is None
    with pytest.raises(ValueError, match="embedding_fusion"):
        _network(embedding_fusion="mean")


def test_frozen_stems_never_reach_the_optimiser():
    from nnunet_sam_adapter.training.single_output_trainer import SingleOutputAdamWTrainer

    class Holder:
        initial_lr, weight_decay, num_epochs = 1e-3, 0.0, 2
        network = _network(trainable_stems=False)

    optimizer, _ = SingleOutputAdamWTrainer.configure_optimizers(Holder())
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in Holder.network.stems.parameters()}
    assert optimised >= {id(p) for p in Holder.network.adapters.parameters()}


def test_every_ablation_has_a_trainer_building_its_network():
    tiny_sam_configuration = sam_2d_configuration(
        STOCK_2D, SAMPlanSettings(backbone="tiny", input_size=32, adapter_depth=2),
        {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}})
    for name in ABLATIONS:
        trainer = pydoc.locate(METHODS[name].trainer)
        assert trainer.__name__ == METHODS[name].trainer_name and trainer.method == name
        network = build_method_network(name, tiny_sam_configuration, 4, 2)
        for key, value in METHODS[name].network_options.items():
            if key == "adapter_depth":
                assert len(network.adapters) == (len(network.sam.block_widths) if value == "all" else value)
            elif key == "trainable_stems":
                assert all(not p.requires_grad for p in network.stems.parameters())
            elif key == "refine_head":
                assert network.refine is not None
            elif key == "embedding_fusion":
                assert network.fuse_embeddings is not None
            elif key == "adapter_init":
                assert all(a.fuse.weight.abs().sum() > 0 for a in network.adapters)
    lr_trainer = pydoc.locate(METHODS["ours_lr_1e-2"].trainer)
    assert lr_trainer.__init__ is not pydoc.locate(METHODS["ours"].trainer).__init__


def test_ablation_table_lists_the_rows_that_ran():
    from nnunet_sam_adapter.reporting.tables import tables_markdown

    summary = {"classes": {"tumor": [1]}, "cases": ["c1"],
               "volume": {"tumor": {"dice": {"mean": 0.8, "std": 0.0, "count": 1},
                                    "hd95": {"mean": 3.0, "std": 0.0, "count": 1}}},
               "slice": {"tumor": {"dice": {"mean": 0.7, "std": 0.0, "count": 4},
                                   "hd95": {"mean": 2.0, "std": 0.0, "count": 4}}}}
    entry = {"summary": summary, "budget": {"epochs": 2, "iterations": 4, "batch_size": 4}, "status": "trained"}
    results = {"dataset": "D", "fold": 0, "device": "cpu", "validation_cases": ["c1"], "test_time_mirroring": False,
               "sam": None, "parameters": {}, "missing": {},
               "methods": {"ours": {**entry, "label": "Ours", "train_seconds": 12.0}}}
    assert "Ablation" not in tables_markdown(results)  # no ablation row ran: no table
    results["methods"]["ours_adapters_0"] = {**entry, "label": METHODS["ours_adapters_0"].label, "train_seconds": 9.4}
    text = tables_markdown(results)
    section = text.split("## Ablation")[1].split("##")[0]
    assert "| Ours | 80.00 ± 0.00 | 3.00 ± 0.00 | 70.00 ± 0.00 | 1 | 32 | 12 |" in section
    assert "Ours, no adapters (n = 0)" in section and "| 9 |" in section
