"""A small GPT-style causal transformer: the shared building block for sequence-model baselines.

``CausalTransformer`` maps a sequence of already-embedded tokens ``[B, L, d]`` to hidden states
``[B, L, d]`` in which position ``t`` depends only on positions ``<= t``. It follows the GPT-2
layout (Radford et al. 2019): a stack of *pre-LayerNorm* residual blocks

    x = x + Dropout(Attention(LayerNorm(x)))
    x = x + Dropout(MLP(LayerNorm(x)))          MLP: d -> 4d -> d

followed by a final LayerNorm. Attention is multi-head scaled dot-product attention
(Vaswani et al. 2017, eq. 1) computed by ``torch.nn.functional.scaled_dot_product_attention``.

Masking
-------
Without a padding mask the causal mask is applied with ``is_causal=True``. With
``padding_mask`` (``[B, L]``, true/1 for real tokens, false/0 for padding) an explicit boolean
mask is built: query ``i`` may attend to key ``j`` iff ``j <= i`` and (``j`` is real or ``j == i``).
Real tokens therefore never see padding; a padding token sees only itself, so its softmax row
is never empty (an all-masked row would give NaN, which would then leak into gradients). Outputs
at padding positions are meaningless and must be ignored by the caller (masked out of losses).

Positions are the caller's business: the block adds no positional encoding of its own unless
``max_positions > 0`` is given, in which case a learned absolute position embedding is added to
the input (GPT-style). Decision Transformer passes 0 and adds its own per-timestep embedding.

Dropout (``dropout``) is applied to the input embeddings, to the attention probabilities, after
the attention output projection and after the MLP, as in GPT-2. It draws from torch's global
generator and is off in ``eval()`` mode. Weights are initialised GPT-2 style: normal(0, 0.02) for
linear and embedding weights, zero biases, and the residual output projections scaled by
``1 / sqrt(2 * layers)``; the initialisation draws from torch's global generator.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def causal_attention_mask(padding_mask: torch.Tensor | None, length: int,
                          device: torch.device | None = None) -> torch.Tensor:
    """Boolean attention mask, True where attention is allowed.

    Without ``padding_mask``: ``[L, L]`` lower triangular. With ``padding_mask`` ``[B, L]`` (true
    for real tokens): ``[B, 1, L, L]`` = causal AND (key is real OR key == query), broadcast over heads.
    """
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    if padding_mask is None:
        return causal
    real_key = padding_mask.bool()[:, None, None, :]  # [B, 1, 1, L]
    eye = torch.eye(length, dtype=torch.bool, device=device)
    return causal & (real_key | eye)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused query/key/value projection."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dimension {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, L, d]; ``mask`` a boolean attention mask from :func:`causal_attention_mask`
        (``None``: plain causal)."""
        b, length, dim = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        p = self.attn_dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(b, length, dim)
        return self.resid_dropout(self.proj(y))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm residual block: attention then a 4x MLP, each with dropout on its output."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), activation(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    """GPT-style causal transformer over embedded tokens (see the module docstring).

    Args:
        dim: embedding (model) width d.
        layers: number of blocks.
        heads: attention heads (``dim`` must be divisible by it).
        dropout: dropout probability (embeddings, attention, residual outputs).
        activation: the MLP's nonlinearity class (GPT-2: GELU; Decision Transformer: ReLU).
        max_positions: if > 0, a learned absolute position embedding for up to this many tokens
            is added to the input; 0 (default) adds none.
    """

    def __init__(self, dim: int = 128, layers: int = 3, heads: int = 1, dropout: float = 0.1,
                 activation: type[nn.Module] = nn.GELU, max_positions: int = 0):
        super().__init__()
        self.dim = dim
        self.position = nn.Embedding(max_positions, dim) if max_positions > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout, activation) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self._init_weights(layers)

    def _init_weights(self, layers: int) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:  # GPT-2: scale the residual-stream output projections
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * layers))
            nn.init.normal_(block.mlp[2].weight, mean=0.0, std=0.02 / math.sqrt(2 * layers))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, L, d] embedded tokens; ``padding_mask`` [B, L] (true/1 = real token) or None.
        Returns hidden states [B, L, d]; position t depends only on real positions <= t."""
        length = x.shape[1]
        if self.position is not None:
            if length > self.position.num_embeddings:
                raise ValueError(f"sequence of {length} tokens is longer than max_positions="
                                 f"{self.position.num_embeddings}")
            x = x + self.position(torch.arange(length, device=x.device))
        mask = None if padding_mask is None else causal_attention_mask(padding_mask, length, x.device)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)


__all__ = ["CausalSelfAttention", "CausalTransformer", "TransformerBlock", "causal_attention_mask"]
