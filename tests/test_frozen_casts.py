"""Cached autocast copies of the frozen encoder's weights (model/frozen_casts.py): same outputs as autocast's own
casts, rebuilt when the weights change, never used for trainable weights while autograd records, nor outside
autocast. bf16 is pinned (autocast explicitly on), whatever the CPU's default."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_sam_adapter.model.frozen_casts import (
    CachedCastConv2d,
    CachedCastLinear,
    clear_cached_casts,
    use_cached_casts,
)
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork


def frozen_pair():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(1), nn.LazyLinear(5))
    plain(torch.randn(1, 3, 6, 6))
    plain.requires_grad_(False)
    cached = nn.Sequential(*(m for m in __import__("copy").deepcopy(plain)))
    use_cached_casts(cached)
    assert isinstance(cached[0], CachedCastConv2d) and isinstance(cached[2], CachedCastLinear)
    assert cached.state_dict().keys() == plain.state_dict().keys()
    return plain, cached


def test_cached_casts_give_autocasts_outputs_and_follow_weight_changes():
    plain, cached = frozen_pair()
    x = torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(cached(x), plain(x))
        assert cached[2].__dict__["_cast_cache"][1].dtype == torch.bfloat16  # a copy is kept
        assert torch.equal(cached(x), plain(x))  # second call: from the cache
        new_weights = {k: v + 1.0 for k, v in plain.state_dict().items()}
        plain.load_state_dict(new_weights)
        cached.load_state_dict(new_weights)  # in-place copy: the version counter moves, the copy is rebuilt
        assert torch.equal(cached(x), plain(x))
    assert torch.equal(cached(x), plain(x))  # outside autocast: fp32 parameters, no copy used
    clear_cached_casts(cached)
    assert "_cast_cache" not in cached[2].__dict__


def test_trainable_weights_are_cached_only_while_no_gradient_is_recorded():
    plain, cached = frozen_pair()
    cached.requires_grad_(True)
    x = torch.randn(1, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached(x).sum().backward()
    assert "_cast_cache" not in cached[2].__dict__ and cached[2].weight.grad is not None
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():  # validation / prediction
        assert torch.equal(cached(x), plain(x))
    assert cached[2].__dict__["_cast_cache"][1].dtype == torch.bfloat16
    torch.optim.SGD(cached.parameters(), lr=1.0).step()  # an in-place update: the copy is stale
    with torch.no_grad():
        plain.load_state_dict(cached.state_dict())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(cached(x), plain(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached(x).sum().backward()  # the next training step frees the copy (an optimiser step would stale it)
    assert "_cast_cache" not in cached[2].__dict__


def test_fine_tuned_encoder_predicts_from_cached_copies():
    """ours_plus_ft (train_encoder): its encoder's weights require grad also when nnU-Net predicts with it."""
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, "tiny", 32, adapter_depth=2, autocast="bf16", train_encoder=True).eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.inference_mode():
        predicted = net(x)
    assert any("_cast_cache" in m.__dict__ for m in net.sam.image_encoder.modules())
    logits = net.train()(x)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in net.sam.image_encoder.parameters())
    assert torch.equal(logits.detach(), predicted)


def test_copy_made_while_predicting_serves_a_later_training_step():
    """nnU-Net predicts under inference_mode; a copy made there must not break the next backward."""
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, "tiny", 32, adapter_depth=2, autocast="bf16")
    x = torch.randn(2, 4, 32, 32)
    with torch.inference_mode():
        predicted = net.eval()(x)
    assert any("_cast_cache" in m.__dict__ for m in net.sam.image_encoder.modules())
    logits = net.train()(x)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in net.adapters.parameters())
    assert torch.equal(logits.detach(), predicted)  # same function in both modes (frozen encoder in eval)


@pytest.mark.parametrize("backbone, size", [("tiny", 32), ("litemedsam", 64)])
def test_network_outputs_unchanged_by_the_cache(backbone, size, monkeypatch):
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, backbone, size, adapter_depth=2, autocast="bf16").eval()
    x = torch.randn(2, 4, size, size)
    with torch.no_grad():
        with_cache = net(x)
        assert any("_cast_cache" in m.__dict__ for m in net.sam.image_encoder.modules())
        monkeypatch.setattr("nnunet_sam_adapter.model.frozen_casts._cast_weights", lambda m: (m.weight, m.bias))
        without = net(x)
    assert torch.equal(with_cache, without)
