"""ours_plus (beyond the paper): adapters after every block + full-resolution refinement head; starts as the paper's
network, learns a residual, and the paper's defaults are unchanged."""
import torch

from nnunet_sam_adapter.methods import METHODS, OURS_PLUS_OPTIONS, VARIANT_METHODS
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork


def _pair():
    """fp32 pinned: "starts as the paper's network" is exact in fp32, whatever the CPU's autocast default."""
    torch.manual_seed(0)
    paper = SAMCrossModalNetwork(4, 2, backbone="tiny", input_size=32, adapter_depth=2, autocast="off")
    plus = SAMCrossModalNetwork(4, 2, backbone="tiny", input_size=32, autocast="off", **OURS_PLUS_OPTIONS)
    missing, unexpected = plus.load_state_dict(paper.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("adapters.", "refine.")) for k in missing)
    return paper, plus


def test_paper_defaults_have_no_refinement_head():
    paper, plus = _pair()
    assert paper.refine is None and len(paper.adapters) == 2
    assert plus.refine is not None and len(plus.adapters) == len(plus.sam.block_widths)


def test_variant_starts_as_the_paper_network_and_learns_a_residual():
    paper, plus = _pair()
    x = torch.randn(2, 4, 32, 32)
    torch.testing.assert_close(plus(x), paper(x))  # zero-initialised adapters and refinement output
    plus(x).square().mean().backward()
    assert plus.refine.out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in plus.sam.image_encoder.parameters())  # encoder stays frozen


def test_variant_is_registered_as_an_optional_sam_method():
    from nnunet_sam_adapter.trainers.sam_trainers import SAMCrossModalPlusTrainer, SAMCrossModalTrainer

    assert VARIANT_METHODS == ("ours_plus",) and METHODS["ours_plus"].is_sam
    assert SAMCrossModalPlusTrainer.method == "ours_plus" and SAMCrossModalTrainer.method == "ours"
