"""SAM's ViT block with the relative-position terms folded into q.k and windows without padded queries.

The same function as segment_anything's `Block` (same parameters, state_dict keys unchanged), computed
with less work. Two things make SAM's block slow at our input sizes on a CPU:

1. Decomposed relative positions. SAM computes the scores q.k^T, then adds rel_h (per key row) and
   rel_w (per key column) by broadcasting over the whole (N, h, w, h, w) score tensor: two passes over
   the largest tensor of the block (35% of the encoder's time on 2 CPU cores under bf16, profiled).
   Here they are folded into one matmul by augmenting queries and keys with exact one-hot columns:

       q' = [q * scale | rel_h(q) | rel_w(q)]        (N, h*w, d + h + w)
       k' = [k         | onehot(key row) | onehot(key column)]
       q' . k' = scale q.k + rel_h[row(k)] + rel_w[col(k)]     (the same scores, no broadcast add)

2. Window padding. At S = 256 the 16 x 16 token grid is padded to 28 x 28 for SAM's 14 x 14 windows,
   so the qkv and output projections and the attention of the windowed blocks ran on 784 tokens, of
   which 528 are padding whose outputs SAM throws away. A padded token is zero after norm1, so its
   key and value are the qkv bias: here qkv and proj run on the real tokens only, only real tokens
   query, and the padded keys/values (the bias) are still attended to, as in SAM.

Window geometry (SAM pads at the bottom/right): a grid of H x W tokens with window ws has full
windows over [0, H_f) x [0, W_f) (H_f = ws * floor(H / ws)), and partial windows whose real tokens
sit at the top-left of the window along the right edge, the bottom edge and in the corner. Each of
these (up to) four regions is a batch of windows of one real shape (qh, qw), attended at once.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Attention, Block, get_rel_pos
from torch import nn


def folded_attention(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     query_hw: tuple[int, int], key_hw: tuple[int, int]) -> torch.Tensor:
    """Attention of queries at the top-left query_hw of a key_hw grid (SAM's rel-pos offsets).

    q (B, heads, qh*qw, d), k and v (B, heads, kh*kw, d) -> (B, heads, qh*qw, d).
    """
    scale = attn.scale
    if attn.use_rel_pos:
        (qh, qw), (kh, kw) = query_hw, key_hw
        b, heads, n_q, d = q.shape
        # Rows of SAM's get_rel_pos(k, k, .) for the query positions 0..q-1 of a k-wide window.
        rel_pos_h = get_rel_pos(kh, kh, attn.rel_pos_h)[:qh].to(q.dtype)  # (qh, kh, d)
        rel_pos_w = get_rel_pos(kw, kw, attn.rel_pos_w)[:qw].to(q.dtype)  # (qw, kw, d)
        grid_q = q.reshape(b, heads, qh, qw, d)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, rel_pos_h).reshape(b, heads, n_q, kh)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, rel_pos_w).reshape(b, heads, n_q, kw)
        key_row = torch.eye(kh, dtype=k.dtype, device=k.device).repeat_interleave(kw, 0)  # (kh*kw, kh)
        key_col = torch.eye(kw, dtype=k.dtype, device=k.device).repeat(kh, 1)  # (kh*kw, kw)
        n_k = kh * kw
        q = torch.cat([q * scale, rel_h, rel_w], dim=-1)
        k = torch.cat([k, key_row.expand(b, heads, n_k, kh), key_col.expand(b, heads, n_k, kw)], dim=-1)
        scale = 1.0
    else:
        q = q * scale
    # Explicit matmul + softmax: on 2 CPU cores SDPA's kernel was 2x slower on these shapes (bf16).
    return (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, h, w, 3C) -> q, k, v each (B, heads, h*w, C/heads)."""
    b, h, w, _ = qkv.shape
    return qkv.reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def _windows(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, nh*wh, nw*ww, c) -> (B*nh*nw, wh, ww, c), windows in SAM's order (row-major)."""
    b, h, w, c = x.shape
    return x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh, ww, c)


def _unwindows(x: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `_windows`: (B*nh*nw, wh, ww, c) -> (B, h, w, c)."""
    _, wh, ww, c = x.shape
    return x.view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def _attend_region(attn: Attention, qkv: torch.Tensor, window: int, query_hw: tuple[int, int]) -> torch.Tensor:
    """A region of windows that all hold query_hw real tokens: qkv (B, nh*qh, nw*qw, 3C) -> (B, nh*qh, nw*qw, C)."""
    b, h, w, c3 = qkv.shape
    qh, qw = query_hw
    real = _windows(qkv, qh, qw)  # (B', qh, qw, 3C)
    if (qh, qw) == (window, window):
        keys = real
    else:  # padded tokens are zero after norm1, so their qkv is the bias
        bias = attn.qkv.bias if attn.qkv.bias is not None else qkv.new_zeros(c3)
        keys = bias.to(qkv.dtype).expand(real.shape[0], window, window, c3)
        keys = torch.cat([torch.cat([real, keys[:, :qh, qw:]], dim=2), keys[:, qh:]], dim=1)
    q = _split_heads(real, attn.num_heads)[0]
    _, k, v = _split_heads(keys, attn.num_heads)
    out = folded_attention(attn, q, k, v, (qh, qw), (window, window))  # (B', heads, qh*qw, d)
    out = out.permute(0, 2, 1, 3).reshape(real.shape[0], qh, qw, c3 // 3)
    return _unwindows(out, b, h, w)


def windowed_attention(attn: Attention, x: torch.Tensor, window: int) -> torch.Tensor:
    """SAM's window_partition -> attn -> window_unpartition, without padded queries. (B, H, W, C) -> (B, H, W, C)."""
    _, h, w, _ = x.shape
    qkv = attn.qkv(x)
    h_full, w_full = h - h % window, w - w % window
    rows = []
    for r0, r1 in ((0, h_full), (h_full, h)):
        if r1 == r0:
            continue
        parts = [_attend_region(attn, qkv[:, r0:r1, c0:c1], window, (min(window, r1 - r0), min(window, c1 - c0)))
                 for c0, c1 in ((0, w_full), (w_full, w)) if c1 > c0]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows, dim=1) if len(rows) > 1 else rows[0]
    return attn.proj(out)


def global_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """SAM's Attention.forward with folded rel-pos: (B, H, W, C) -> (B, H, W, C)."""
    b, h, w, c = x.shape
    q, k, v = _split_heads(attn.qkv(x), attn.num_heads)
    out = folded_attention(attn, q, k, v, (h, w), (h, w))
    return attn.proj(out.permute(0, 2, 1, 3).reshape(b, h, w, c))


class FoldedBlock(Block):
    """segment_anything's Block, forward computed as described in the module docstring (same function)."""

    use_folded: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        if not self.use_folded:
            return super().forward(x)
        normed = self.norm1(x)
        if self.window_size > 0:
            x = x + windowed_attention(self.attn, normed, self.window_size)
        else:
            x = x + global_attention(self.attn, normed)
        return x + self.mlp(self.norm2(x))


def use_folded_blocks(encoder: nn.Module, enabled: bool) -> None:
    """Switches every SAM `Block` in `encoder` to `FoldedBlock` (`enabled`) or back to SAM's forward.
    Re-classes in place like `attention.use_sdpa_attention` (no state added, state_dict unchanged)."""
    for module in encoder.modules():
        if isinstance(module, Block):
            if not isinstance(module, FoldedBlock):
                module.__class__ = FoldedBlock
            module.use_folded = enabled
