"""The inference graph shared by the PyTorch backend and the ONNX export."""

from __future__ import annotations

import torch
from torch import nn

from ..model import MergeDNA

OUTPUT_NAMES = ("log_probs", "token_vectors", "token_sizes", "token_mask", "base2tok")


class InferenceGraph(nn.Module):
    """ids (B, N) int64 -> per-base log-probabilities over A C G T (B, N, 4), latent token vectors
    (B, L, D), token sizes (B, L), token mask (B, L) and base2tok (B, N)."""

    def __init__(self, model: MergeDNA):
        super().__init__()
        self.model = model.eval()

    def forward(self, ids: torch.Tensor):
        out = self.model(ids)
        return (out.logits.float().log_softmax(-1), out.token_vectors.float(), out.token_sizes,
                out.token_mask, out.base2tok)
