"""The fine-tuning network: pretrained MergeDNA encoder -> pooled embedding -> small head.

The pooled embedding is the size-weighted mean of the latent token vectors, i.e. the mean over
bases of each base's token vector: the same vector `mergedna embed` writes, so a sequence's
representation does not depend on how many tokens the tokenizer chose.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import MergeDNA


def pool_tokens(token_vectors: torch.Tensor, token_sizes: torch.Tensor) -> torch.Tensor:
    """(B, L, D), (B, L) bases per token (0 for PAD) -> (B, D)."""
    weights = token_sizes.to(token_vectors.dtype)[..., None]
    return (token_vectors * weights).sum(1) / weights.sum(1).clamp(min=1)


class Head(nn.Module):
    """Norm -> Linear -> GELU -> dropout -> Linear: logits per class, or one regression value."""

    def __init__(self, d_in: int, n_outputs: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.shape = {"d_in": d_in, "n_outputs": n_outputs, "hidden": hidden, "dropout": dropout}
        self.net = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, n_outputs))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class SequenceModel(nn.Module):
    """ids (B, N) PAD-padded -> head outputs (B, n_outputs)."""

    def __init__(self, backbone: MergeDNA, head: Head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.backbone.encode(ids)
        return pool_tokens(out.token_vectors.float(), out.token_sizes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))
