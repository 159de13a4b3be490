"""The inference graphs shared by the PyTorch backend and the ONNX export.

"full" runs the whole network and returns per-base log-probabilities too; "embedding" stops after
the latent encoder (embed needs only token vectors and the token map), skipping both decoders;
"masked" takes query positions as an input and returns log-probabilities there only (the local
decoder runs on each query's receptive field, not the whole window): the scoring pass;
"tokens" runs the learned tokenizer only (token sizes and the token map, for boundary tracks).
Each of them takes a merge plan (B, N-1) to follow (-1 rows: decide) and returns the merges it
made and their margin (engine/merge_plan.py). "plan" is the tokenizer alone returning its merge
plan, exported from a float64 copy of the model: the reference decisions.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import MergeDNA


class InferenceGraph(nn.Module):
    """Inputs and outputs as named in engine/backends.py, INPUTS and OUTPUTS."""

    def __init__(self, model: MergeDNA, part: str = "full"):
        super().__init__()
        self.model, self.part = model.eval(), part

    def forward(self, ids: torch.Tensor, *inputs: torch.Tensor):
        model = self.model
        if self.part == "plan":
            return model.tokenize(ids).plan
        if self.part == "masked":
            query, plan = inputs
            tokens = model.tokenize(ids, plan=plan)
            h, _ = model.encode_latent(tokens)
            log_probs = model.decode_at(h, tokens, query).float().log_softmax(-1)
            return log_probs, tokens.margin, tokens.plan
        (plan,) = inputs
        if self.part == "tokens":
            tokens = model.tokenize(ids, plan=plan)
            return (*tokens.spans(), tokens.margin, tokens.plan)
        out = model.encode(ids, with_logits=self.part == "full", plan=plan)
        merges = (out.merge_margin, out.merge_plan)
        if self.part == "embedding":
            return (out.token_vectors.float(), out.token_sizes, out.token_mask, out.base2tok, *merges)
        return (out.logits.float().log_softmax(-1), out.token_vectors.float(), out.token_sizes,
                out.token_mask, out.base2tok, *merges)
