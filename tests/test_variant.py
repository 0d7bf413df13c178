"""ours_plus (beyond the paper): adapters after every block + full-resolution refinement head; starts as the paper's
network, learns a residual, and the paper's defaults are unchanged."""
import pytest
import torch
import torch.nn.functional as F

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
    from nnunet_sam_adapter.trainers.sam_trainers import (SAMCrossModalPlusFineTuneTrainer, SAMCrossModalPlusTrainer,
                                                          SAMCrossModalPlusUp2Trainer, SAMCrossModalTrainer)

    assert VARIANT_METHODS == ("ours_plus", "ours_plus_up2", "ours_plus_ft") and METHODS["ours_plus"].is_sam
    assert SAMCrossModalPlusTrainer.method == "ours_plus" and SAMCrossModalTrainer.method == "ours"
    assert SAMCrossModalPlusUp2Trainer.method == "ours_plus_up2"
    assert METHODS["ours_plus_up2"].network_options == {**OURS_PLUS_OPTIONS, "encoder_scale": 2}
    assert SAMCrossModalPlusFineTuneTrainer.method == "ours_plus_ft"
    assert METHODS["ours_plus_ft"].network_options == {**OURS_PLUS_OPTIONS, "train_encoder": True}


def _scaled_pair():
    """ours_plus at S = 32 with the encoder at 2S (`encoder_scale=2`), and ours_plus at S = 64 with the same
    weights, to be fed images the test resizes itself (fp32 pinned)."""
    torch.manual_seed(0)
    up2 = SAMCrossModalNetwork(4, 2, backbone="tiny", input_size=32, autocast="off", encoder_scale=2,
                               **OURS_PLUS_OPTIONS)
    for module in (*up2.adapters, up2.refine.out):
        for p in module.parameters():  # non-zero adapters and refinement: the whole path counts
            torch.nn.init.normal_(p, std=0.02)
    at_2s = SAMCrossModalNetwork(4, 2, backbone="tiny", input_size=64, autocast="off", **OURS_PLUS_OPTIONS)
    at_2s.load_state_dict(up2.state_dict())
    return up2, at_2s


def test_encoder_scale_runs_the_encoder_on_the_resized_stream_images():
    up2, at_2s = _scaled_pair()
    x = torch.randn(2, 4, 32, 32)
    resized = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    embeddings = up2.encode_streams(x)
    assert embeddings[0].shape[-2:] == at_2s.encode_streams(resized)[0].shape[-2:] == (64 // 16,) * 2
    for got, want in zip(embeddings, at_2s.encode_streams(resized)):
        torch.testing.assert_close(got, want)  # stems then resize == resize then stems (both linear)
    logits = up2(x)
    assert logits.shape == (2, 2, 32, 32)  # nnU-Net's patch in, nnU-Net's patch out
    coarse = F.interpolate(at_2s.sam.decode(embeddings[0] + embeddings[1]), size=(32, 32), mode="bilinear",
                           align_corners=False)
    torch.testing.assert_close(logits, up2.refine(x, coarse))  # decoded at 2S, refined at S


def test_encoder_scale_keeps_the_patch_size_check_and_rejects_bad_scales():
    up2, _ = _scaled_pair()
    with pytest.raises(ValueError, match=r"expects input \(B, 4, 32, 32\)"):
        up2(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="encoder_scale must be a positive integer"):
        SAMCrossModalNetwork(4, 2, backbone="tiny", input_size=32, encoder_scale=0)


def test_fine_tuned_encoder_trains_in_eval_mode_at_a_tenth_of_the_lr():
    """ours_plus_ft: the encoder's weights get gradients and their own 0.1 x lr group, while the encoder stays
    in eval mode (SAM's normalisation statistics) and the prompt embedding stays frozen."""
    from optimizer_stand_in import optimizer_of

    from nnunet_sam_adapter.methods import OURS_PLUS_FT_OPTIONS
    from nnunet_sam_adapter.trainers.sam_trainers import SAMCrossModalPlusFineTuneTrainer

    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, backbone="tiny", input_size=32, autocast="off", **OURS_PLUS_FT_OPTIONS)
    net.train()
    assert not net.sam.image_encoder.training and net.refine.training
    net(torch.randn(2, 4, 32, 32)).square().mean().backward()
    encoder = list(net.sam.image_encoder.parameters())
    assert all(p.grad is not None for p in encoder) and any(p.grad.abs().sum() > 0 for p in encoder)
    assert all(not p.requires_grad for p in net.sam.prompt.parameters())
    stand_in, _ = optimizer_of(SAMCrossModalPlusFineTuneTrainer, net)
    lr = {id(p): g["lr"] for g in stand_in.optimizer.param_groups for p in g["params"]}
    assert all(lr[id(p)] == pytest.approx(1e-4) for p in (*encoder, *net.sam.mask_decoder.parameters()))
    assert all(lr[id(p)] == pytest.approx(1e-3) for p in (*net.adapters.parameters(), *net.refine.parameters()))
