"""Transformer building blocks: RMSNorm, SwiGLU, rotary embeddings, full and local attention.

Shape legend: B batch, T tokens (or bases), H heads, E head size, D model width,
nb blocks of the local-attention grid, q/k positions inside a block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class _FusedRMSNorm(torch.autograd.Function):
    """RMSNorm exported as one ONNX Runtime SimplifiedLayerNormalization node (ORT registers it in
    the default ONNX domain); computes exactly `_rms_norm` when called from PyTorch."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        return _rms_norm(x, weight, eps)

    @staticmethod
    def symbolic(g, x, weight, eps):
        out = g.op("SimplifiedLayerNormalization", x, weight, axis_i=-1, epsilon_f=eps, stash_type_i=1)
        out.setType(x.type())
        return out


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exported as one fused node: seven plain ops over every 64-wide row cost ONNX Runtime twice
        # what PyTorch spends on the tokenizer's norms. The fused kernel rounds differently; over
        # 7,814 windows it did not add windows that tokenize differently from PyTorch (docs/benchmarks.md).
        if torch.onnx.is_in_onnx_export():
            return _FusedRMSNorm.apply(x, self.weight, self.eps)
        return _rms_norm(x, self.weight, self.eps)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():  # two MatMuls, not one and two Slice copies
            w_gate, w_up = self.gate_up.weight.chunk(2, dim=0)
            return self.down(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up))
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


Rotary = tuple[torch.Tensor, torch.Tensor]


def rotary_tables(pos: torch.Tensor, head_dim: int, base: float) -> Rotary:
    """cos/sin tables (B, 1, T, E/2) for float positions pos (B, T); computed once per position
    tensor and shared by every block that attends over those positions.

    Positions are floats because a merged token sits at the mean position of its bases. The
    tables have pos's dtype when it is float64 (a float64 tokenizer), float32 otherwise.
    """
    dtype = torch.float64 if pos.dtype == torch.float64 else torch.float32
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=pos.device, dtype=dtype) / head_dim)
    angles = pos.to(dtype)[:, None, :, None] * inv_freq  # (B, 1, T, E/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, E/2) each
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def local_attention_mask(valid: torch.Tensor, radius: int) -> torch.Tensor:
    """Which keys each query may see in local_attention's block grid: (B, nb, r, 3r) for valid
    (B, T). Key j of block n is token n * r - r + j (previous, own and next block)."""
    B, T = valid.shape
    nb = (T + radius - 1) // radius
    extra = nb * radius - T
    valid_k = F.pad(valid, (radius, extra + radius), value=False)  # (B, T + pads)
    vk = valid_k.view(B, nb + 2, radius)
    valid_kb = torch.cat((vk[:, :-2], vk[:, 1:-1], vk[:, 2:]), dim=2)  # (B, nb, 3r)
    q_in_block = torch.arange(radius, device=valid.device)
    k_in_block = torch.arange(3 * radius, device=valid.device) - radius
    offset = k_in_block[None, :] - q_in_block[:, None]  # (r, 3r), same for every block
    allowed = (offset.abs() <= radius) & valid_kb[:, :, None, :]  # (B, nb, r, 3r)
    return allowed | (offset == 0)


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor,
                    radius: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Attention where token i sees tokens j with |i - j| <= radius, never PAD.

    q, k, v: (B, H, T, E); valid: (B, T). Blocked so the cost is O(T * 3 * radius), not O(T^2):
    the sequence is cut into blocks of `radius` tokens, each attending to itself and its two
    neighbour blocks. A PAD query sees only itself, so no row of the softmax is empty.
    `allowed`: local_attention_mask(valid, radius) when the caller already has it.
    """
    B, H, T, E = q.shape
    nb = (T + radius - 1) // radius
    extra = nb * radius - T
    q = F.pad(q, (0, 0, 0, extra)).view(B, H, nb, radius, E)
    if allowed is None:
        allowed = local_attention_mask(valid, radius)
    k_in_block = torch.arange(3 * radius, device=q.device) - radius

    if torch.onnx.is_in_onnx_export():
        # Keys of block n (previous, own and next block) by one Gather from the unpadded k and v,
        # not Pad + 3 Slices + Concat; a key outside [0, T) reads a clamped neighbour, which
        # `allowed` hides (probability exactly 0). The same products as MatMul (ORT's Einsum is slower).
        key = (torch.arange(nb, device=q.device)[:, None] * radius + k_in_block[None, :]).clamp(0, T - 1)
        kb, vb = k[:, :, key], v[:, :, key]  # (B, H, nb, 3r, E)
        scores = (q @ kb.transpose(-1, -2)) * E ** -0.5
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        out = scores.softmax(-1) @ vb
    else:
        k = F.pad(k, (0, 0, radius, extra + radius))  # one empty block on each side
        v = F.pad(v, (0, 0, radius, extra + radius))
        # Keys of block n: padded blocks n, n+1, n+2 = previous, own and next block. Built with cat
        # (cheap backward) rather than an index gather.
        kb = k.view(B, H, nb + 2, radius, E)
        vb = v.view(B, H, nb + 2, radius, E)
        kb = torch.cat((kb[:, :, :-2], kb[:, :, 1:-1], kb[:, :, 2:]), dim=3)  # (B, H, nb, 3r, E)
        vb = torch.cat((vb[:, :, :-2], vb[:, :, 1:-1], vb[:, :, 2:]), dim=3)
        scores = torch.einsum("bhnqe,bhnke->bhnqk", q, kb) * E ** -0.5
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        out = torch.einsum("bhnqk,bhnke->bhnqe", scores.softmax(-1), vb)
    return out.reshape(B, H, nb * radius, E)[:, :, :T]


def _all_true(valid: torch.Tensor) -> bool:
    """True when no PAD is present, so attention can skip its mask (a faster kernel). Exported
    graphs always keep the mask."""
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False
    return bool(valid.all())


# Added to the score of a PAD key: finite, so a query that sees no real key still gets a finite row.
PAD_KEY_SCORE = -1e9


def key_padding_columns(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Extra last components that carry the PAD mask inside the q.k product, for ONNX export: 1 on
    every query, 0 on a real key and -1e9 on a PAD key, so that q'.k' = q.k + (0 or -1e9) and the
    MatMul applies the mask for free (no mask tensor over every score). Both (B, 1, T, 1), to be
    appended to one head's q and k (B, 1, T, E)."""
    ones = torch.ones_like(valid, dtype=torch.float32)[:, None, :, None]
    return ones, torch.where(valid, 0.0, PAD_KEY_SCORE)[:, None, :, None]


def _full_attention_export(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Full attention for ONNX export, as MatMul/Softmax/MatMul, with q and k carrying the PAD mask
    in their last component (key_padding_columns; E real components before it). A PAD query sees
    the real keys here (itself in eager mode): its output is meaningless either way and never
    reaches a real position."""
    scores = (q * scale) @ k.transpose(-1, -2)
    return scores.softmax(-1) @ v


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions; local (windowed) or full."""

    def __init__(self, dim: int, heads: int, radius: int | None):
        super().__init__()
        self.heads, self.radius = heads, radius
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, rotary: Rotary, valid: torch.Tensor) -> torch.Tensor:
        """x (B, T, D); rotary: rotary_tables of the tokens' positions; valid (B, T)."""
        if torch.onnx.is_in_onnx_export():
            return self._forward_export(x, rotary, valid)
        B, T, D = x.shape
        E = D // self.heads
        # contiguous: elementwise ops on the strided permuted view run ~5x slower on CPU (measured)
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, E).permute(2, 0, 3, 1, 4).contiguous()  # 3 x (B, H, T, E)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if self.radius is None:
            idx = torch.arange(T, device=x.device)
            allowed = None if _all_true(valid) else (  # PAD keys hidden; a PAD query sees itself
                valid[:, None, None, :] | (idx[:, None] == idx[None, :]))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, T, E)
        else:
            out = local_attention(q, k, v, valid, self.radius)
        return self.out(out.transpose(1, 2).reshape(B, T, D))

    def _forward_export(self, x: torch.Tensor, rotary: Rotary, valid: torch.Tensor) -> torch.Tensor:
        """The same attention for ONNX export, one head at a time: each head's q, k and v come out
        of their own MatMul already in (B, T, E) layout and the output projection sums per-head
        products, so no head transposes are needed (ONNX Runtime runs a transpose as a separate copy)."""
        H, D = self.heads, self.qkv.in_features
        E = D // H
        w_qkv, w_out = self.qkv.weight, self.out.weight  # (3D, D) rows: q heads, k heads, v heads
        cos, sin = rotary
        # what every head shares: the PAD-mask components or the local block mask
        if self.radius is None:
            q_extra, k_extra = key_padding_columns(valid)
        else:
            allowed = local_attention_mask(valid, self.radius)
        half = E // 2

        def rotated(part: int, h: int, extra: torch.Tensor | None = None) -> torch.Tensor:
            # each rotary half from its own MatMul: no Split of the projected head
            first = part * D + h * E
            x1 = F.linear(x, w_qkv[first:first + half])[:, None]
            x2 = F.linear(x, w_qkv[first + half:first + E])[:, None]
            parts = (x1 * cos - x2 * sin, x1 * sin + x2 * cos)
            return torch.cat(parts if extra is None else (*parts, extra), dim=-1)

        total = None
        for h in range(H):
            v = F.linear(x, w_qkv[2 * D + h * E:2 * D + (h + 1) * E])[:, None]
            if self.radius is None:
                q, k = rotated(0, h, q_extra), rotated(1, h, k_extra)
                out = _full_attention_export(q, k, v, E ** -0.5)
            else:
                q, k = rotated(0, h), rotated(1, h)
                out = local_attention(q, k, v, valid, self.radius, allowed)
            head = F.linear(out[:, 0], w_out[:, h * E:(h + 1) * E])
            total = head if total is None else total + head
        return total


class Block(nn.Module):
    """Pre-norm transformer block; `forward` runs attention then MLP, the local encoder splits it
    to put a merge step in between."""

    def __init__(self, dim: int, heads: int, hidden: int, radius: int | None):
        super().__init__()
        self.attn_norm = RMSNorm(dim)
        self.attn = Attention(dim, heads, radius)
        self.mlp_norm = RMSNorm(dim)
        self.mlp = SwiGLU(dim, hidden)

    def attend(self, x, rotary, valid):
        return x + self.attn(self.attn_norm(x), rotary, valid)

    def feed_forward(self, x):
        return x + self.mlp(self.mlp_norm(x))

    def forward(self, x, rotary, valid):
        return self.feed_forward(self.attend(x, rotary, valid))
