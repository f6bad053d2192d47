"""timm ViT attention, re-expressed for export in the form ONNX Runtime's transformer optimizer fuses.

Why: timm computes q, k and v with one packed `qkv` Linear, then `unbind` and
`F.scaled_dot_product_attention`. ORT's `Attention` fusion (onnxruntime.transformers,
model_type "vit") matches only separate q/k/v MatMul+Add -> Reshape -> Transpose paths and
softmax(QK^T / sqrt(d)) V; on timm's graph it fuses none of ViT-T's 12 blocks, on this form 11
(the first block's LayerNorm is fed by the embedding, which the fusion does not anchor on).
Same weights, same math: outputs agree to ~1e-6. Only the export copy is rewritten.
"""

from __future__ import annotations

import copy
import math
from typing import Any


def _split_attention_cls() -> type:
    import torch
    from torch import nn

    class SplitQKVAttention(nn.Module):
        """q, k, v as three Linears (slices of timm's packed `qkv`), attention written out."""

        def __init__(self, attn: Any) -> None:
            super().__init__()
            dim = attn.qkv.in_features
            self.heads, self.head_dim = attn.num_heads, attn.head_dim
            self.q, self.k, self.v = (nn.Linear(dim, self.heads * self.head_dim) for _ in range(3))
            for lin, w, b in zip((self.q, self.k, self.v), attn.qkv.weight.chunk(3), attn.qkv.bias.chunk(3)):
                lin.weight.data.copy_(w)
                lin.bias.data.copy_(b)
            self.proj = attn.proj

        def forward(self, x: torch.Tensor, attn_mask: Any = None, is_causal: bool = False) -> torch.Tensor:
            if attn_mask is not None or is_causal:
                raise ValueError("SplitQKVAttention is for export of image classifiers: no attention mask")
            b, n, _ = x.shape
            q = self.q(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
            k = self.k(x).reshape(b, n, self.heads, self.head_dim).permute(0, 2, 3, 1)  # one Transpose: K^T
            v = self.v(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
            a = torch.softmax(torch.matmul(q, k) / math.sqrt(self.head_dim), dim=-1)
            out = torch.matmul(a, v).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
            return self.proj(out)

    return SplitQKVAttention


def _plain(attn: Any) -> bool:
    """Only the form the rewrite reproduces exactly: biased qkv, no q/k or output norm, no gate."""
    from torch import nn

    return (attn.qkv.bias is not None and getattr(attn, "gate", None) is None
            and all(isinstance(getattr(attn, n, nn.Identity()), nn.Identity) for n in ("q_norm", "k_norm", "norm")))


def export_friendly(model: Any) -> tuple[Any, int]:
    """A copy of `model` with every plain timm ViT `Attention` split for ORT's fusion; returns
    (model, number of blocks rewritten). Non-ViT models come back unchanged (not copied)."""
    try:
        from timm.models.vision_transformer import Attention
    except ImportError:
        return model, 0
    names = [n for n, m in model.named_modules() if isinstance(m, Attention) and _plain(m)]
    if not names:
        return model, 0
    model, cls = copy.deepcopy(model), _split_attention_cls()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, cls(getattr(parent, child)))
    return model.eval(), len(names)
