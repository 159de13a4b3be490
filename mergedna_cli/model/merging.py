"""Token merging: the learned tokenizer (adjacent merges) and the latent merge (ToMe-style).

Everything is rectangular and vectorised: a merge step maps each old token to a new slot with an
integer index (B, T) -> [0, layout], pools with scatter_add, and composes with earlier maps by
`gather`. Slot `layout` is a dummy that swallows PAD tokens past the new length, so every row of
a batch keeps the same length while each row still meets its own exact budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")
# Window-crossing edges are only a fallback when a row has too few legal edges to meet its
# budget (only possible under extreme masking); cosine scores live in [-1, 1], so -4 ranks them last.
WINDOW_PENALTY = 4.0


@dataclass
class TokenState:
    """A batch of tokens. x (B, T, D); size, pos (B, T) float; valid, masked (B, T) bool."""

    x: torch.Tensor
    size: torch.Tensor    # bases per token (PAD tokens count 1 so pooling never divides by 0)
    pos: torch.Tensor     # mean base position, drives rotary phases
    valid: torch.Tensor   # False for PAD
    masked: torch.Tensor  # True for tokens made of MASK bases

    def detach(self) -> "TokenState":
        return TokenState(self.x.detach(), self.size, self.pos, self.valid, self.masked)


def exact_budget_targets(n_real: torch.Tensor, keep_num: int, keep_den: int) -> torch.Tensor:
    """round(n * keep_num / keep_den) in integer arithmetic, at least 1 (tensors or ints)."""
    return ((n_real * keep_num + keep_den // 2) // keep_den).clamp(min=1) if torch.is_tensor(n_real) \
        else max(1, (n_real * keep_num + keep_den // 2) // keep_den)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """F.normalize(x, dim=-1), the same values: x / max(|x|, 1e-12). Written out because the ONNX
    exporter expands F.normalize's norm to x's full shape before dividing (an extra copy)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _tie_broken(priority: torch.Tensor) -> torch.Tensor:
    """The ranking key: a tiny left-favouring tie-breaker (1e-6 per position, far below any
    meaningful score gap) makes equal scores, as in homopolymers, rank identically in PyTorch and
    ONNX Runtime. The models were trained with it: it is part of the tokenizer, not only a tie rule."""
    T = priority.shape[1]
    return priority - torch.arange(T, device=priority.device, dtype=priority.dtype) * 1e-6


def _rank_desc(priority: torch.Tensor) -> torch.Tensor:
    """Rank of each entry in its row, 0 = highest priority (keys of `_tie_broken`).
    topk over the whole row is a full sort that exports to ONNX (argsort(stable=True) does not)."""
    key = _tie_broken(priority)
    return _ranks_of(key.topk(key.shape[1], dim=1).indices)


def _cut_gap(sorted_key: torch.Tensor, cut: torch.Tensor, has_cut: torch.Tensor) -> torch.Tensor:
    """How far the last edge that merges ranks above the first that does not. sorted_key (B, E)
    in ranking order; cut (B, C) the position of the first edge left unmerged; has_cut (B, C)
    False where no comparison decides anything (no merge, or every edge merges). +inf there, and
    where the first unmerged edge is illegal (-inf: it could never merge)."""
    E = sorted_key.shape[1]
    if E == 0:  # a one-token row has no edge
        return torch.full(cut.shape, float("inf"), dtype=sorted_key.dtype, device=sorted_key.device)
    last_in = sorted_key.gather(1, (cut - 1).clamp(0, E - 1))
    first_out = sorted_key.gather(1, cut.clamp(0, E - 1))
    decided = has_cut & (first_out > NEG_INF)
    return torch.where(decided, last_in - first_out, torch.full_like(last_in, float("inf")))


def _ranks_of(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation per row: order[b, r] = t  ->  rank[b, t] = r."""
    ranks = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


def _rank_in_chunk(priority: torch.Tensor, edge_chunk: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """Rank of each edge among the edges of its chunk, 0 = highest priority, ties broken as in
    `_rank_desc`: chunk-major integer keys over the row ranks, then each chunk's first rank
    subtracted. Integer keys keep the order exact in PyTorch and ONNX alike."""
    return _chunk_order(_tie_broken(priority), edge_chunk, n_chunks)[0]


def _chunk_order(key: torch.Tensor, edge_chunk: torch.Tensor, n_chunks: int):
    """For ranking keys (`_tie_broken`): (rank within chunk (B, E), chunk-major edge order
    (B, E), first rank (B, n_chunks), edges per chunk (B, n_chunks))."""
    T = key.shape[1]
    composite = (n_chunks - edge_chunk) * T - _ranks_of(key.topk(T, dim=1).indices)  # higher = earlier
    edges_per_chunk = torch.zeros(edge_chunk.shape[0], n_chunks, dtype=torch.long, device=key.device
                                  ).scatter_add(1, edge_chunk, torch.ones_like(edge_chunk))
    first_rank = edges_per_chunk.cumsum(1) - edges_per_chunk
    order = composite.topk(T, dim=1).indices
    return _ranks_of(order) - first_rank.gather(1, edge_chunk), order, first_rank, edges_per_chunk


def chunk_of(pos: torch.Tensor, chunk: int, n_chunks: int) -> torch.Tensor:
    """Budget chunk (B, T) of every token from its mean base position. A token never spans two
    chunks, so its mean lies inside its own; the half-base shift keeps rounding off the edges."""
    return torch.div(pos + 0.5, chunk, rounding_mode="floor").long().clamp(0, n_chunks - 1)


def _layout(static_len: int, new_index: torch.Tensor, valid: torch.Tensor) -> int:
    """Length of the merged tensor: the shape-derived budget, widened in eager mode if a row
    could not meet its budget, so that no real token is ever dropped."""
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return static_len
    needed = int(new_index.masked_fill(~valid, -1).max()) + 1
    return max(static_len, needed)


class _ScatterRowsAdd(torch.autograd.Function):
    """data[rows[b, t, 0], rows[b, t, 1]] += values[b, t] in order: scatter_add of whole rows, exported
    as one ScatterND (ONNX Runtime's ScatterElements adds element by element, ~3x slower here)."""

    @staticmethod
    def forward(ctx, data, rows, values):
        return data.index_put(tuple(rows.unbind(-1)), values, accumulate=True)

    @staticmethod
    def symbolic(g, data, rows, values):
        return g.op("ScatterND", data, rows, values, reduction_s="add")


def pool(state: TokenState, new_index: torch.Tensor, layout: int, merged: torch.Tensor,
         merge_score: torch.Tensor) -> TokenState:
    """Pool old tokens into `layout` new slots by size-weighted means.

    new_index (B, T): slot of every old token (values >= layout are dropped PAD tokens).
    merged (B, T): this old token joined another one; merge_score (B, T) the score of that join.
    The straight-through gate c + stopgrad(1 - c), with c the mean merge score of a new token,
    is 1 in the forward pass but gives the grouping projection a gradient.
    """
    B, T, D = state.x.shape
    index = new_index.clamp(max=layout)
    slots = layout + 1

    def pooled(values: torch.Tensor) -> torch.Tensor:  # (B, T) or (B, T, D) -> (B, layout[, D])
        if values.dim() == 2:
            return values.new_zeros(B, slots).scatter_add(1, index, values)[:, :layout]
        if torch.onnx.is_in_onnx_export():  # the same sums, whole rows at a time
            rows = torch.stack((torch.arange(B, device=index.device)[:, None].expand(B, T), index), -1)
            return _ScatterRowsAdd.apply(values.new_zeros(B, slots, values.shape[-1]), rows, values)[:, :layout]
        return values.new_zeros(B, slots, values.shape[-1]).scatter_add(
            1, index[..., None].expand(-1, -1, values.shape[-1]), values)[:, :layout]

    size = pooled(state.size)
    weight = size.clamp(min=1e-6)
    x = pooled(state.x * state.size[..., None]) / weight[..., None]
    pos = pooled(state.pos * state.size) / weight
    valid = pooled(state.valid.float()) > 0
    masked = pooled(state.masked.float()) > 0

    score = torch.where(merged, merge_score, torch.zeros_like(merge_score))
    n_merges = pooled(merged.float())
    gate = torch.where(n_merges > 0, pooled(score) / n_merges.clamp(min=1), torch.ones_like(n_merges))
    x = x * (gate + (1 - gate).detach())[..., None]
    return TokenState(x, size, pos, valid, masked)


class MergeStep(NamedTuple):
    state: TokenState        # the merged tokens
    new_index: torch.Tensor  # (B, T) old token -> new slot
    join: torch.Tensor       # (B, T-1) edge t joined tokens t and t+1
    margin: torch.Tensor     # (B,) smallest gap at a budget cut (see merge_adjacent); +inf if none


def merge_adjacent(state: TokenState, group: torch.Tensor, target: torch.Tensor, layout: int,
                   window: int, window_offset: int, chunk: int = 0,
                   forced: torch.Tensor | None = None) -> MergeStep:
    """One local merge step: join right-neighbour pairs until each row has `target` real tokens.

    group (B, T, G): grouping projections; the score of edge (t, t+1) is their cosine similarity.
    target (B,): real tokens each row keeps; or, with `chunk` > 0, (B, n_chunks): real tokens each
    chunk of `chunk` bases keeps, and no merge crosses a chunk edge.
    Rules: only adjacent tokens merge; never across PAD or a mask boundary; not across a window
    boundary (windows of `window` tokens starting at -window_offset).

    The decision compares float scores, so it is only as exact as they are: `margin` is how far
    the lowest-ranked edge that merges ranks above the highest-ranked one that does not (per row,
    the smallest over its chunks). Two runtimes whose scores differ by less than margin / 2 make
    the same joins. forced (B, T-1) int: 1 join, 0 keep, -1 decide here; joins decided elsewhere
    (engine/merge_plan.py) for rows whose margin was too small to trust.
    """
    B, T, _ = state.x.shape
    g = unit_rows(group)
    score = (g[:, :-1] * g[:, 1:]).sum(-1)  # (B, T-1), edge t joins tokens t and t+1
    legal = state.valid[:, :-1] & state.valid[:, 1:] & (state.masked[:, :-1] == state.masked[:, 1:])
    if chunk:
        token_chunk = chunk_of(state.pos, chunk, target.shape[1])
        legal = legal & (token_chunk[:, :-1] == token_chunk[:, 1:])
    edge = torch.arange(1, T, device=score.device)
    inside_window = (edge + window_offset) % window != 0
    priority = torch.where(inside_window, score, score - WINDOW_PENALTY).masked_fill(~legal, NEG_INF)
    key = _tie_broken(priority)
    if chunk:
        edge_chunk = token_chunk[:, :-1]
        rank, order, first_rank, edges_per_chunk = _chunk_order(key, edge_chunk, target.shape[1])
        tokens_per_chunk = torch.zeros_like(target).scatter_add(1, token_chunk, state.valid.long())
        merges_per_chunk = (tokens_per_chunk - target).clamp(min=0)  # (B, n_chunks)
        n_merge = merges_per_chunk.gather(1, edge_chunk)  # (B, T-1)
        sorted_key = key.gather(1, order)
        has_cut = (merges_per_chunk > 0) & (merges_per_chunk < edges_per_chunk)
        margin = _cut_gap(sorted_key, first_rank + merges_per_chunk, has_cut).min(1).values
    else:
        sorted_key, order = key.topk(key.shape[1], dim=1)
        rank = _ranks_of(order)
        n_merge = (state.valid.sum(1) - target).clamp(min=0)[:, None]  # (B, 1)
        margin = _cut_gap(sorted_key, n_merge, (n_merge > 0) & (n_merge < key.shape[1]))[:, 0]
    join = (rank < n_merge) & legal  # (B, T-1)
    if forced is not None:
        join = ((forced == 1) | ((forced < 0) & join)) & legal  # logic ops: ONNX Runtime has no boolean Where

    starts_new = torch.cat((torch.ones_like(join[:, :1]), ~join), dim=1).long()  # (B, T)
    new_index = starts_new.cumsum(1) - 1
    merged = torch.cat((torch.zeros_like(join[:, :1]), join), dim=1)  # token t joined t-1
    edge_score = F.pad(score, (1, 0))
    layout = _layout(layout, new_index, state.valid)
    return MergeStep(pool(state, new_index, layout, merged, edge_score), new_index, join, margin)


def merge_bipartite(state: TokenState, group: torch.Tensor, target: torch.Tensor,
                    layout: int) -> tuple[TokenState, torch.Tensor]:
    """One ToMe-style global merge: even tokens (A) join their most similar odd token (B).

    Adjacent or not; the top-(n - target) A tokens by similarity merge. Kept tokens stay in order.
    """
    B, T, _ = state.x.shape
    g = unit_rows(group)
    sim = g[:, 0::2] @ g[:, 1::2].transpose(1, 2)  # (B, TA, TB)
    sim = sim.masked_fill(~state.valid[:, None, 1::2], NEG_INF)
    best, match = sim.max(dim=-1)  # (B, TA)
    legal = state.valid[:, 0::2] & torch.isfinite(best)
    n_merge = (state.valid.sum(1) - target).clamp(min=0)
    join_a = (_rank_desc(best.masked_fill(~legal, NEG_INF)) < n_merge[:, None]) & legal

    a_pos = torch.arange(0, T, 2, device=state.x.device).expand(B, -1)
    keep = torch.ones(B, T, dtype=torch.bool, device=state.x.device).scatter(1, a_pos, ~join_a)
    kept_index = keep.long().cumsum(1) - 1
    target_slot = kept_index[:, 1::2].gather(1, match)  # slot of each A token's match
    a_slot = torch.where(join_a, target_slot, kept_index[:, 0::2])
    new_index = kept_index.scatter(1, a_pos, a_slot)
    merged = torch.zeros(B, T, dtype=torch.bool, device=state.x.device).scatter(1, a_pos, join_a)
    score = torch.zeros(B, T, device=state.x.device, dtype=best.dtype).scatter(
        1, a_pos, best.masked_fill(~legal, 0.0))
    layout = _layout(layout, new_index, state.valid)
    return pool(state, new_index, layout, merged, score), new_index
