"""Small SAM-format checkpoints for tests (the official SAM files cannot be downloaded here).

`write_tiny_sam_checkpoint` builds segment_anything's own `Sam` model (not our backbone) with the
`tiny` ViT config at SAM's pretraining resolution 1024, so key names and shapes are exactly those of
an official checkpoint: `image_encoder.pos_embed` (1, 64, 64, 32), global-attention `rel_pos_h/w`
(127, head_dim), windowed ones (2 * window - 1, head_dim), `mask_decoder.*` with 4 mask tokens,
4 hypernetwork MLPs and the IoU head, `prompt_encoder.*` with point embeddings. Every tensor is
filled with seeded random values (SAM zero-initialises pos_embed and rel_pos, which would make
resizing tests vacuous).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from nnunet_sam_adapter.model.backbones import VIT_CONFIGS

SAM_PRETRAIN_SIZE = 1024


def tiny_sam_state_dict(seed: int = 0, embed_dim: int | None = None, randomize: bool = True) -> dict[str, torch.Tensor]:
    """State dict of a `tiny`-config SAM at 1024 resolution; `embed_dim` overrides the width (to fake
    a checkpoint of another variant). `randomize=False` keeps segment_anything's own initialisation
    (unit LayerNorms, small linear weights): a trainable starting point for end-to-end runs."""
    torch.manual_seed(seed)
    config = VIT_CONFIGS["tiny"]
    embed = embed_dim or config.embed_dim
    grid = SAM_PRETRAIN_SIZE // config.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=SAM_PRETRAIN_SIZE, patch_size=config.patch_size, embed_dim=embed, depth=config.depth,
            num_heads=config.num_heads, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6),
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size, out_chans=config.prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=config.prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(SAM_PRETRAIN_SIZE, SAM_PRETRAIN_SIZE), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer_dim=config.prompt_dim,
            transformer=TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_dim,
                                          mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_heads),
            iou_head_depth=3, iou_head_hidden_dim=config.prompt_dim),
    )
    generator = torch.Generator().manual_seed(seed)
    state = sam.state_dict()
    if not randomize:
        return state
    return {key: (torch.randn(value.shape, generator=generator) * 0.05
                  if value.is_floating_point() and not key.startswith("pixel_") else value)
            for key, value in state.items()}


def write_tiny_sam_checkpoint(path: str | Path, seed: int = 0, embed_dim: int | None = None,
                              randomize: bool = True) -> Path:
    """Writes a tiny SAM-format checkpoint (a plain state_dict, like sam_vit_b_01ec64.pth) -> path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam_state_dict(seed, embed_dim, randomize), path)
    return path
