"""The MergeDNA network (model.md section 1).

    ids (B, N) -> local encoder (attention + learned merging) -> tokens (B, L, D), base2tok (B, N)
               -> latent encoder (full attention over L tokens; optional global merging to K)
               -> latent decoder -> unmerge (gather by base2tok) -> local decoder -> logits (B, N, 4)

Inputs are padded id tensors; PAD never influences a real position, so a sequence gives the same
output alone or inside a batch. Nothing in `forward` is list-shaped, so it exports to ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..alphabet import MASK, N_BASES, PAD, VOCAB_SIZE
from .config import MergeDNAConfig
from .layers import Block, RMSNorm, Rotary, rotary_tables
from .merging import TokenState, exact_budget_targets, merge_adjacent, merge_bipartite

_RATIO_DEN = 1000  # budgets use integer arithmetic: keep round(n * num / 1000) tokens


def _ratio(fraction: float) -> int:
    return int(round(fraction * _RATIO_DEN))


def _schedule(n, final, step: int, steps: int):
    """Tokens kept after merge step `step` of `steps`: linear from n down to final (ints or tensors)."""
    return n - ((n - final) * (step + 1)) // steps


def _layout_after(parts, step: int, steps: int):
    """Tensor length after merge step `step`: the sum of every budget part's schedule,
    parts = [(bases, final tokens, how many such parts)]."""
    return sum(_schedule(n, final, step, steps) * count for n, final, count in parts)


@dataclass
class LocalTokens:
    """Output of the learned tokenizer: token state (B, L, ...) and the base -> token map (B, N).

    plan (B, N-1): merge step (0-based) that joined base i with base i+1, or the number of merge
    steps where they stay in different tokens; given back to `tokenize`, it reproduces these
    tokens exactly. margin (B,): the smallest score gap any of the row's merge decisions rested on
    (merging.merge_adjacent)."""

    state: TokenState
    base2tok: torch.Tensor
    base_valid: torch.Tensor
    plan: torch.Tensor
    margin: torch.Tensor

    def detach(self) -> "LocalTokens":
        return LocalTokens(self.state.detach(), self.base2tok, self.base_valid, self.plan, self.margin)

    def spans(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What inference reports about the tokens: sizes (B, L) int64 with 0 for PAD tokens,
        the token mask (B, L) and base2tok (B, N) with -1 for PAD bases."""
        valid = self.state.valid
        sizes = torch.where(valid, self.state.size, torch.zeros_like(self.state.size)).round().long()
        return sizes, valid, self.base2tok.masked_fill(~self.base_valid, -1)


class InferenceOutput(NamedTuple):
    logits: torch.Tensor | None  # (B, N, 4) per-base logits over A C G T (None from encode)
    token_vectors: torch.Tensor  # (B, L, D) latent encoder output per local token
    token_sizes: torch.Tensor    # (B, L) bases per token, 0 for PAD tokens
    token_mask: torch.Tensor     # (B, L) True for real tokens
    base2tok: torch.Tensor       # (B, N) token index of every base, -1 for PAD bases
    merge_margin: torch.Tensor   # (B,) LocalTokens.margin
    merge_plan: torch.Tensor     # (B, N-1) LocalTokens.plan


def _forced_joins(plan: torch.Tensor, size: torch.Tensor, step: int) -> torch.Tensor:
    """merge_adjacent's `forced` (B, T-1) for merge step `step` of a plan (B, N-1): edge t of
    the current tokens lies at the base boundary after token t's last base, cumsum(size)[t] - 1
    (tokens are contiguous runs of bases in order). -1 where the plan's row is -1 (no plan)."""
    last_base = size.cumsum(1)[:, :-1].round().long() - 1  # (B, T-1)
    at_edge = plan.gather(1, last_base.clamp(0, plan.shape[1] - 1))
    return (at_edge == step).long() - (at_edge < 0).long()


def _blocks(cfg: MergeDNAConfig, n: int, local: bool) -> nn.ModuleList:
    radius = cfg.window // 2 if local else None
    return nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.hidden, radius) for _ in range(n))


class MergeDNA(nn.Module):
    def __init__(self, config: MergeDNAConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = nn.Embedding(VOCAB_SIZE, cfg.d_model)
        self.local_encoder = _blocks(cfg, cfg.n_local_encoder, local=True)
        self.local_group = nn.ModuleList(nn.Linear(cfg.d_model, cfg.d_group, bias=False)
                                         for _ in range(cfg.n_local_encoder))
        self.latent_encoder = _blocks(cfg, cfg.n_latent_encoder, local=False)
        self.latent_group_norm = RMSNorm(cfg.d_model)
        self.latent_group = nn.Linear(cfg.d_model, cfg.d_group, bias=False)
        self.latent_decoder = _blocks(cfg, cfg.n_latent_decoder, local=False)
        # Every base of a token receives the same vector; its offset inside the token tells the
        # local decoder which of the token's bases it is.
        self.token_offset = nn.Embedding(cfg.max_token_offset, cfg.d_model)
        self.local_decoder = _blocks(cfg, cfg.n_local_decoder, local=True)
        self.out_norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, N_BASES)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def rotary(self, pos: torch.Tensor) -> Rotary:
        """Rotary tables for token positions pos (B, T), shared by the blocks that attend over them."""
        return rotary_tables(pos, self.config.d_model // self.config.n_heads, self.config.rope_base)  # pos's dtype

    # -- the learned tokenizer ---------------------------------------------------------------
    def tokenize(self, ids: torch.Tensor, compression: float | None = None,
                 plan: torch.Tensor | None = None) -> LocalTokens:
        """Local encoder: bases -> round(compression * n) tokens per row (n = its non-PAD bases).

        Bases with the MASK id form mask regions that no merge crosses. plan (B, N-1): a
        LocalTokens.plan to follow instead of deciding the merges (rows of -1 decide as usual).
        The token state is computed in the weights' dtype: a float64 copy of the model gives the
        reference decisions of engine/merge_plan.py.
        """
        cfg = self.config
        c = _ratio(cfg.compression if compression is None else compression)
        B, N = ids.shape
        base_valid = ids != PAD
        positions = torch.arange(N, device=ids.device)
        dtype = self.embed.weight.dtype
        state = TokenState(x=self.embed(ids), size=torch.ones(B, N, device=ids.device, dtype=dtype),
                           pos=positions.to(dtype).expand(B, N), valid=base_valid,
                           masked=ids == MASK)
        base2tok = positions.expand(B, N)
        start, final, layout_parts = self._merge_budget(base_valid, c)
        steps = len(self.local_encoder)
        chunk = cfg.merge_chunk if cfg.merge_budget == "chunk" else 0
        apart = torch.zeros_like(ids[:, 1:])  # (B, N-1): steps after which i and i+1 are apart
        margin = torch.full_like(ids[:, 0], float("inf"), dtype=dtype)
        for step, (block, group) in enumerate(zip(self.local_encoder, self.local_group)):
            state.x = block.attend(state.x, self.rotary(state.pos), state.valid)
            offset = (step % 2) * (cfg.window // 2)  # shift windows so no boundary is permanent
            forced = None if plan is None else _forced_joins(plan, state.size, step)
            merge = merge_adjacent(
                state, group(block.mlp_norm(state.x)), _schedule(start, final, step, steps),
                _layout_after(layout_parts, step, steps), cfg.window, offset, chunk, forced)
            state, margin = merge.state, torch.minimum(margin, merge.margin)
            # compose maps: base -> old -> new token (clamp only moves PAD bases off the dummy slot)
            base2tok = merge.new_index.gather(1, base2tok).clamp(max=state.x.shape[1] - 1)
            apart = apart + (base2tok[:, 1:] != base2tok[:, :-1]).long()
            state.x = block.feed_forward(state.x)
        return LocalTokens(state, base2tok, base_valid, apart, margin)

    def _merge_budget(self, base_valid: torch.Tensor, c: int):
        """The tokenizer's budget: (real tokens at the start, real tokens at the end, layout parts).

        "row": each row goes from its n real bases to round(c * n) tokens, (B,); "chunk": each
        merge_chunk bases go to round(c * their real bases), (B, n_chunks). Layout parts
        [(bases, final tokens, how many)] give the tensor length from the shape alone, in integer
        arithmetic, so the graph exports with dynamic length: full chunks plus the remainder,
        whose share may round up by one slot (a harmless empty slot).
        """
        cfg = self.config
        B, N = base_valid.shape
        if cfg.merge_budget != "chunk":
            n_real = base_valid.sum(1)
            return n_real, exact_budget_targets(n_real, c, _RATIO_DEN), [(N, exact_budget_targets(N, c, _RATIO_DEN), 1)]
        C = cfg.merge_chunk
        n_chunks = (N + C - 1) // C
        base_chunk = (torch.arange(N, device=base_valid.device) // C).expand(B, N)
        n_real = torch.zeros(B, n_chunks, dtype=torch.long, device=base_valid.device).scatter_add(
            1, base_chunk, base_valid.long())
        final = exact_budget_targets(n_real, c, _RATIO_DEN).masked_fill(n_real == 0, 0)
        full, rest = N // C, N - (N // C) * C
        parts = [(C, exact_budget_targets(C, c, _RATIO_DEN), full), (rest, exact_budget_targets(rest, c, _RATIO_DEN), 1)]
        return n_real, final, parts

    # -- latent encoder -----------------------------------------------------------------------
    def encode_latent(self, tokens: LocalTokens, merge_ratio: float | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full attention over the local tokens. With merge_ratio, tokens are also merged globally
        (ToMe-style) down to K = ratio * L over the first blocks and unmerged back at the end.

        Returns h (B, L, D) at local-token resolution and tok2lat (B, L) or None.
        """
        cfg = self.config
        state = tokens.state
        tok2lat = None
        if merge_ratio is not None:
            L = state.x.shape[1]
            n_real = state.valid.sum(1)
            final = exact_budget_targets(n_real, _ratio(merge_ratio), _RATIO_DEN)
            final_layout = exact_budget_targets(L, _ratio(merge_ratio), _RATIO_DEN)
            merge_steps = min(cfg.latent_merge_blocks, len(self.latent_encoder))
            tok2lat = torch.arange(L, device=state.x.device).expand_as(state.valid)
        rotary = self.rotary(state.pos)
        for step, block in enumerate(self.latent_encoder):
            state = TokenState(block(state.x, rotary, state.valid), state.size, state.pos,
                               state.valid, state.masked)
            if merge_ratio is not None and step < merge_steps:
                group = self.latent_group(self.latent_group_norm(state.x))
                state, new_index = merge_bipartite(
                    state, group, _schedule(n_real, final, step, merge_steps),
                    _schedule(L, final_layout, step, merge_steps))
                tok2lat = new_index.gather(1, tok2lat).clamp(max=state.x.shape[1] - 1)
                rotary = self.rotary(state.pos)
        h = state.x
        if tok2lat is not None:
            h = h.gather(1, tok2lat[..., None].expand(-1, -1, h.shape[-1]))  # unmerge K -> L
        return h, tok2lat

    # -- decoders -----------------------------------------------------------------------------
    def decode(self, h: torch.Tensor, tokens: LocalTokens) -> torch.Tensor:
        """Latent decoder over tokens, unmerge to bases by gather, local decoder -> logits (B, N, 4)."""
        state = tokens.state
        rotary = self.rotary(state.pos)
        for block in self.latent_decoder:
            h = block(h, rotary, state.valid)
        base2tok = tokens.base2tok
        B, N = base2tok.shape
        x = h.gather(1, base2tok[..., None].expand(-1, -1, h.shape[-1]))  # (B, N, D)
        token_start = state.size.cumsum(1) - state.size  # first base of every token, (B, L)
        positions = torch.arange(N, device=h.device)
        offset = positions - token_start.gather(1, base2tok).long()
        x = x + self.token_offset(offset.clamp(0, self.config.max_token_offset - 1))
        rotary = self.rotary(positions.float().expand(B, N))
        for block in self.local_decoder:
            x = block(x, rotary, tokens.base_valid)
        return self.head(self.out_norm(x))

    def decode_at(self, h: torch.Tensor, tokens: LocalTokens, query: torch.Tensor) -> torch.Tensor:
        """Logits (B, Q, 4) at base positions `query` (B, Q) only: the latent decoder runs over all
        tokens, the local decoder only over each query's receptive field (radius x blocks bases
        on each side). Equal to `decode(h, tokens)` gathered at `query`, for a fraction of the cost."""
        state = tokens.state
        rotary = self.rotary(state.pos)
        for block in self.latent_decoder:
            h = block(h, rotary, state.valid)
        B, N = tokens.base2tok.shape
        reach = (self.config.window // 2) * len(self.local_decoder)
        span = torch.arange(-reach, reach + 1, device=h.device)
        idx = query[..., None] + span  # (B, Q, S) base positions around each query
        inside = (idx >= 0) & (idx < N)
        idx = idx.clamp(0, N - 1)
        Q, S = idx.shape[1], idx.shape[2]
        flat = idx.reshape(B, Q * S)
        tok = tokens.base2tok.gather(1, flat)
        x = h.gather(1, tok[..., None].expand(-1, -1, h.shape[-1]))  # (B, Q*S, D)
        token_start = state.size.cumsum(1) - state.size
        offset = flat - token_start.gather(1, tok).long()
        x = x + self.token_offset(offset.clamp(0, self.config.max_token_offset - 1))
        valid = tokens.base_valid.gather(1, flat).reshape(B, Q, S) & inside
        x = x.reshape(B * Q, S, -1)
        rotary, valid = self.rotary(idx.reshape(B * Q, S).float()), valid.reshape(B * Q, S)
        for block in self.local_decoder:
            x = block(x, rotary, valid)
        return self.head(self.out_norm(x[:, reach])).reshape(B, Q, -1)

    # -- inference ----------------------------------------------------------------------------
    def logits_at(self, ids: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Per-base logits (B, Q, 4) at positions `query` (B, Q) of ids (B, N); the scoring pass."""
        tokens = self.tokenize(ids)
        h, _ = self.encode_latent(tokens)
        return self.decode_at(h, tokens, query)

    def forward(self, ids: torch.Tensor, plan: torch.Tensor | None = None) -> InferenceOutput:
        """Inference pass at the configured compression. ids (B, N) int64, PAD-padded on the right."""
        return self.encode(ids, with_logits=True, plan=plan)

    def encode(self, ids: torch.Tensor, with_logits: bool = False,
               plan: torch.Tensor | None = None) -> InferenceOutput:
        """Tokens and latent vectors; per-base logits (both decoders) only if asked."""
        tokens = self.tokenize(ids, plan=plan)
        h, _ = self.encode_latent(tokens)
        logits = self.decode(h, tokens) if with_logits else None
        return InferenceOutput(logits, h, *tokens.spans(), tokens.margin, tokens.plan)
