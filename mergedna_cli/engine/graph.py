"""The inference graphs shared by the PyTorch backend and the ONNX export.

"full" runs the whole network and returns per-base log-probabilities too; "embedding" stops after
the latent encoder (embed needs only token vectors and the token map), skipping both decoders;
"masked" takes query positions as a second input and returns log-probabilities there only (the
local decoder runs on each query's receptive field, not the whole window): the scoring pass;
"tokens" runs the learned tokenizer only (token sizes and the token map, for boundary tracks).
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import MergeDNA

from .backends import INPUTS, OUTPUTS  # noqa: F401  (one list of names, kept torch-free there)


class InferenceGraph(nn.Module):
    """ids (B, N) int64 -> [per-base log-probabilities over A C G T (B, N, 4)], latent token
    vectors (B, L, D), token sizes (B, L), token mask (B, L) and base2tok (B, N)."""

    def __init__(self, model: MergeDNA, part: str = "full"):
        super().__init__()
        self.model, self.part = model.eval(), part

    def forward(self, ids: torch.Tensor, query: torch.Tensor | None = None):
        if self.part == "masked":
            return self.model.logits_at(ids, query).float().log_softmax(-1)
        if self.part == "tokens":
            return self.model.tokenize(ids).spans()
        if self.part == "embedding":
            out = self.model.encode(ids)
            return out.token_vectors.float(), out.token_sizes, out.token_mask, out.base2tok
        out = self.model(ids)
        return (out.logits.float().log_softmax(-1), out.token_vectors.float(), out.token_sizes,
                out.token_mask, out.base2tok)
