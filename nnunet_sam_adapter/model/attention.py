"""SAM's ViT attention on `torch.nn.functional.scaled_dot_product_attention` (SDPA).

segment_anything's `Attention` materialises the (B*heads, N, N) score matrix, adds the decomposed
relative-position terms, then softmax and a second matmul, all as separate ops. `SDPAAttention`
computes the same function with one fused SDPA call, passing the decomposed relative-position bias
as the additive attention mask:

    softmax(q k^T / sqrt(d) + rel_h(q) + rel_w(q)) v          (mvitv2 decomposed rel-pos, as in SAM)

It is a subclass with the same parameters (same state_dict keys), so a built encoder is switched in
place and checkpoints stay interchangeable; `use_sdpa = False` falls back to SAM's own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

ATTENTION_KINDS = ("sam", "sdpa", "folded")  # "folded": `folded_attention.FoldedBlock`


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                            size_hw: tuple[int, int]) -> torch.Tensor:
    """The additive bias SAM's `add_decomposed_rel_pos` adds to the scores.

    q (B, heads, H*W, d) unscaled, rel_pos_h (2H-1, d), rel_pos_w (2W-1, d) -> (B, heads, H*W, H*W).
    """
    h, w = size_hw
    b, heads, _, d = q.shape
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)  # (H, H, d)
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)  # (W, W, d)
    r_q = q.reshape(b, heads, h, w, d)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)  # (B, heads, H, W, H_k)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)  # (B, heads, H, W, W_k)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, h * w, h * w)


class SDPAAttention(Attention):
    """segment_anything's Attention with an SDPA forward (same parameters, same function)."""

    use_sdpa: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        if not self.use_sdpa:
            return super().forward(x)
        b, h, w, _ = x.shape
        # (3, B, heads, H*W, d)
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w)) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


def use_sdpa_attention(encoder: nn.Module, enabled: bool) -> None:
    """Switches every SAM `Attention` in `encoder` to SDPA (`enabled`) or to SAM's original forward.

    The first call re-classes the modules in place: SDPAAttention adds no state, so parameters,
    buffers, hooks and state_dict keys are untouched (no copy, works on the meta device too).
    """
    for module in encoder.modules():
        if isinstance(module, Attention):
            if not isinstance(module, SDPAAttention):
                module.__class__ = SDPAAttention
            module.use_sdpa = enabled
