"""Fast start of the paper's network (issue #22, docs/method.md "Fast start"): after the SAM weights are loaded,
the SAM trainers start every class output at the class prior (foreground probability `foreground_prior` on
every pixel) instead of the pretrained tokens' near-1 foreground probability; the architecture is the paper's."""

from __future__ import annotations

import types

import pytest
import torch

from nnunet_sam_adapter.model.checkpoints import load_sam_checkpoint
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork, init_class_prior
from nnunet_sam_adapter.trainers.sam_trainers import (
    SAMCrossModalPlusTrainer,
    SAMCrossModalTrainer,
    SAMEarlyFusionTrainer,
)
from optimizer_stand_in import optimizer_of
from sam_checkpoint_factory import write_tiny_sam_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_sam_checkpoint(tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth")


def _pretrained(checkpoint, num_classes: int = 2, single: bool = False) -> torch.nn.Module:
    """fp32 pinned: the prior is compared at 1e-5, whatever the CPU's autocast default (bf16 rounds log 0.01)."""
    torch.manual_seed(0)
    net = SAMSingleStreamNetwork(4, num_classes, "tiny", 32, autocast="off") if single else \
        SAMCrossModalNetwork(4, num_classes, "tiny", 32, adapter_depth=2, autocast="off")
    load_sam_checkpoint(net.sam, checkpoint)
    return net.train()


def _foreground_probability(net: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(torch.randn(3, 4, 32, 32) * 2).softmax(1)[:, 1:]


def _start(trainer: type, net: torch.nn.Module) -> list[str]:
    """The trainer's step after loading SAM weights (`start_at_class_prior`), on a stand-in trainer."""
    log: list[str] = []
    stand_in = types.SimpleNamespace(fast_start=trainer.fast_start, foreground_prior=trainer.foreground_prior,
                                     print_to_log_file=lambda *a: log.append(" ".join(map(str, a))))
    trainer.start_at_class_prior(stand_in, net)
    return log


@pytest.mark.parametrize("trainer", [SAMCrossModalTrainer, SAMCrossModalPlusTrainer, SAMEarlyFusionTrainer])
def test_paper_trainer_starts_every_pixel_at_the_foreground_prior(checkpoint, trainer):
    """What the trainers do by default: foreground probability = the prior (0.01) on every pixel of any input."""
    assert trainer.fast_start is True and trainer.foreground_prior == 0.01
    net = _pretrained(checkpoint, single=trainer is SAMEarlyFusionTrainer)
    if trainer is SAMCrossModalPlusTrainer:  # the ours_plus network (refinement head starts at identity)
        net = SAMCrossModalNetwork(4, 2, "tiny", 32, adapter_depth="all", refine_head=True, autocast="off")
        load_sam_checkpoint(net.sam, checkpoint)
    assert _start(trainer, net) and "fast start" in _start(trainer, net)[0]
    torch.testing.assert_close(_foreground_probability(net), torch.full((3, 1, 32, 32), 0.01), atol=1e-5, rtol=0)


def test_without_the_fast_start_the_pretrained_tokens_decide(checkpoint):
    """The problem (issue #22): SAM's tokens give background and foreground unequal, input-dependent logits."""
    net = _pretrained(checkpoint)
    off = types.new_class("Off", (SAMCrossModalTrainer,), exec_body=lambda ns: ns.update(fast_start=False))
    assert _start(off, net) == []
    p = _foreground_probability(net)
    assert (p - 0.01).abs().max() > 0.05
    assert net.sam.mask_decoder.class_bias.abs().max() == 0  # SAM's decoder has no output bias


@pytest.mark.parametrize("num_classes,prior", [(2, 0.05), (4, 0.01)])
def test_prior_for_several_classes_and_training_moves_it(checkpoint, num_classes, prior):
    net = _pretrained(checkpoint, num_classes)
    init_class_prior(net, prior)
    p = _foreground_probability(net)
    torch.testing.assert_close(p, torch.full_like(p, prior), atol=1e-5, rtol=0)
    # the K outputs are one pretrained token + a bias: the decoder is SAM's (same parameters, same shapes)
    decoder = net.sam.mask_decoder
    assert all(torch.equal(decoder.mask_tokens.weight[i], decoder.mask_tokens.weight[0]) for i in range(num_classes))
    # one training step breaks the symmetry between the classes
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:20, 8:20] = 1
    optimizer = torch.optim.AdamW([q for q in net.parameters() if q.requires_grad], lr=1e-3)
    torch.nn.functional.cross_entropy(net(torch.randn(2, 4, 32, 32)), target).backward()
    optimizer.step()
    assert _foreground_probability(net)[:, 0].std() > 0


def test_bad_prior_and_old_checkpoints(checkpoint):
    net = _pretrained(checkpoint, 3)
    for prior in (0.0, 0.5, -0.1):
        with pytest.raises(ValueError, match="foreground_prior"):
            init_class_prior(net, prior)
    # nnU-Net checkpoints saved before the class bias existed load with a zero bias (= their network)
    init_class_prior(net, 0.1)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("class_bias")}
    net.load_state_dict(state)
    assert net.sam.mask_decoder.class_bias.abs().max() == 0


def _optimizer_of(trainer: type, warmup_iterations: int = 0):
    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, "tiny", 32, adapter_depth=2)
    stand_in, scheduler = optimizer_of(trainer, net, warmup_iterations)
    return net, stand_in, scheduler


def test_mask_decoder_trains_at_a_tenth_of_the_paper_lr():
    """The second half of the fast start: mask decoder at 1e-4, adapters and stems at the paper's 1e-3,
    through nnU-Net's poly decay (which sets one lr for every group)."""
    assert SAMCrossModalTrainer.lr_scales == {"sam.mask_decoder.": 0.1}
    net, stand_in, scheduler = _optimizer_of(SAMCrossModalTrainer)
    decoder = {id(p) for p in net.sam.mask_decoder.parameters()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    for epoch in (0, 2):
        scheduler.step(epoch)
        poly = 1e-3 * (1 - epoch / 5) ** 0.9
        lr = {id(p): g["lr"] for g in stand_in.optimizer.param_groups for p in g["params"]}
        assert set(lr) == {id(p) for p in trainable}
        for p in trainable:
            assert lr[id(p)] == pytest.approx(poly * (0.1 if id(p) in decoder else 1.0))


def test_warmup_option_is_off_by_default_and_ramps_every_group():
    assert SAMCrossModalTrainer.warmup_iterations == 0
    _, stand_in, scheduler = _optimizer_of(SAMCrossModalTrainer, warmup_iterations=4)
    scheduler.step(0)
    seen = []
    for _ in range(5):
        SAMCrossModalTrainer.warm_up_learning_rate(stand_in)
        seen.append(sorted(g["lr"] for g in stand_in.optimizer.param_groups))
    assert seen[0] == pytest.approx([1e-4 / 4, 1e-3 / 4]) and seen[3] == seen[4] == pytest.approx([1e-4, 1e-3])
