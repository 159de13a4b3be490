"""The tokenizer's merge budget per chunk (merge_budget = "chunk").

Chunk budget invariants, on random seeded inputs:
- every chunk of merge_chunk bases keeps exactly round(c * its real bases) tokens;
- no token spans two chunks;
- a row tokenizes identically alone and inside a PAD-padded batch, and a mask changes the
  tokenization of its own chunk only through the scores, never another chunk's budget.
Ranking inside a chunk equals the row ranking restricted to the chunk (ties leftmost).
"""

from __future__ import annotations

import pytest
import torch

from conftest import build_model, expected_tokens, random_ids, tiny_config
from mergedna_cli.alphabet import MASK
from mergedna_cli.model.config import MergeDNAConfig
from mergedna_cli.model.merging import _rank_desc, _rank_in_chunk

CHUNK = 32


def chunk_model(chunk: int = CHUNK, **overrides):
    cfg = tiny_config()
    return build_model(MergeDNAConfig(**{**cfg.to_dict(), "merge_budget": "chunk", "merge_chunk": chunk,
                                         **overrides}), seed=3).eval()


def tokenize(model, ids, compression=None):
    with torch.no_grad():
        return model.tokenize(ids, compression)


def tokens_per_chunk(base2tok_row: torch.Tensor, n_real: int, chunk: int) -> list[int]:
    real = base2tok_row[:n_real]
    return [len(torch.unique(real[start:start + chunk])) for start in range(0, n_real, chunk)]


@pytest.mark.parametrize("compression", [0.3, 0.5, 0.7])
def test_every_chunk_keeps_exactly_its_share(compression):
    model = chunk_model()
    lengths = [256, 203, 64, 31]
    ids = random_ids(4, 256, seed=5, lengths=lengths)
    tokens = tokenize(model, ids, compression)
    for row, n in enumerate(lengths):
        sizes = [min(CHUNK, n - start) for start in range(0, n, CHUNK)]
        # PAD never counts; N bases are real bases (they are tokenized like any other)
        assert tokens_per_chunk(tokens.base2tok[row], n, CHUNK) == \
            [expected_tokens(compression, size) for size in sizes], f"row {row}"


def test_no_token_spans_two_chunks():
    model = chunk_model()
    ids = random_ids(3, 256, seed=7, lengths=[256, 250, 100])
    tokens = tokenize(model, ids, 0.3)
    for row, n in enumerate([256, 250, 100]):
        b2t = tokens.base2tok[row, :n]
        edges = torch.arange(CHUNK, n, CHUNK)
        assert (b2t[edges] != b2t[edges - 1]).all(), f"row {row}: a token crosses a chunk edge"


def test_chunk_tokenization_is_padding_invariant():
    model = chunk_model()
    ids = random_ids(3, 256, seed=9, lengths=[256, 180, 77])
    batch = tokenize(model, ids)
    for row, n in enumerate([256, 180, 77]):
        alone = tokenize(model, ids[row:row + 1, :n])
        assert torch.equal(alone.base2tok[0], batch.base2tok[row, :n]), f"row {row}"


def test_a_mask_moves_merges_only_near_it():
    """The budget is per chunk, so a masked base can only change merges through the scores its
    local attention reaches: chunks farther away than the local encoder's reach are unchanged."""
    model = chunk_model(chunk=64)
    ids = random_ids(1, 512, seed=11, with_n=False)
    clean = tokenize(model, ids).base2tok[0]
    masked_ids = ids.clone()
    masked_ids[0, 300] = MASK
    masked = tokenize(model, masked_ids).base2tok[0]
    reach = (model.config.window // 2) * model.config.n_local_encoder * 4  # bases, generously
    # token indices shift after a changed chunk, so compare token boundaries, not indices
    boundary_clean = clean[1:] != clean[:-1]
    boundary_masked = masked[1:] != masked[:-1]
    far = torch.ones(511, dtype=torch.bool)
    far[max(0, 300 - reach) // 64 * 64: min(511, (300 + reach) // 64 * 64 + 64)] = False
    assert torch.equal(boundary_clean[far], boundary_masked[far])


def test_row_budget_still_exact_per_row():
    model = build_model(tiny_config(), seed=0).eval()
    ids = random_ids(2, 256, seed=13, lengths=[256, 150])
    tokens = tokenize(model, ids, 0.5)
    assert tokens.state.valid.sum(1).tolist() == [expected_tokens(0.5, 256), expected_tokens(0.5, 150)]


def test_rank_in_chunk_orders_each_chunk_like_the_row_ranking():
    gen = torch.Generator().manual_seed(3)
    priority = torch.rand(2, 40, generator=gen)
    priority[0, 5:9] = 0.5                    # ties: leftmost first, as in the row ranking
    edge_chunk = (torch.arange(40) // 16).expand(2, 40).contiguous()
    ranks = _rank_in_chunk(priority, edge_chunk, 3)
    for row in range(2):
        for c in range(3):
            inside = edge_chunk[row] == c
            expected = _rank_desc(priority[row:row + 1, inside])[0]
            assert torch.equal(ranks[row, inside], expected)


def test_chunk_config_is_validated():
    from mergedna_cli.errors import ModelError
    with pytest.raises(ModelError, match="merge_budget"):
        MergeDNAConfig(merge_budget="window")
    with pytest.raises(ModelError, match="merge_chunk"):
        MergeDNAConfig(merge_chunk=1)


def test_chunk_model_exports_to_onnx_with_identical_tokens(tmp_path):
    """The chunk budget's integer bookkeeping exports with dynamic batch and length."""
    pytest.importorskip("onnxruntime")
    from mergedna_cli.engine.onnx_export import export_onnx
    from mergedna_cli.model import save_model

    model_dir = tmp_path / "chunky"
    save_model(chunk_model(), model_dir)
    ids = random_ids(4, 256, seed=17, with_n=False).numpy()
    short = ids[:2, :200]
    report = export_onnx(model_dir, tmp_path / "tokens.onnx", [ids[:1], ids, short], part="tokens")
    assert report.tokens_identical
