"""The 3D cross-modality network (issue #18, method ours_3d): at initialisation it equals the paper's 2D
network on every slice; its cross-slice adapters handle both token layouts, train from the first step and,
once non-zero, let a slice see its neighbours."""
import pytest
import torch

from nnunet_sam_adapter.model.adapter import CrossSliceAdapter
from nnunet_sam_adapter.model.network import SAMCrossModal3DNetwork, SAMCrossModalNetwork

from test_network import randomize_adapters, randomize_frozen


def twin_networks(backbone="tiny", input_size=64, adapter_depth=2, **kwargs):
    """The 2D network and the 3D one built from the same seed, fp32 pinned (autocast off), with random
    frozen position tensors and non-zero cross-modality adapters (so the comparison exercises them); the
    3D network gets every 2D weight, so only its cross-slice adapters (zero at init) are its own."""
    kwargs = {"autocast": "off", **kwargs}
    torch.manual_seed(0)
    net2d = randomize_frozen(SAMCrossModalNetwork(4, 2, backbone, input_size, adapter_depth, **kwargs))
    randomize_adapters(net2d)
    torch.manual_seed(0)
    net3d = SAMCrossModal3DNetwork(4, 2, backbone, input_size, adapter_depth, **kwargs)
    missing, unexpected = net3d.load_state_dict(net2d.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("slice_adapters.") for key in missing)
    return net2d.eval(), net3d.eval()


def slice_by_slice(net2d, x):
    """The 2D network on each slice of (B, C, D, S, S) -> (B, K, D, S, S)."""
    return torch.stack([net2d(x[:, :, d]) for d in range(x.shape[2])], dim=2)


@pytest.mark.parametrize("batched_streams", [True, False])
def test_at_init_the_3d_network_equals_the_2d_one_on_every_slice(batched_streams):
    net2d, net3d = twin_networks(batched_streams=batched_streams)
    x = torch.randn(2, 4, 5, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = slice_by_slice(net2d, x), net3d(x)
    assert got.shape == (2, 2, 5, 64, 64) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    # The property is the cross-slice adapters' zero init: with any of them non-zero the slices differ.
    with torch.no_grad():
        net3d.slice_adapters[0].conv.weight.normal_(0, 0.1)
        changed = net3d(x)
    assert (changed - expected).abs().max() > 1e-3


def test_cross_slice_adapters_train_from_the_first_step_and_mix_adjacent_slices():
    _, net3d = twin_networks()
    net3d.train()
    x = torch.randn(1, 4, 4, 64, 64, generator=torch.Generator().manual_seed(5))
    net3d(x).square().mean().backward()
    for adapter in net3d.slice_adapters:  # zero weights, non-zero gradient (like the cross-modality adapters)
        assert adapter.conv.weight.grad is not None and adapter.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net3d.sam.image_encoder.parameters())  # the encoder stays frozen

    # Non-zero adapters: changing slice 0 changes slice 1's output (neighbour), at init it does not.
    net3d.eval()
    y = x.clone()
    y[:, :, 0] += 1.0
    with torch.no_grad():
        assert torch.equal(net3d(x)[:, :, 1:], net3d(y)[:, :, 1:])
        for adapter in net3d.slice_adapters:
            adapter.conv.weight.normal_(0, 0.1)
        out_x, out_y = net3d(x), net3d(y)
    assert (out_x[:, :, 1] - out_y[:, :, 1]).abs().max() > 1e-4
    assert out_x.shape == (1, 2, 4, 64, 64)


def test_cross_slice_adapter_is_the_same_on_vit_and_tinyvit_token_layouts():
    torch.manual_seed(0)
    adapter = CrossSliceAdapter(8, kernel=(3, 3, 3))
    with torch.no_grad():
        adapter.conv.weight.normal_()
        adapter.conv.bias.normal_()
    grid = torch.randn(2 * 3, 4, 4, 8)  # (B*D, h, w, c): SAM ViT blocks
    tokens = grid.reshape(6, 16, 8)     # (B*D, L, c): TinyViT blocks
    out_grid, out_tokens = adapter(grid, 3), adapter(tokens, 3)
    assert out_grid.shape == grid.shape and out_tokens.shape == tokens.shape
    torch.testing.assert_close(out_tokens, out_grid.reshape(6, 16, 8))
    # stacks do not leak into each other: stack 1 (images 3-5) does not depend on stack 0
    other = grid.clone()
    other[:3] += 1
    torch.testing.assert_close(adapter(other, 3)[3:], out_grid[3:])
    # (3, 1, 1): purely through-plane
    through = CrossSliceAdapter(8, kernel=(3, 1, 1))
    assert through.conv.weight.shape == (8, 1, 3, 1, 1)
    with pytest.raises(ValueError, match="odd"):
        CrossSliceAdapter(8, kernel=(2, 1, 1))
    with pytest.raises(ValueError, match="stacks of 4"):
        adapter(grid, 4)


def test_the_3d_network_refuses_2d_input_and_counts_its_extra_parameters():
    from nnunet_sam_adapter.model.parameters import parameter_report

    net2d, net3d = twin_networks()
    with pytest.raises(ValueError, match=r"\(B, 4, D, 64, 64\)"):
        net3d(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="missing a modality"):
        net3d(torch.randn(1, 2, 3, 64, 64))
    extra = parameter_report(net3d)["trainable"] - parameter_report(net2d)["trainable"]
    width = net3d.sam.block_widths[0]
    assert extra == len(net3d.slice_adapters) * (27 * width + width) and len(net3d.slice_adapters) == 4
