"""Execution policy: SDPA attention equals SAM's, 'auto' resolution per device, kwargs validation,
bf16 autocast path."""
import copy
import inspect
import json

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, Block

from nnunet_sam_adapter.model import execution
from nnunet_sam_adapter.model.attention import SDPAAttention, use_sdpa_attention
from nnunet_sam_adapter.model.folded_attention import FoldedBlock, use_folded_blocks
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def assert_same_function(reference, other, x, parameters, output_tolerance) -> torch.Tensor:
    """`other` computes `reference`: outputs within `output_tolerance`, gradients w.r.t. x and `parameters(module)`
    within 1e-4 (relative to their largest value); returns the reference output."""
    expected, got = reference(x), other(x)
    assert relative_error(got, expected) < output_tolerance
    upstream = torch.randn_like(expected)
    grads_expected = torch.autograd.grad(expected, [x, *parameters(reference)], upstream)
    grads_got = torch.autograd.grad(got, [x, *parameters(other)], upstream)
    for g_got, g_expected in zip(grads_got, grads_expected):
        assert relative_error(g_got, g_expected) < 1e-4
    return expected


@pytest.mark.parametrize("dim, heads, grid, batch", [(768, 12, 14, 3), (768, 12, 16, 2), (64, 2, 5, 2), (64, 4, 7, 1)])
def test_sdpa_attention_equals_sam_attention_fp32(dim, heads, grid, batch):
    """vit_b windowed (14x14) and global (16x16 at 256 input) shapes, and odd small ones; 1e-4 relative."""
    torch.manual_seed(0)
    sam = Attention(dim, heads, qkv_bias=True, use_rel_pos=True, input_size=(grid, grid))
    with torch.no_grad():  # SAM zero-initialises rel_pos: give it values
        sam.rel_pos_h.normal_(0, 0.5)
        sam.rel_pos_w.normal_(0, 0.5)
    sdpa = copy.deepcopy(sam)
    use_sdpa_attention(sdpa, True)
    assert isinstance(sdpa, SDPAAttention) and sdpa.state_dict().keys() == sam.state_dict().keys()
    x = torch.randn(batch, grid, grid, dim, requires_grad=True)
    expected = assert_same_function(sam, sdpa, x, lambda m: [m.rel_pos_h, m.qkv.weight], 1e-4)
    use_sdpa_attention(sdpa, False)  # back to SAM's own forward
    assert torch.equal(sdpa(x), expected)


@pytest.mark.parametrize("dim, heads, window, grid, batch", [
    (768, 12, 14, 16, 2),  # vit_b at 256: 16x16 grid in 14x14 windows (full, right, bottom, corner regions)
    (768, 12, 0, 16, 1),  # vit_b's global blocks at 256
    (64, 2, 4, 8, 2),  # grid a multiple of the window: no padding
    (64, 4, 5, 7, 3),  # odd sizes
])
def test_folded_block_equals_sam_block_fp32(dim, heads, window, grid, batch):
    """FoldedBlock (rel-pos folded into q.k, no padded queries) computes SAM's Block: outputs and gradients."""
    torch.manual_seed(0)
    sam = Block(dim, heads, qkv_bias=True, use_rel_pos=True, window_size=window,
                input_size=(window, window) if window else (grid, grid))
    with torch.no_grad():  # SAM zero-initialises rel_pos; a zero qkv bias would hide the padded keys
        sam.attn.rel_pos_h.normal_(0, 0.5)
        sam.attn.rel_pos_w.normal_(0, 0.5)
        sam.attn.qkv.bias.normal_(0, 1.0)
    folded = copy.deepcopy(sam)
    use_folded_blocks(folded, True)
    assert isinstance(folded, FoldedBlock) and folded.state_dict().keys() == sam.state_dict().keys()
    x = torch.randn(batch, grid, grid, dim, requires_grad=True)
    params = lambda block: [block.attn.rel_pos_h, block.attn.rel_pos_w, block.attn.qkv.weight, block.attn.qkv.bias]
    expected = assert_same_function(sam, folded, x, params, 1e-5)
    use_folded_blocks(folded, False)  # back to SAM's own forward
    assert torch.equal(folded(x), expected)


def test_network_folded_equals_sam_attention_under_bf16():
    """The CPU default path: folded vs SAM attention under bf16 autocast differ by bf16 rounding only."""
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 3, "tiny", 96, adapter_depth=3, autocast="bf16", attention="sam").eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or "adapters" in name or "qkv.bias" in name:
                p.normal_(0, 0.1)
    x = torch.randn(2, 4, 96, 96)  # tiny: 6x6 grid in 4x4 windows (padded)
    with torch.no_grad():
        sam_out = net(x)
        net.attention = "folded"
        assert all(isinstance(m, FoldedBlock) and m.use_folded for m in net.sam.image_encoder.blocks)
        folded_out = net(x)
        net.autocast = "off"
        fp32_out = net(x)
    assert relative_error(folded_out, fp32_out) < 0.05 and relative_error(sam_out, fp32_out) < 0.05


def test_network_sdpa_equals_sam_attention_outputs_and_grads():
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 3, "tiny", 64, adapter_depth=3, autocast="off", attention="sam").train()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or "adapters" in name:
                p.normal_(0, 0.1)
    x = torch.randn(2, 4, 64, 64)

    def run():
        net.zero_grad(set_to_none=True)
        logits = net(x)
        logits.square().mean().backward()
        return logits.detach(), {n: p.grad for n, p in net.named_parameters() if p.requires_grad}

    sam_out, sam_grads = run()
    assert net.sam.attention == "sam"
    net.attention = "sdpa"
    sdpa_out, sdpa_grads = run()
    assert net.sam.attention == "sdpa"
    assert relative_error(sdpa_out, sam_out) < 1e-4
    scale = max(g.abs().max() for g in sam_grads.values())
    for name in sam_grads:  # key biases get ~0 gradient (softmax shift invariance): absolute floor for those
        torch.testing.assert_close(sdpa_grads[name], sam_grads[name], rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_auto_resolution(monkeypatch):
    monkeypatch.delenv(execution.NATIVE_BF16_OVERRIDE_ENV, raising=False)  # the CPU flags decide here
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert execution.resolve_attention("auto", cuda) == "sdpa"
    assert execution.resolve_attention("auto", cpu) == "folded"
    assert execution.resolve_attention("auto", mps) == "sam"
    assert execution.resolve_attention("sam", cpu) == "sam"
    monkeypatch.setattr(execution, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert execution.resolve_autocast("auto", cpu) is None  # emulated bf16 would be slower than fp32
    monkeypatch.setattr(execution, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert execution.resolve_autocast("auto", cpu) is torch.bfloat16
    monkeypatch.setattr(execution, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert execution.resolve_autocast("auto", cpu) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert execution.resolve_autocast("auto", cuda) is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert execution.resolve_autocast("auto", cuda) is torch.bfloat16
    assert execution.resolve_autocast("off", cuda) is None
    assert execution.resolve_autocast("fp16", cpu) is torch.float16
    assert execution.resolve_autocast("auto", mps) is None
    assert not execution.resolve_compile("auto", cpu) and not execution.resolve_compile("auto", cuda)
    assert execution.resolve_compile("on", cpu)


def test_native_bf16_override_decides_the_cpu_default(monkeypatch):
    """$NNSAM_CPU_NATIVE_BF16 lets one machine run the suite as a CPU with and without native bf16."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(execution, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setenv(execution.NATIVE_BF16_OVERRIDE_ENV, "1")
    assert execution.resolve_autocast("auto", cpu) is torch.bfloat16
    assert SAMCrossModalNetwork(4, 2, "tiny", 32, 1).execution_plan("cpu")["autocast"] == "bf16"
    monkeypatch.setattr(execution, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setenv(execution.NATIVE_BF16_OVERRIDE_ENV, "0")
    assert execution.resolve_autocast("auto", cpu) is None
    monkeypatch.setenv(execution.NATIVE_BF16_OVERRIDE_ENV, "yes")
    with pytest.raises(ValueError, match="NNSAM_CPU_NATIVE_BF16 must be 1 or 0"):
        execution.resolve_autocast("auto", cpu)


@pytest.mark.parametrize("cls", [SAMCrossModalNetwork, SAMSingleStreamNetwork])
def test_execution_kwargs_defaults_are_json_and_auto(cls):
    parameters = inspect.signature(cls).parameters
    defaults = {name: parameters[name].default for name in ("attention", "autocast", "compile", "checkpoint_blocks")}
    assert defaults == {"attention": "auto", "autocast": "auto", "compile": "auto", "checkpoint_blocks": False}
    json.dumps(defaults)


@pytest.mark.parametrize("kwargs, message", [
    ({"attention": "flash"}, "attention must be one of"),
    ({"autocast": "fp8"}, "autocast must be one of"),
    ({"compile": "max-autotune"}, "compile must be one of"),
])
def test_bad_execution_kwargs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAMCrossModalNetwork(4, 2, "tiny", 32, 1, **kwargs)


def test_compile_accepts_booleans_from_plans():
    assert SAMCrossModalNetwork(4, 2, "tiny", 32, 1, compile=False).compile == "off"
    assert SAMSingleStreamNetwork(4, 2, "tiny", 32, compile=True).compile == "on"


def test_bf16_autocast_close_to_fp32_and_frozen_encoder_still_frozen():
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, "tiny", 64, adapter_depth=2, autocast="off").train()
    x = torch.randn(2, 4, 64, 64)
    fp32 = net(x)
    net.autocast = "bf16"
    bf16 = net(x)
    assert bf16.dtype == torch.float32  # logits handed to nnU-Net's loss in fp32
    assert relative_error(bf16, fp32) < 0.05
    bf16.square().mean().backward()
    assert all(p.grad is None for p in net.sam.image_encoder.parameters())
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.adapters.parameters())


def test_execution_plan_reports_resolution():
    net = SAMCrossModalNetwork(4, 2, "tiny", 32, 1, attention="sam", autocast="fp16", compile="off")
    assert net.execution_plan("cpu") == {"attention": "sam", "autocast": "fp16", "compile": False,
                                         "batched_streams": False}
    assert net.execution_plan("cuda")["batched_streams"] is True  # 'auto': batched on CUDA (measured on an H200)
    assert SAMCrossModalNetwork(4, 2, "tiny", 32, 1, batched_streams=True).execution_plan("cpu")["batched_streams"]


def test_batched_streams_auto_picks_two_passes_on_cpu():
    """Two passes on CPU (the auto default; execution.resolve_batched_streams says what was measured)."""
    net = SAMCrossModalNetwork(4, 2, "tiny", 32, 1)
    assert net.batched_streams == "auto" and not net.execution_plan()["batched_streams"]
    calls = []
    net.sam.embed = lambda images: calls.append(images.shape[0]) or type(net.sam).embed(net.sam, images)
    net(torch.randn(3, 4, 32, 32))
    assert calls == [3, 3]  # one embed per stream, not one 2B batch
    with pytest.raises(ValueError, match="batched_streams must be one of"):
        SAMCrossModalNetwork(4, 2, "tiny", 32, 1, batched_streams="sometimes")


def test_litemedsam_refuses_sdpa_and_reports_its_own_attention():
    with pytest.raises(ValueError, match="attention='sdpa' needs a SAM ViT backbone"):
        SAMSingleStreamNetwork(4, 2, "litemedsam", 64, attention="sdpa", autocast="off")
    net = SAMSingleStreamNetwork(4, 2, "litemedsam", 64, autocast="off")
    assert net.execution_plan("cuda")["attention"] == "tinyvit" == net.execution_plan("cpu")["attention"]


def test_attention_kernel_is_chosen_when_moved_not_in_forward(monkeypatch):
    """The modules are re-classed at build and on .to(), never in forward (nnU-Net compiles forward)."""
    net = SAMCrossModalNetwork(4, 2, "tiny", 32, 1, autocast="off")
    attentions = [m for m in net.modules() if isinstance(m, Attention)]
    blocks = list(net.sam.image_encoder.blocks)
    assert attentions and not any(getattr(m, "use_sdpa", False) for m in attentions)  # CPU: folded blocks
    assert all(isinstance(b, FoldedBlock) and b.use_folded for b in blocks)
    # pretend the parameters moved to CUDA: the next _apply resolves 'auto' for it -> SDPA
    monkeypatch.setattr(type(net), "_parameter_device", lambda self: torch.device("cuda"))
    net.to(torch.float32)
    assert all(isinstance(m, SDPAAttention) and m.use_sdpa for m in attentions)
    assert not any(b.use_folded for b in blocks)
    monkeypatch.undo()
    net.to("cpu")
    assert not any(m.use_sdpa for m in attentions) and all(b.use_folded for b in blocks)
    classes = [type(m) for m in net.modules()]
    net(torch.randn(1, 4, 32, 32))
    assert [type(m) for m in net.modules()] == classes
