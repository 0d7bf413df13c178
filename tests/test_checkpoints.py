"""SAM checkpoint loading: resizing to the input size, mask-token mapping, and every bad-file error."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from nnunet_sam_adapter.model.backbones import VIT_CONFIGS, build_backbone
from nnunet_sam_adapter.model.checkpoints import (
    SAMCheckpointError,
    describe_checkpoint,
    load_pretrained_or_warn,
    load_sam_checkpoint,
)
from sam_checkpoint_factory import tiny_sam_state_dict, write_tiny_sam_checkpoint

TINY = VIT_CONFIGS["tiny"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return write_tiny_sam_checkpoint(tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth")


@pytest.fixture(scope="module")
def original(tiny_checkpoint):
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("input_size", [64, 32])
def test_loads_and_resizes_to_input_size(tiny_checkpoint, original, input_size):
    backbone = build_backbone("tiny", input_size, num_outputs=6)
    info = load_sam_checkpoint(backbone, tiny_checkpoint)
    state = backbone.state_dict()
    grid = input_size // TINY.patch_size
    assert info["variant"] == "tiny" and info["path"] == str(tiny_checkpoint)

    # pos_embed: bicubic from the 64x64 grid, computed here independently (channels-first interpolation)
    pe = original["image_encoder.pos_embed"]
    expected = F.interpolate(pe.permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic",
                             align_corners=False).permute(0, 2, 3, 1)
    assert state["image_encoder.pos_embed"].shape == (1, grid, grid, TINY.embed_dim)
    torch.testing.assert_close(state["image_encoder.pos_embed"], expected)

    for block in range(TINY.depth):
        for axis in "hw":
            key = f"image_encoder.blocks.{block}.attn.rel_pos_{axis}"
            source = original[key]
            if block in TINY.global_attn_indexes:  # 127 = 2*64-1 -> 2*grid-1, linear like SAM's get_rel_pos
                assert source.shape[0] == 127
                expected = F.interpolate(source.t()[None], size=2 * grid - 1, mode="linear")[0].t()
                torch.testing.assert_close(state[key], expected)
                assert key in info["resized"]
            else:  # windowed blocks: 2*window-1 at any input size
                assert torch.equal(state[key], source)
                assert key not in info["resized"]

    # 6 outputs from SAM's 4 mask tokens / hypernetwork MLPs: output k <- pretrained k mod 4
    tokens = state["mask_decoder.mask_tokens.weight"]
    assert tokens.shape[0] == 6
    for k in range(6):
        assert torch.equal(tokens[k], original["mask_decoder.mask_tokens.weight"][k % 4])
        for name in ("layers.0.weight", "layers.2.bias"):
            assert torch.equal(state[f"mask_decoder.output_hypernetworks_mlps.{k}.{name}"],
                               original[f"mask_decoder.output_hypernetworks_mlps.{k % 4}.{name}"])
    assert not any("iou_prediction_head" in key for key in state)
    torch.testing.assert_close(state["mask_decoder.iou_token.weight"], original["mask_decoder.iou_token.weight"])
    torch.testing.assert_close(state["prompt.no_mask_embed.weight"], original["prompt_encoder.no_mask_embed.weight"])
    torch.testing.assert_close(state["image_encoder.blocks.2.mlp.lin1.weight"],
                               original["image_encoder.blocks.2.mlp.lin1.weight"])
    assert not backbone.image_encoder.training
    assert not any(p.requires_grad for p in backbone.image_encoder.parameters())


def test_loaded_backbone_runs(tiny_checkpoint):
    backbone = build_backbone("tiny", 32, num_outputs=2)
    load_sam_checkpoint(backbone, tiny_checkpoint)
    logits = backbone.decode(backbone.encode(torch.randn(2, 3, 32, 32)))
    assert logits.shape == (2, 2, 8, 8) and torch.isfinite(logits).all()


def _assert_error_names(path, backbone, *fragments):
    with pytest.raises(SAMCheckpointError) as error:
        load_sam_checkpoint(backbone, path)
    message = str(error.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file(tmp_path):
    _assert_error_names(tmp_path / "nope.pth", build_backbone("tiny", 32), "does not exist")


@pytest.mark.parametrize("content", ["dict_without_sam_keys", "plain_tensor", "text_file", "nested_non_tensor"])
def test_not_a_sam_checkpoint(tmp_path, content):
    path = tmp_path / f"{content}.pth"
    if content == "dict_without_sam_keys":
        torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    elif content == "plain_tensor":
        torch.save(torch.zeros(3), path)
    elif content == "nested_non_tensor":
        torch.save({"epoch": 3, "weights": {"a": torch.zeros(1)}}, path)
    else:
        path.write_text("this is not a checkpoint\n")
    expected = "truncated or corrupt" if content == "text_file" else "not a SAM checkpoint"
    _assert_error_names(path, build_backbone("tiny", 32), expected)


def test_wrong_variant_other_width(tmp_path):
    path = write_tiny_sam_checkpoint(tmp_path / "embed48.pth", embed_dim=48)
    _assert_error_names(path, build_backbone("tiny", 32), "ViT (embed 48, depth 4)", "tiny")


def test_wrong_variant_vit_l_for_vit_b(tmp_path):
    # Only the keys describe_checkpoint looks at, at vit_l's shapes (a real vit_l file is 1.2 GB).
    fake = {"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 1, 1),
            **{f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(24)},
            "mask_decoder.mask_tokens.weight": torch.zeros(4, 1)}
    assert describe_checkpoint(fake) == "vit_l"
    path = tmp_path / "sam_vit_l_fake.pth"
    torch.save(fake, path)
    with torch.device("meta"):
        backbone = build_backbone("vit_b", 256)
    _assert_error_names(path, backbone, "vit_l", "vit_b", "sam_vit_b_01ec64.pth")


def test_truncated_file(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    _assert_error_names(path, build_backbone("tiny", 32), "truncated or corrupt")


def test_corrupt_bytes(tmp_path, tiny_checkpoint):
    data = bytearray(tiny_checkpoint.read_bytes())
    generator = torch.Generator().manual_seed(0)
    positions = torch.randint(0, len(data), (len(data) // 50,), generator=generator)
    for position in positions.tolist():  # scramble 2% of the bytes, headers included
        data[position] ^= 0xA5
    data[:64] = bytes(64)
    path = tmp_path / "corrupt.pth"
    path.write_bytes(bytes(data))
    _assert_error_names(path, build_backbone("tiny", 32), "truncated or corrupt")


def test_checkpoint_missing_weights(tmp_path):
    state = tiny_sam_state_dict()
    del state["image_encoder.blocks.2.mlp.lin1.weight"]
    path = tmp_path / "incomplete.pth"
    torch.save(state, path)
    _assert_error_names(path, build_backbone("tiny", 32), "lacks 1 weights", "blocks.2.mlp.lin1.weight")


def test_training_checkpoint_wrapped_in_model_key(tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": tiny_sam_state_dict(), "epoch": 7}, path)
    assert load_sam_checkpoint(build_backbone("tiny", 32), path)["variant"] == "tiny"


def test_no_checkpoint_refuses_unless_random_encoder_allowed(monkeypatch, capsys, tiny_checkpoint):
    monkeypatch.delenv("nnUNet_sam_checkpoint", raising=False)
    backbone = build_backbone("tiny", 32)
    with pytest.raises(SAMCheckpointError, match="--allow-random-encoder"):
        load_pretrained_or_warn(backbone, None, allow_random_encoder=False)
    with pytest.warns(UserWarning, match="RANDOM"):
        info = load_pretrained_or_warn(backbone, None, allow_random_encoder=True)
    assert info["path"] is None
    assert "WARNING" in capsys.readouterr().out

    monkeypatch.setenv("nnUNet_sam_checkpoint", str(tiny_checkpoint))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an available checkpoint loads without any warning
        assert load_pretrained_or_warn(backbone, None, allow_random_encoder=True)["path"] == str(tiny_checkpoint)
