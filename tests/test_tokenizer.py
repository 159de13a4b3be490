"""The learned tokenizer (local token merging): model.md section 2.

Properties checked, each on random seeded inputs:
- tokens are contiguous spans of bases, in order (base2tok starts at 0, steps by 0 or 1);
- every row keeps exactly round(c * n) tokens, and full rows give exactly L = round(c * N);
- token sizes sum to the real bases and equal the bincount of base2tok;
- the unmerge gather equals the dense S^T Z product, and composing merge steps by gather equals
  the product of their dense one-hot matrices;
- no merge crosses a window boundary (offset 0 and w/2), PAD, or a mask boundary;
- the latent (ToMe-style) merge meets its budget K and keeps sizes and PAD intact.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import MASK, PAD, expected_tokens, random_ids
from mergedna_cli.model.merging import TokenState, merge_adjacent, merge_bipartite

COMPRESSIONS = [0.3, 0.5, 0.7]


def _tokenize(model, ids, compression):
    with torch.no_grad():
        return model.tokenize(ids, compression)


def _real_lengths(ids: torch.Tensor) -> list[int]:
    return (ids != PAD).sum(1).tolist()


# -- 1. contiguity ---------------------------------------------------------------------------

@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tokens_are_contiguous_spans_in_order(any_tokenizer_model, compression):
    ids = random_ids(4, 256, seed=11, lengths=[256, 200, 131, 17])
    tokens = _tokenize(any_tokenizer_model, ids, compression)
    b2t = tokens.base2tok
    assert b2t.shape == ids.shape
    assert b2t.dtype in (torch.int64, torch.int32)
    for row, n in enumerate(_real_lengths(ids)):
        real = b2t[row, :n]
        assert real[0].item() == 0, f"row {row}: first base is in token {real[0].item()}, not 0"
        steps = real[1:] - real[:-1]
        bad = ((steps != 0) & (steps != 1)).nonzero().flatten().tolist()
        assert not bad, f"row {row}: base2tok jumps by {steps[bad].tolist()} at bases {bad}"
        # the spans cover exactly the row's real tokens, and only real tokens
        n_tokens = int(tokens.state.valid[row].sum())
        assert real[-1].item() == n_tokens - 1
        assert tokens.state.valid[row, real].all()
        assert tokens.state.valid[row, :n_tokens].all() and not tokens.state.valid[row, n_tokens:].any(), \
            "real tokens must come first, PAD tokens after them"


def test_token_positions_are_mean_base_positions(tiny_model):
    """A token's rotary position is the mean position of its bases (model.md section 1)."""
    ids = random_ids(2, 256, seed=12, lengths=[256, 190])
    tokens = _tokenize(tiny_model, ids, 0.5)
    for row, n in enumerate(_real_lengths(ids)):
        L = int(tokens.state.valid[row].sum())
        b2t = tokens.base2tok[row, :n]
        sums = torch.zeros(L, dtype=torch.float64).index_add_(0, b2t, torch.arange(n, dtype=torch.float64))
        counts = torch.bincount(b2t, minlength=L).double()
        torch.testing.assert_close(tokens.state.pos[row, :L].double(), sums / counts, atol=1e-3, rtol=0)


# -- 2. exact length -------------------------------------------------------------------------

@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("length", [256, 203])
def test_full_rows_keep_exactly_L_tokens(any_tokenizer_model, compression, length):
    ids = random_ids(4, length, seed=21)
    tokens = _tokenize(any_tokenizer_model, ids, compression)
    L = expected_tokens(compression, length)
    assert tokens.state.x.shape[:2] == (4, L)
    for field in ("size", "pos", "valid", "masked"):
        assert getattr(tokens.state, field).shape == (4, L), field
    assert tokens.state.valid.all(), "a full-length row lost or gained a real token"
    assert (tokens.base2tok.max(1).values == L - 1).all()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_padded_rows_keep_round_c_n_real_tokens(any_tokenizer_model, compression):
    lengths = [256, 255, 240, 199, 128, 37, 5, 1]
    ids = random_ids(len(lengths), 256, seed=22, lengths=lengths)
    tokens = _tokenize(any_tokenizer_model, ids, compression)
    # the tensor is rectangular at the length of a full row
    assert tokens.state.x.shape[1] == expected_tokens(compression, 256)
    got = tokens.state.valid.sum(1).tolist()
    want = [expected_tokens(compression, n) for n in lengths]
    assert got == want, f"real tokens per row {got}, expected round(c*n) = {want}"


def test_inference_uses_configured_compression(tiny_model):
    ids = random_ids(2, 256, seed=23)
    with torch.no_grad():
        out = tiny_model(ids)
    L = expected_tokens(tiny_model.config.compression, 256)
    assert out.logits.shape == (2, 256, 4)
    assert out.token_vectors.shape == (2, L, tiny_model.config.d_model)
    assert out.token_sizes.shape == out.token_mask.shape == (2, L)
    assert out.base2tok.shape == (2, 256)


# -- 3. sizes --------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_token_sizes_sum_to_real_bases_and_match_base2tok(any_tokenizer_model, compression):
    lengths = [256, 250, 129, 64]
    ids = random_ids(4, 256, seed=31, lengths=lengths)
    tokens = _tokenize(any_tokenizer_model, ids, compression)
    size = tokens.state.size
    L = size.shape[1]
    for row, n in enumerate(lengths):
        valid = tokens.state.valid[row]
        real_sizes = torch.where(valid, size[row], torch.zeros_like(size[row]))
        assert real_sizes.sum().item() == pytest.approx(n), f"row {row}: sizes do not sum to {n} bases"
        counts = torch.bincount(tokens.base2tok[row, :n], minlength=L)
        assert counts.shape[0] == L
        torch.testing.assert_close(real_sizes, counts.to(real_sizes.dtype), atol=1e-4, rtol=0)
        assert (size[row][valid] >= 1 - 1e-4).all()


def test_inference_output_token_sizes(tiny_model):
    lengths = [256, 200, 93]
    ids = random_ids(3, 256, seed=32, lengths=lengths)
    with torch.no_grad():
        out = tiny_model(ids)
    assert out.token_sizes.dtype == torch.int64
    assert (out.token_sizes.sum(1) == torch.tensor(lengths)).all()
    assert ((out.token_sizes > 0) == out.token_mask).all(), "real tokens have size > 0, PAD tokens 0"
    for row, n in enumerate(lengths):
        counts = torch.bincount(out.base2tok[row, :n], minlength=out.token_sizes.shape[1])
        assert torch.equal(counts, out.token_sizes[row])


# -- 4. unmerge = dense S^T Z ----------------------------------------------------------------

def _one_hot_assignment(index: torch.Tensor, n_new: int, keep: torch.Tensor) -> torch.Tensor:
    """Dense S (n_new, n_old): S[j, i] = 1 when old item i (kept) belongs to new item j."""
    S = torch.zeros(n_new, index.shape[0], dtype=torch.float64)
    cols = keep.nonzero().flatten()
    S[index[cols], cols] = 1.0
    return S


def test_unmerge_gather_equals_dense_product(tiny_model):
    ids = random_ids(2, 48, seed=41, lengths=[48, 33])
    tokens = _tokenize(tiny_model, ids, 0.5)
    B, L = tokens.state.valid.shape
    Z = torch.randn(B, L, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    gathered = Z.gather(1, tokens.base2tok[..., None].expand(-1, -1, Z.shape[-1]))
    for row in range(B):
        real = tokens.base_valid[row]
        S = _one_hot_assignment(tokens.base2tok[row], L, real)  # (L, N)
        assert torch.equal(S.sum(0), real.double()), "every real base belongs to exactly one token"
        dense = S.T @ Z[row]  # (N, D)
        torch.testing.assert_close(gathered[row][real], dense[real], atol=0, rtol=0)
        # S S^T is diagonal with the token sizes (spans do not overlap)
        sizes = torch.where(tokens.state.valid[row], tokens.state.size[row], torch.zeros(L)).double()
        torch.testing.assert_close(S @ S.T, torch.diag(sizes), atol=1e-6, rtol=0)


def test_model_decode_unmerges_by_base2tok(tiny_model):
    """The model's own decode path: with the decoders stripped to identities, decode(h) must return
    S^T h, i.e. every real base gets exactly its token's vector."""
    model = copy.deepcopy(tiny_model)
    model.latent_decoder = nn.ModuleList()
    model.local_decoder = nn.ModuleList()
    nn.init.zeros_(model.token_offset.weight)
    model.out_norm = nn.Identity()
    model.head = nn.Identity()
    ids = random_ids(2, 64, seed=42, lengths=[64, 45])
    tokens = _tokenize(model, ids, 0.4)
    B, L = tokens.state.valid.shape
    h = torch.randn(B, L, model.config.d_model, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        per_base = model.decode(h, tokens)  # (B, N, D)
    for row in range(B):
        real = tokens.base_valid[row]
        S = _one_hot_assignment(tokens.base2tok[row], L, real).float()
        torch.testing.assert_close(per_base[row][real], (S.T @ h[row])[real], atol=1e-6, rtol=0)


def _random_state(B, T, D, seed, lengths=None, mask_prob=0.0):
    gen = torch.Generator().manual_seed(seed)
    valid = torch.ones(B, T, dtype=torch.bool)
    if lengths is not None:
        for row, n in enumerate(lengths):
            valid[row, n:] = False
    masked = (torch.rand(B, T, generator=gen) < mask_prob) & valid
    state = TokenState(x=torch.randn(B, T, D, generator=gen, dtype=torch.float64),
                       size=torch.ones(B, T, dtype=torch.float64),
                       pos=torch.arange(T, dtype=torch.float64).expand(B, T).clone(),
                       valid=valid, masked=masked)
    group = torch.randn(B, T, 8, generator=gen, dtype=torch.float64)
    return state, group, gen


def test_two_merge_steps_compose_by_gather_like_dense_matrices():
    """Composing two merge steps by gather == product of their one-hot matrices, and the pooled
    vectors are the size-weighted means S diag(size) X / size (the gate is 1 in the forward pass)."""
    B, T, D = 3, 40, 5
    state, group1, gen = _random_state(B, T, D, seed=43, lengths=[40, 31, 12])
    n_real = state.valid.sum(1)
    t1 = (n_real * 3 + 3) // 4
    s1, idx1, *_ = merge_adjacent(state, group1, t1, layout=30, window=8, window_offset=0)
    group2 = torch.randn(B, s1.x.shape[1], 8, generator=gen, dtype=torch.float64)
    t2 = (n_real + 1) // 2
    s2, idx2, *_ = merge_adjacent(s1, group2, t2, layout=20, window=8, window_offset=4)
    base2tok = idx2.gather(1, idx1.clamp(max=s1.x.shape[1] - 1))
    for row in range(B):
        keep0 = state.valid[row]
        keep1 = s1.valid[row]
        S1 = _one_hot_assignment(idx1[row], s1.x.shape[1], keep0)
        S2 = _one_hot_assignment(idx2[row], s2.x.shape[1], keep1)
        S = _one_hot_assignment(base2tok[row], s2.x.shape[1], keep0)
        torch.testing.assert_close(S2 @ S1, S, atol=0, rtol=0)
        n2 = int(s2.valid[row].sum())
        sizes = S.sum(1)
        torch.testing.assert_close(s2.size[row][:n2], sizes[:n2], atol=1e-9, rtol=0)
        mean_x = (S @ state.x[row]) / sizes.clamp(min=1)[:, None]
        torch.testing.assert_close(s2.x[row][:n2], mean_x[:n2], atol=1e-9, rtol=1e-9)
        mean_pos = (S @ state.pos[row]) / sizes.clamp(min=1)
        torch.testing.assert_close(s2.pos[row][:n2], mean_pos[:n2], atol=1e-9, rtol=0)


# -- 5. merge constraints: windows, PAD, masks -----------------------------------------------

def _joined_edges(new_index: torch.Tensor) -> torch.Tensor:
    """(B, T-1) bool: old tokens t and t+1 ended up in the same new token."""
    return new_index[:, 1:] == new_index[:, :-1]


@pytest.mark.parametrize("window", [4, 8, 16])
@pytest.mark.parametrize("half_offset", [False, True])
def test_merge_adjacent_never_crosses_a_window_boundary(window, half_offset):
    offset = window // 2 if half_offset else 0
    B, T = 6, 96
    edges = torch.arange(1, T)  # edge t-1 -> t; the right token t starts a window when (t + off) % w == 0
    boundary = (edges + offset) % window == 0
    n_windows = int(boundary.sum()) + 1
    for seed in range(10):
        state, group, _ = _random_state(B, T, 4, seed=100 + seed)
        # budgets from mild to the tightest legal one (every window collapsed to one token)
        target = torch.tensor([T - 5, 3 * T // 4, T // 2, T // 3, n_windows + 1, n_windows])
        new_state, new_index, *_ = merge_adjacent(state, group, target, layout=T, window=window,
                                              window_offset=offset)
        joined = _joined_edges(new_index)
        crossing = joined & boundary
        assert not crossing.any(), (
            f"seed {seed}, window {window}, offset {offset}: merges across window boundaries at "
            f"edges {crossing.nonzero().tolist()[:5]}")
        assert torch.equal(new_state.valid.sum(1), target), "a row missed its exact budget"
        # the tightest budget collapses each window to a single token
        assert int(joined[-1].sum()) == T - n_windows


def test_tokenizer_merge_steps_respect_shifted_windows(any_tokenizer_model, monkeypatch):
    """Model level: spy on every merge step of tokenize(). Window offsets must alternate 0, w/2,
    0, ... (no permanent boundary) and no step may join an edge that crosses its windows."""
    import mergedna_cli.model.network as network

    calls = []

    def spy(state, group, target, layout, window, window_offset, chunk=0, forced=None):
        step = merge_adjacent(state, group, target, layout, window, window_offset, chunk, forced)
        calls.append((window, window_offset, step.new_index.clone(), state.valid.clone()))
        return step

    monkeypatch.setattr(network, "merge_adjacent", spy)
    model = any_tokenizer_model
    w = model.config.window
    ids = random_ids(3, 256, seed=51, lengths=[256, 222, 100])
    _tokenize(model, ids, 0.3)
    assert len(calls) == model.config.n_local_encoder
    assert [c[1] for c in calls] == [(i % 2) * (w // 2) for i in range(len(calls))]
    for step, (window, offset, new_index, valid) in enumerate(calls):
        assert window == w
        T = new_index.shape[1]
        boundary = (torch.arange(1, T) + offset) % window == 0
        crossing = _joined_edges(new_index) & boundary & valid[:, 1:]
        assert not crossing.any(), f"merge step {step} joined edges across window boundaries"


def test_merge_adjacent_never_merges_pad_with_real_tokens():
    B, T = 5, 64
    lengths = [64, 63, 40, 9, 1]
    for seed in range(10):
        state, group, _ = _random_state(B, T, 4, seed=200 + seed, lengths=lengths)
        n_real = torch.tensor(lengths)
        target = (n_real + 1) // 2
        new_state, new_index, *_ = merge_adjacent(state, group, target, layout=32, window=8, window_offset=0)
        joined = _joined_edges(new_index)
        pad_edge = ~(state.valid[:, 1:] & state.valid[:, :-1])
        assert not (joined & pad_edge).any(), "a PAD token was merged"
        assert torch.equal(new_state.valid.sum(1), target)
        for row in range(B):
            real_slots = set(new_index[row][state.valid[row]].tolist())
            pad_slots = set(new_index[row][~state.valid[row]].tolist())
            assert not real_slots & pad_slots, f"row {row}: PAD shares a token with real bases"
        # sizes of real tokens count only real bases
        real_size = torch.where(new_state.valid, new_state.size, torch.zeros_like(new_state.size))
        torch.testing.assert_close(real_size.sum(1), n_real.double())


def test_tokenizer_pad_bases_stay_out_of_real_tokens(tiny_model):
    """End to end with PAD: tokens reached from real bases contain only real bases (the size check)
    and PAD bases never count towards a real token."""
    lengths = [256, 201, 57]
    ids = random_ids(3, 256, seed=52, lengths=lengths)
    tokens = _tokenize(tiny_model, ids, 0.5)
    for row, n in enumerate(lengths):
        L = tokens.state.size.shape[1]
        counts_real = torch.bincount(tokens.base2tok[row, :n], minlength=L).double()
        valid = tokens.state.valid[row]
        torch.testing.assert_close(tokens.state.size[row][valid].double(), counts_real[valid])
        # no real token is made partly of PAD: every base mapped to a real token is a real base
        pad_b2t = tokens.base2tok[row, n:]
        if pad_b2t.numel():
            assert not valid[pad_b2t].any(), f"row {row}: PAD bases mapped into a real token"


def test_inference_base2tok_of_pad_bases_never_names_a_real_token(tiny_model):
    """InferenceOutput.base2tok is 'the token index of every base'. A PAD base must not claim to
    belong to a real token, also when the row's real tokens fill the whole layout (n = N - 1 at
    c = 0.5 keeps round(c * n) = round(c * N) real tokens, so no PAD token slot is left)."""
    ids = random_ids(2, 256, seed=53, lengths=[256, 255])
    with torch.no_grad():
        out = tiny_model(ids)
    assert out.token_mask[1].all(), "precondition: row 1 has no PAD token slot"
    pad = ids == PAD
    pad_b2t = out.base2tok[pad]
    in_range = (pad_b2t >= 0) & (pad_b2t < out.token_mask.shape[1])
    names_real_token = in_range.clone()
    rows = pad.nonzero()[:, 0]
    names_real_token[in_range] = out.token_mask[rows[in_range], pad_b2t[in_range]]
    assert not names_real_token.any(), (
        f"PAD bases {pad.nonzero()[names_real_token].tolist()} have base2tok "
        f"{pad_b2t[names_real_token].tolist()}, which are real tokens")


def _with_mask_spans(ids: torch.Tensor, seed: int) -> torch.Tensor:
    """Mask random spans (lengths 1-6) of real bases, plus guaranteed isolated single masks."""
    gen = torch.Generator().manual_seed(seed)
    out = ids.clone()
    B, N = ids.shape
    for row in range(B):
        n = int((ids[row] != PAD).sum())
        for start in torch.randint(0, n, (n // 20 + 1,), generator=gen).tolist():
            span = int(torch.randint(1, 7, (1,), generator=gen))
            out[row, start:min(n, start + span)] = MASK
    return out


@pytest.mark.parametrize("compression", [0.3, 0.5])
def test_no_token_crosses_a_mask_boundary(any_tokenizer_model, compression):
    lengths = [256, 230, 120]
    ids = _with_mask_spans(random_ids(3, 256, seed=61, lengths=lengths), seed=62)
    singles = [(0, 10), (0, 100), (1, 50), (2, 3), (2, 119)]  # isolated single masked bases
    for row, pos in singles:
        ids[row, pos - 1: pos + 2] = torch.tensor([0, MASK, 3])
    tokens = _tokenize(any_tokenizer_model, ids, compression)
    L = tokens.state.size.shape[1]
    for row, n in enumerate(lengths):
        b2t = tokens.base2tok[row, :n]
        is_mask = (ids[row, :n] == MASK).long()
        masked_bases = torch.zeros(L, dtype=torch.long).index_add_(0, b2t, is_mask)
        sizes = torch.bincount(b2t, minlength=L)
        valid = tokens.state.valid[row]
        mixed = valid & (masked_bases > 0) & (masked_bases < sizes)
        assert not mixed.any(), (
            f"row {row}, c={compression}: tokens {mixed.nonzero().flatten().tolist()} mix MASK and "
            "unmasked bases")
        assert torch.equal(tokens.state.masked[row][valid], (masked_bases > 0)[valid]), \
            "TokenState.masked disagrees with the bases"
    for row, pos in singles:
        tok = tokens.base2tok[row, pos]
        assert tokens.state.size[row, tok].item() == pytest.approx(1.0), \
            f"single masked base {row}:{pos} was merged into a token of size {tokens.state.size[row, tok].item()}"
        assert (tokens.base2tok[row] == tok).sum() == 1


def test_merge_adjacent_never_joins_masked_and_unmasked():
    B, T = 4, 64
    for seed in range(10):
        state, group, _ = _random_state(B, T, 4, seed=300 + seed, lengths=[64, 60, 33, 64],
                                        mask_prob=0.3)
        target = (state.valid.sum(1) + 1) // 2
        new_state, new_index, *_ = merge_adjacent(state, group, target, layout=T, window=8, window_offset=4)
        boundary = state.masked[:, 1:] != state.masked[:, :-1]
        assert not (_joined_edges(new_index) & boundary).any(), "merge across a mask boundary"
        # masked flag of a new token: all of its members are masked
        for row in range(B):
            members = new_index[row][state.valid[row]]
            flags = state.masked[row][state.valid[row]]
            n_new = int(new_state.valid[row].sum())
            n_masked = torch.zeros(n_new, dtype=torch.long).index_add_(0, members, flags.long())
            n_all = torch.bincount(members, minlength=n_new)
            assert ((n_masked == 0) | (n_masked == n_all)).all()
            assert torch.equal(new_state.masked[row][:n_new], n_masked > 0)


# -- latent (ToMe-style) merge ---------------------------------------------------------------

def test_merge_bipartite_meets_budget_and_keeps_pad_apart():
    B, T = 4, 50
    lengths = [50, 49, 20, 3]
    for seed in range(5):
        state, group, _ = _random_state(B, T, 4, seed=400 + seed, lengths=lengths)
        n_real = torch.tensor(lengths)
        target = (n_real + 1) // 2
        new_state, new_index = merge_bipartite(state, group, target, layout=25)
        assert torch.equal(new_state.valid.sum(1), target)
        real_size = torch.where(new_state.valid, new_state.size, torch.zeros_like(new_state.size))
        torch.testing.assert_close(real_size.sum(1), n_real.double())
        for row in range(B):
            real_slots = new_index[row][state.valid[row]]
            pad_slots = set(new_index[row][~state.valid[row]].tolist())
            assert not set(real_slots.tolist()) & pad_slots
            assert set(real_slots.tolist()) == set(range(int(target[row])))
            # kept tokens stay in order: the kept member of a slot is its odd (B) token, or its
            # only member when an even (A) token was not joined
            n_new = int(target[row])
            slot_of = new_index[row, :lengths[row]]
            kept_pos = []
            for slot in range(n_new):
                members = (slot_of == slot).nonzero().flatten()
                odd = members[members % 2 == 1]
                assert odd.numel() <= 1
                kept_pos.append(int(odd[0]) if odd.numel() else int(members[0]))
                if not odd.numel():
                    assert members.numel() == 1
            assert kept_pos == sorted(kept_pos), f"row {row}: kept tokens out of order"


def test_latent_merge_budget_in_encode_latent(tiny_model):
    ids = random_ids(3, 256, seed=71, lengths=[256, 180, 40])
    with torch.no_grad():
        tokens = tiny_model.tokenize(ids, 0.5)
        h, tok2lat = tiny_model.encode_latent(tokens, merge_ratio=0.5)
        h_plain, none = tiny_model.encode_latent(tokens)
    assert none is None
    assert h.shape == h_plain.shape == tokens.state.x.shape
    valid = tokens.state.valid
    for row in range(3):
        L_real = int(valid[row].sum())
        groups = tok2lat[row][valid[row]].unique()
        assert groups.numel() == expected_tokens(0.5, L_real)
        # unmerge K -> L is a gather: tokens of the same latent group get identical vectors
        for g in groups[:10].tolist():
            members = (tok2lat[row] == g) & valid[row]
            vecs = h[row][members]
            torch.testing.assert_close(vecs, vecs[:1].expand_as(vecs), atol=0, rtol=0)
