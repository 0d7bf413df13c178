"""torch.compile of the SAM networks the way nnU-Net compiles them (issue 9), on CPU.

nnU-Net's `nnUNetTrainer.initialize` builds the network, moves it with `.to(device)` and then calls
`torch.compile(self.network)` (on CUDA, unless nnUNet_compile is false; it never compiles on CPU).
These tests do the same on CPU:

- dynamo captures each network's whole forward as ONE graph (no graph break anywhere, so none inside
  the encoder loop): `torch._dynamo.explain`, tiny backbone for ours (batched and two passes), early
  fusion and a single modality, plus LiteMedSAM for ours;
- a `fullgraph=True` compile (raises on any graph break) runs forward + backward, and its logits and
  trainable-parameter gradients match eager within rtol 1e-4 / atol 1e-5 (float32 reordering only).
  The backend is "aot_eager": the same dynamo capture and AOTAutograd joint forward/backward graph that
  Inductor receives, run with eager kernels. Inductor's CPU code generation took 305 s for the tiny
  network on this shared 2-core machine, too long for `make test`; `make gpu-check` trains with
  nnU-Net's real Inductor compile on CUDA.
"""
import pytest
import torch

from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork


def tiny(kind: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs.setdefault("autocast", "off")
    if kind == "ours_batched":
        return SAMCrossModalNetwork(4, 2, "tiny", 32, 2, batched_streams=True, **kwargs)
    if kind == "ours_two_passes":
        return SAMCrossModalNetwork(4, 2, "tiny", 32, 2, batched_streams=False, **kwargs)
    return SAMSingleStreamNetwork(4, 2, "tiny", 32, channels=None if kind == "early_fusion" else [3], **kwargs)


@pytest.mark.parametrize("kind", ["ours_batched", "ours_two_passes", "early_fusion", "single_modality"])
def test_forward_is_one_graph_without_breaks(kind):
    torch._dynamo.reset()
    net = tiny(kind).to("cpu").train()
    explanation = torch._dynamo.explain(net)(torch.randn(2, 4, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_litemedsam_forward_is_one_graph_without_breaks():
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, "litemedsam", 64, 5, autocast="off").to("cpu").train()
    explanation = torch._dynamo.explain(net)(torch.randn(2, 4, 64, 64))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_forward_backward_matches_eager():
    torch._dynamo.reset()
    net = tiny("ours_batched").to("cpu").train()
    with torch.no_grad():  # non-zero adapters so their gradients and outputs matter
        for adapter in net.adapters:
            adapter.fuse.weight.normal_(0, 0.05)
    x = torch.randn(2, 4, 32, 32)

    def logits_and_grads(model):
        net.zero_grad(set_to_none=True)
        logits = model(x)
        logits.square().mean().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}

    eager = logits_and_grads(net)
    compiled = logits_and_grads(torch.compile(net, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
    assert compiled[1].keys() == eager[1].keys() and any(k.startswith("adapters") for k in eager[1])
    for name in eager[1]:
        torch.testing.assert_close(compiled[1][name], eager[1][name], rtol=1e-4, atol=1e-5, msg=name)
    assert all(p.grad is None for p in net.sam.image_encoder.parameters())
