"""Segmentation networks around one frozen SAM backbone (the classes nnU-Net plans name by dotted path).

    SAMCrossModalNetwork    the paper's method: T1-based and T2-based streams, cross-modality adapters
                            after the first n encoder blocks, summed embeddings, prompt-free decoder
    SAMCrossModal3DNetwork  beyond the paper (issue #18): the same on stacks of D slices (nnU-Net's 3D patch
                            (B, C, D, S, S)) with zero-initialised cross-slice adapters in the encoder
    SAMSingleStreamNetwork  the paper's baselines (Fig. 3): early fusion (all channels -> 3) or a single
                            modality (1 -> 3), same frozen encoder and decoder

The 2D networks take nnU-Net's input (B, C, S, S) and return logits (B, K, S, S) without softmax (nnU-Net
applies it); the 3D one takes (B, C, D, S, S) and returns (B, K, D, S, S). All are built from plans kwargs alone, with random encoder weights: pretrained weights are
loaded by the trainer (`checkpoints.load_sam_checkpoint`) and at predict time come from the nnU-Net
checkpoint, so no SAM file is needed to predict.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_sam_adapter.model.adapter import CrossModalityAdapter, CrossSliceAdapter
from nnunet_sam_adapter.model.backbones import SAMBackbone, build_backbone, upsample_logits
from nnunet_sam_adapter.model.frozen_casts import clear_cached_casts
from nnunet_sam_adapter.model.refinement import RefinementHead
from nnunet_sam_adapter.model.execution import (
    ATTENTION_CHOICES,
    AUTOCAST_CHOICES,
    BATCHED_STREAMS_CHOICES,
    COMPILE_CHOICES,
    autocast_context,
    check_choice,
    resolve_attention,
    resolve_autocast,
    resolve_batched_streams,
    resolve_compile,
)

_DTYPE_NAMES = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}

DEFAULT_STREAM_CHANNELS = ((0, 1), (2, 3))  # (T1, T1ce), (T2, FLAIR) in nnU-Net channel order


def make_stem(in_channels: int) -> nn.Conv2d:
    """Trainable 1x1 conv k -> 3 (SAM expects RGB; paper II.A "an initialized 1x1 convolutional layer").

    Initialised to the channel mean on every RGB channel: nnU-Net's z-scored input then reaches the
    encoder as a grey image with roughly the zero-mean unit-variance statistics of SAM's own
    normalised input, so the pretrained encoder starts on familiar input instead of random colours.
    """
    stem = nn.Conv2d(in_channels, 3, kernel_size=1)
    nn.init.constant_(stem.weight, 1.0 / in_channels)
    nn.init.zeros_(stem.bias)
    return stem


def make_sum_init_fusion(dim: int) -> nn.Conv2d:
    """1x1 conv 2d -> d over the concatenated embeddings, initialised to [I | I] (= their sum, the paper's
    fusion) so the `embedding_fusion='concat'` ablation starts as the paper's network."""
    fusion = nn.Conv2d(2 * dim, dim, kernel_size=1)
    with torch.no_grad():
        eye = torch.eye(dim).view(dim, dim, 1, 1)
        fusion.weight.copy_(torch.cat([eye, eye], dim=1))
        fusion.bias.zero_()
    return fusion


@torch.no_grad()
def init_class_prior(network: "_SAMSegmentationNetwork", foreground_prior: float, source_token: int = 0) -> None:
    """Fast start (issue #22; docs/method.md "Fast start"): every class's output starts at the class prior.

    SAM's mask decoder scores class k as (hypernetwork_k(mask token k) . upscaled features) and has no output
    bias. Loaded from SAM, background and foreground get different pretrained tokens whose logits differ by
    ~13 everywhere (foreground probability 1.000 on every pixel of the BraTS proxy). Here every class gets
    the same pretrained token and hypernetwork (`source_token`), so the K logits are equal whatever the
    input, and `class_bias` = log prior: softmax gives every foreground class `foreground_prior` and
    background the rest on every pixel. Only initial values change; the architecture is the paper's.
    """
    decoder = network.sam.mask_decoder
    k = decoder.mask_tokens.weight.shape[0]
    if not (0 < foreground_prior and (k - 1) * foreground_prior < 1):
        raise ValueError(f"foreground_prior must be in (0, 1/{k - 1}), got {foreground_prior}")
    source = decoder.output_hypernetworks_mlps[source_token].state_dict()
    for i in range(k):
        decoder.mask_tokens.weight[i].copy_(decoder.mask_tokens.weight[source_token])
        decoder.output_hypernetworks_mlps[i].load_state_dict(source)
    prior = torch.full((k,), float(foreground_prior))
    prior[0] = 1.0 - (k - 1) * foreground_prior
    decoder.class_bias.copy_(prior.log())


class _SAMSegmentationNetwork(nn.Module):
    """Shared parts: the SAM backbone (encoder frozen unless `train_encoder`; kept in eval mode), execution
    policy, decoding, input check.

    Subclasses implement `_logits(x)` and call `_settle_execution()` at the end of `__init__`. The
    execution settings ('auto' or explicit, see `execution`) are resolved for the device of the
    parameters when the network is built, after every `.to()` / `.cuda()` (`_apply`) and when a setting
    is assigned; `forward` only reads the result, so torch.compile (nnU-Net compiles the network on
    CUDA) traces a forward that mutates nothing.
    """

    input_channels: int

    def __init__(self, num_classes: int, backbone: str, input_size: int, checkpoint_blocks: bool,
                 deep_supervision: bool, attention: str, autocast: str, compile: str | bool,
                 encoder_scale: int = 1, train_encoder: bool = False):
        super().__init__()
        if deep_supervision:
            raise ValueError("SAM networks have a single output: train them with deep supervision off "
                             "(the SAM trainers do)")
        if int(encoder_scale) != encoder_scale or encoder_scale < 1:
            raise ValueError(f"encoder_scale must be a positive integer, got {encoder_scale}")
        self.backbone_name, self.input_size = backbone, int(input_size)
        self.encoder_scale = int(encoder_scale)
        self.checkpoint_blocks = bool(checkpoint_blocks)
        self.sam: SAMBackbone = build_backbone(backbone, self.input_size * self.encoder_scale, num_classes)
        self.sam.eval()
        if train_encoder:
            # Fine-tuned, yet kept in eval mode (`train`): its normalisation statistics stay SAM's, as a
            # batch of 4 patches would re-estimate them poorly; its weights train.
            self.sam.image_encoder.requires_grad_(True)
        self._settings = {}  # the unresolved kwargs (plain dict: not state, not a submodule)
        for name, value in (("attention", attention), ("autocast", autocast), ("compile", compile)):
            self._set_setting(name, value)

    # --- execution settings: assigned like attributes, resolved once per device

    _SETTING_CHOICES = {"attention": ATTENTION_CHOICES, "autocast": AUTOCAST_CHOICES,
                        "compile": COMPILE_CHOICES, "batched_streams": BATCHED_STREAMS_CHOICES}

    def _set_setting(self, name: str, value) -> None:
        value = check_choice(name, value, self._SETTING_CHOICES[name])
        if name == "attention" and value in ("sdpa", "folded") and value not in self.sam.attention_kinds:
            raise ValueError(f"attention={value!r} needs a SAM ViT backbone (vit_b/l/h, tiny); {self.backbone_name} "
                             f"has its own attention ({self.sam.attention_kinds[0]}): use 'auto' or 'sam'")
        self._settings[name] = value
        if "_execution" in self.__dict__:
            self._settle_execution()

    attention = property(lambda self: self._settings["attention"], lambda self, v: self._set_setting("attention", v))
    autocast = property(lambda self: self._settings["autocast"], lambda self, v: self._set_setting("autocast", v))
    compile = property(lambda self: self._settings["compile"], lambda self, v: self._set_setting("compile", v))

    def _parameter_device(self) -> torch.device:
        return next(self.parameters()).device

    def execution_plan(self, device: torch.device | str | None = None) -> dict:
        """What the settings resolve to on `device` (default: where the parameters are):
        {'attention', 'autocast', 'compile'} (+ 'batched_streams' for ours), all JSON-serialisable."""
        device = self._parameter_device() if device is None else torch.device(device)
        attention = resolve_attention(self.attention, device)
        plan = {"attention": attention if attention in self.sam.attention_kinds else self.sam.attention_kinds[0],
                "autocast": _DTYPE_NAMES[resolve_autocast(self.autocast, device)],
                "compile": resolve_compile(self.compile, device)}
        if "batched_streams" in self._settings:
            plan["batched_streams"] = resolve_batched_streams(self._settings["batched_streams"], device)
        return plan

    def _settle_execution(self) -> None:
        """Resolve the settings for the parameters' device and apply the attention kernel (this is the
        only place modules are re-classed); forward reads `self.__dict__['_execution']`."""
        device = self._parameter_device()
        plan = self.execution_plan(device)
        self.sam.set_attention(plan["attention"])
        clear_cached_casts(self.sam.image_encoder)
        # plain attributes: not submodules, not in state_dict
        self.__dict__["_execution"] = {**plan, "autocast_dtype": resolve_autocast(self.autocast, device)}
        self.__dict__["_compiled_logits"] = torch.compile(self._logits) if plan["compile"] else None

    def _apply(self, fn, recurse=True):
        """`.to()`, `.cuda()`, `.float()`... then re-resolve the settings for the (new) device."""
        result = super()._apply(fn, recurse)
        if "_execution" in self.__dict__:
            self._settle_execution()
        return result

    def train(self, mode: bool = True):
        """The encoder (frozen, or fine-tuned with `train_encoder`) stays in eval mode whatever the module's
        mode (no dropout, no statistics updates)."""
        super().train(mode)
        self.sam.image_encoder.eval()
        self.sam.prompt.eval()
        return self

    def _check_input(self, x: torch.Tensor, expected_channels: int) -> None:
        if x.ndim == 4 and x.shape[1] < expected_channels:
            # nnUNetv2_predict stacks whatever CASE_XXXX files it finds, so a missing modality file
            # surfaces here first; nnU-Net has printed "predicting CASE" just before.
            raise ValueError(f"{type(self).__name__}: the case being predicted has {x.shape[1]} input channels, "
                             f"the model needs {expected_channels}: the case is missing a modality file "
                             f"(CASE_0000..CASE_{expected_channels - 1:04d} = T1, T1ce, T2, FLAIR). Check the "
                             f"input folder with nnUNetv2_sam_register, which names the case and the file. "
                             f"({type(self).__name__} ({self.backbone_name}) expects input (B, {expected_channels}, "
                             f"{self.input_size}, {self.input_size}); got {tuple(x.shape)})")
        if x.ndim != 4 or x.shape[1] != expected_channels or tuple(x.shape[-2:]) != (self.input_size,) * 2:
            raise ValueError(f"{type(self).__name__} ({self.backbone_name}) expects input (B, "
                             f"{expected_channels}, {self.input_size}, {self.input_size}); got {tuple(x.shape)}")

    def _decode(self, embeddings: torch.Tensor, size_hw) -> torch.Tensor:
        return upsample_logits(self.sam.decode(embeddings), size_hw)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> logits (B, K, S, S), float32 whatever the autocast dtype."""
        self._check_input(x, self.input_channels)
        execution = self.__dict__["_execution"]
        run = self.__dict__["_compiled_logits"] or self._logits
        with autocast_context(x.device, execution["autocast_dtype"]):
            logits = run(x)
        return logits.float()


class SAMCrossModalNetwork(_SAMSegmentationNetwork):
    """The paper's dual-stream network.

    Args:
        input_channels: C, the nnU-Net input channels.
        num_classes: K, nnU-Net segmentation heads (one mask token each).
        backbone: a name from `backbones.BACKBONE_NAMES`.
        input_size: S (SAM input resolution = nnU-Net 2d patch size).
        adapter_depth: n, adapters after the first n encoder blocks (paper: 6 of ViT-B's 12); 'all':
            every block (the ours_plus variant).
        stream_channels: ((T1-based channel indices), (T2-based channel indices)); the planner fills it
            from dataset.json channel names.
        batched_streams: True: both streams through each frozen block as one 2B batch; False: two
            passes; 'auto' (default): the one `execution.resolve_batched_streams` picks for the device
            (two passes on CPU, measured 1.04x faster on 2 cores; batched on CUDA).
            Same outputs and gradients either way.
        checkpoint_blocks: activation checkpointing of the frozen blocks (memory vs speed).
        attention, autocast, compile: execution policy, 'auto' = see `execution` (resolved for the
            parameters' device at build and on `.to()`); 'sam' / 'off' / 'off' is the reference path.
        refine_head: beyond the paper (ours_plus): a full-resolution `RefinementHead` on the decoder's
            logits (False, the default, is the paper's network).
        encoder_scale: beyond the paper (ours_plus_up2): the two stream images are resized bilinearly
            to S x encoder_scale before the frozen encoder (built at that size), as SAM resizes every image
            to the resolution it was trained at; the logits come back to S x S, so nnU-Net's patch, data
            and outputs are unchanged. 1 (default): the encoder runs at the patch size (the paper: 256).
        train_encoder: beyond the paper (ours_plus_ft): the SAM image encoder's weights train too (the
            paper freezes it; False, the default). The prompt embedding stays frozen either way.
        adapter_init, trainable_stems, embedding_fusion: the ablation's switches (docs/method.md), the
            defaults being our reading of the paper. 'zero' / 'default': adapter projections start at zero
            or at PyTorch's Linear init; trainable_stems=False freezes the two 1x1 stems at their
            channel-mean init (the literal "only the adapter and the mask decoder" are trained);
            'sum' (paper Fig. 1) or 'concat': the two embeddings concatenated and mapped 2d -> d by a 1x1
            conv that starts as the sum.
    """

    def __init__(self, input_channels: int, num_classes: int, backbone: str = "vit_b",
                 input_size: int = 256, adapter_depth: int | str = 6,
                 stream_channels: Sequence[Sequence[int]] = DEFAULT_STREAM_CHANNELS,
                 batched_streams: bool | str = "auto", checkpoint_blocks: bool = False,
                 deep_supervision: bool = False, attention: str = "auto", autocast: str = "auto",
                 compile: str | bool = "auto", refine_head: bool = False, adapter_init: str = "zero",
                 trainable_stems: bool = True, embedding_fusion: str = "sum", encoder_scale: int = 1,
                 train_encoder: bool = False):
        super().__init__(num_classes, backbone, input_size, checkpoint_blocks, deep_supervision,
                         attention, autocast, compile, encoder_scale, train_encoder)
        self.stream_channels = [list(map(int, group)) for group in stream_channels]
        if len(self.stream_channels) != 2 or not all(self.stream_channels):
            raise ValueError(f"stream_channels must be two non-empty channel groups, got {stream_channels}")
        for index in (i for group in self.stream_channels for i in group):
            if not 0 <= index < input_channels:
                raise ValueError(f"stream channel {index} outside the {input_channels} input channels")
        depth = len(self.sam.block_widths)
        adapter_depth = depth if adapter_depth == "all" else adapter_depth
        if not 0 <= adapter_depth <= depth:
            raise ValueError(f"adapter_depth must be in 0..{depth} for {backbone}, got {adapter_depth}")
        self.input_channels, self.adapter_depth = input_channels, adapter_depth
        self._set_setting("batched_streams", batched_streams)
        check_choice("adapter_init", adapter_init, ("zero", "default"))
        check_choice("embedding_fusion", embedding_fusion, ("sum", "concat"))
        self.stems = nn.ModuleList(make_stem(len(group)) for group in self.stream_channels)
        self.stems.requires_grad_(bool(trainable_stems))
        self.adapters = nn.ModuleList(CrossModalityAdapter(w, zero_init=adapter_init == "zero")
                                      for w in self.sam.block_widths[:adapter_depth])
        self.fuse_embeddings = make_sum_init_fusion(self.sam.mask_decoder.transformer_dim) \
            if embedding_fusion == "concat" else None
        self.refine = RefinementHead(input_channels, num_classes) if refine_head else None
        self._settle_execution()

    batched_streams = property(lambda self: self._settings["batched_streams"],
                               lambda self, v: self._set_setting("batched_streams", v))

    def stream_images(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> T1-based and T2-based RGB images, each (B, 3, S', S'), S' = S x encoder_scale
        (resized after the 1x1 stems: both maps are linear, so the order does not change the images)."""
        images = [stem(x[:, group]) for stem, group in zip(self.stems, self.stream_channels)]
        if self.encoder_scale != 1:
            images = [F.interpolate(image, scale_factor=self.encoder_scale, mode="bilinear", align_corners=False)
                      for image in images]
        return images[0], images[1]

    def encode_streams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> the two high-level embeddings after SAM's neck, each (B, d, h, w) on the encoder's
        grid: h = w = S'/16 for SAM ViT, S'/4 for LiteMedSAM (S' = S x encoder_scale)."""
        self._check_input(x, self.input_channels)
        return self._encode_images(x, slices=1)

    def _encode_images(self, x: torch.Tensor, slices: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, S, S) images (N = stacks x `slices`, slice index fastest; the 2D network: slices = 1) ->
        the two embeddings, each (N, d, h, w) (`encode_streams`). After block i: cross-modality adapter i (i < n), then
        `_mix_slices` (identity here; the 3D network's cross-slice adapters)."""
        t1, t2 = self.stream_images(x)
        if self.__dict__["_execution"]["batched_streams"]:
            stacked = self.sam.embed(torch.cat([t1, t2], dim=0))

            def adapt(i: int, features: torch.Tensor) -> torch.Tensor:
                features = self.adapters[i].forward_stacked(features) if i < self.adapter_depth else features
                return self._mix_slices(i, features, slices)  # (2N, ...): 2B stacks of `slices`, same weights

            embeddings = self.sam.neck(self.sam.run_blocks(stacked, adapt, self.checkpoint_blocks))
            return embeddings.chunk(2, dim=0)
        return self._encode_streams_separately(t1, t2, slices)

    def _encode_streams_separately(self, t1: torch.Tensor, t2: torch.Tensor, slices: int = 1):
        """Reference path: each frozen block called once per stream (two passes)."""
        f1, f2 = self.sam.embed(t1), self.sam.embed(t2)
        for i in range(len(self.sam.block_widths)):
            f1 = self.sam.block_step(i, f1, self.checkpoint_blocks)
            f2 = self.sam.block_step(i, f2, self.checkpoint_blocks)
            if i < self.adapter_depth:
                f1, f2 = self.adapters[i](f1, f2)
            f1, f2 = self._mix_slices(i, f1, slices), self._mix_slices(i, f2, slices)
        return self.sam.neck(f1), self.sam.neck(f2)

    def _mix_slices(self, index: int, features: torch.Tensor, slices: int) -> torch.Tensor:
        """Hook after block `index` (and its cross-modality adapter): the 2D network has no slice context."""
        return features

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> logits (B, K, S, S)."""
        return self._image_logits(x, self.encode_streams(x))

    def _image_logits(self, x: torch.Tensor, embeddings: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Images (N, C, S, S) and their two embeddings -> logits (N, K, S, S): fuse, decode, refine."""
        e_t1, e_t2 = embeddings
        fused = e_t1 + e_t2 if self.fuse_embeddings is None else self.fuse_embeddings(torch.cat([e_t1, e_t2], 1))
        logits = self._decode(fused, x.shape[-2:])
        return logits if self.refine is None else self.refine(x, logits)


class SAMCrossModal3DNetwork(SAMCrossModalNetwork):
    """Beyond the paper (issue #18, method `ours_3d`): the paper's network on stacks of D adjacent slices,
    with cross-slice adapters (docs/method.md "3D context (beyond the paper)").

    Input nnU-Net's 3D patch (B, C, D, S, S) (axis 2 = nnU-Net's first spatial axis, the one the 2d
    configuration slices along); output logits (B, K, D, S, S). The B*D slices run as one batch of images
    through the stems, the frozen encoder with the paper's cross-modality adapters, SAM's neck and the
    prompt-free decoder (decoding per slice); the only 3D part is a `CrossSliceAdapter` after each of the
    first `slice_adapter_depth` encoder blocks (after the block's cross-modality adapter, if any), which
    mixes each token with its neighbours in the adjacent slices of its stack. Both streams use the same
    cross-slice adapters (like the frozen encoder they run through; the cross-modality adapters already
    give each stream the other's features). Zero-initialised, so at initialisation this network equals
    SAMCrossModalNetwork applied slice by slice (tests/test_network_3d.py).

    Args (beyond SAMCrossModalNetwork's, which keep their meaning):
        slice_adapter_depth: cross-slice adapters after the first n blocks; 'all' (default): every block
            (MA-SAM adapts every block; a depthwise conv costs 28c parameters per block at (3, 3, 3)).
        slice_kernel: (kD, kh, kw) of the depthwise 3D convolution, odd sizes; (3, 1, 1) is the purely
            through-plane variant.
    """

    def __init__(self, input_channels: int, num_classes: int, backbone: str = "vit_b",
                 input_size: int = 256, adapter_depth: int | str = 6,
                 stream_channels: Sequence[Sequence[int]] = DEFAULT_STREAM_CHANNELS,
                 batched_streams: bool | str = "auto", checkpoint_blocks: bool = False,
                 deep_supervision: bool = False, attention: str = "auto", autocast: str = "auto",
                 compile: str | bool = "auto", refine_head: bool = False, adapter_init: str = "zero",
                 trainable_stems: bool = True, embedding_fusion: str = "sum",
                 slice_adapter_depth: int | str = "all", slice_kernel: Sequence[int] = (3, 3, 3)):
        super().__init__(input_channels, num_classes, backbone, input_size, adapter_depth, stream_channels,
                         batched_streams, checkpoint_blocks, deep_supervision, attention, autocast, compile,
                         refine_head, adapter_init, trainable_stems, embedding_fusion)
        depth = len(self.sam.block_widths)
        slice_adapter_depth = depth if slice_adapter_depth == "all" else slice_adapter_depth
        if not 0 <= slice_adapter_depth <= depth:
            raise ValueError(f"slice_adapter_depth must be in 0..{depth} for {backbone}, got {slice_adapter_depth}")
        self.slice_adapter_depth = slice_adapter_depth
        self.slice_adapters = nn.ModuleList(CrossSliceAdapter(w, tuple(slice_kernel))
                                            for w in self.sam.block_widths[:slice_adapter_depth])
        self._settle_execution()

    def _check_input(self, x: torch.Tensor, expected_channels: int) -> None:
        if x.ndim == 5:
            super()._check_input(x[:, :, 0], expected_channels)  # channels and the S x S slice size
            return
        raise ValueError(f"{type(self).__name__} ({self.backbone_name}) expects nnU-Net's 3D patch (B, "
                         f"{expected_channels}, D, {self.input_size}, {self.input_size}); got {tuple(x.shape)} "
                         f"(train and predict it with the SAM 3D configuration, -c 3d_sam)")

    def encode_streams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, D, S, S) -> the two embeddings of its B*D slices, each (B*D, d, h, w) (slice fastest)."""
        self._check_input(x, self.input_channels)
        return self._encode_images(self._slices_as_images(x), slices=x.shape[2])

    @staticmethod
    def _slices_as_images(x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, S, S) -> (B*D, C, S, S), slice index fastest."""
        b, c, d, h, w = x.shape
        return x.transpose(1, 2).reshape(b * d, c, h, w)

    def _mix_slices(self, index: int, features: torch.Tensor, slices: int) -> torch.Tensor:
        return self.slice_adapters[index](features, slices) if index < self.slice_adapter_depth else features

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, S, S) -> logits (B, K, D, S, S)."""
        b, _, d, h, w = x.shape
        images = self._slices_as_images(x)
        logits = self._image_logits(images, self._encode_images(images, slices=d))  # (B*D, K, S, S)
        return logits.reshape(b, d, -1, h, w).transpose(1, 2)


class SAMSingleStreamNetwork(_SAMSegmentationNetwork):
    """One stream through the frozen encoder: early fusion (`channels=None`: all C -> 3) or a single
    modality (`channels=[i]`: 1 -> 3). No adapters; trainable = stem + mask decoder (paper Fig. 3)."""

    def __init__(self, input_channels: int, num_classes: int, backbone: str = "vit_b",
                 input_size: int = 256, channels: Sequence[int] | None = None,
                 checkpoint_blocks: bool = False, deep_supervision: bool = False, attention: str = "auto",
                 autocast: str = "auto", compile: str | bool = "auto"):
        super().__init__(num_classes, backbone, input_size, checkpoint_blocks, deep_supervision,
                         attention, autocast, compile)
        self.input_channels = input_channels
        self.channels = list(range(input_channels)) if channels is None else [int(c) for c in channels]
        if not self.channels or any(not 0 <= c < input_channels for c in self.channels):
            raise ValueError(f"channels {channels} must be a non-empty subset of 0..{input_channels - 1}")
        self.stem = make_stem(len(self.channels))
        self._settle_execution()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> logits (B, K, S, S)."""
        features = self.sam.embed(self.stem(x[:, self.channels]))
        embedding = self.sam.neck(self.sam.run_blocks(features, checkpoint_blocks=self.checkpoint_blocks))
        return self._decode(embedding, x.shape[-2:])
