"""The bidirectional k-mer baseline: counts, smoothing, N fallback, selection, evaluation."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import YEAST_FASTA

from mergedna_cli.alphabet import N, encode, reverse_complement
from mergedna_cli.training.evaluation import masked_positions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from kmer_baseline import (  # noqa: E402  (a benchmark tool, not in the package)
    BidirectionalKmerModel,
    count_tables,
    evaluate,
    kmer_masked_eval,
    select_and_fit,
    select_k,
    split_train_val,
)


def _brute_counts(arrays, weights, k, both_strands):
    """Reference counts with Python loops (small inputs only)."""
    tables = [np.zeros((4 ** (2 * j), 4)) for j in range(k + 1)]
    for arr, w in zip(arrays, weights):
        for seq in [arr] + ([reverse_complement(arr)] if both_strands else []):
            for i in range(len(seq)):
                if seq[i] >= 4:
                    continue
                code = 0
                for j in range(k + 1):
                    if j:
                        if i - j < 0 or i + j >= len(seq) or seq[i - j] >= 4 or seq[i + j] >= 4:
                            break
                        code = code * 16 + int(seq[i - j]) * 4 + int(seq[i + j])
                    tables[j][code, seq[i]] += w
    return tables


@pytest.mark.parametrize("both_strands", [False, True])
def test_counts_match_brute_force(both_strands):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 700).astype(np.uint8)
    a[100:104] = N
    a[400] = N
    b = rng.integers(0, 5, 300).astype(np.uint8)  # ~20% N
    got = count_tables([a, b], [1.0, 1.0], 2, both_strands)
    want = _brute_counts([a, b], [1.0, 1.0], 2, both_strands)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4)


def test_weights_scale_counts_like_repeating_the_array():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 500).astype(np.uint8), rng.integers(0, 4, 200).astype(np.uint8)
    weighted = count_tables([a, b], [1.0, 3.0], 2)
    repeated = count_tables([a, b, b, b], None, 2)
    for t_w, t_r in zip(weighted, repeated):
        # weights are rescaled to a mean of 1 per base: same shape, total = number of bases
        ratio = t_w.sum() / t_r.sum()
        np.testing.assert_allclose(t_w, t_r * ratio, rtol=1e-5, atol=1e-5)
    assert weighted[0].sum() == pytest.approx(2 * 700, rel=1e-5)  # both strands


def test_periodic_sequence_is_predicted_perfectly():
    rng = np.random.default_rng(2)
    unit = rng.integers(0, 4, 24).astype(np.uint8)
    seq = np.tile(unit, 200)
    model = BidirectionalKmerModel().fit([seq], k=3, alpha=0.5, both_strands=False)
    pos = np.arange(3, len(seq) - 3)
    lp = model.log_probs(seq, pos)
    assert (lp.argmax(1) == seq[pos]).all()
    assert np.exp(lp.max(1)).min() > 0.99
    acc, ce, n = evaluate(model, [seq])  # every base; the two end bases have no context
    assert n == len(seq) and acc >= 1 - 2 / len(seq) and ce < 0.01


def test_probabilities_sum_to_one_everywhere():
    rng = np.random.default_rng(3)
    seq = rng.integers(0, 5, 2000).astype(np.uint8)
    model = BidirectionalKmerModel().fit([seq], k=3, alpha=1.0)
    lp = model.log_probs(seq, np.arange(len(seq)))  # edges and N contexts included
    assert lp.shape == (len(seq), 4) and np.isfinite(lp).all()
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, atol=1e-9)


def test_n_context_falls_back_to_shorter_orders():
    rng = np.random.default_rng(4)
    train = rng.integers(0, 4, 5000).astype(np.uint8)
    model = BidirectionalKmerModel().fit([train], k=3, alpha=2.0)
    query = rng.integers(0, 4, 40).astype(np.uint8)
    query[20] = N
    lp = model.log_probs(query, np.array([21, 22, 23, 30]))
    unigram = model.with_order(0).log_probs(query, np.array([21]))
    order1 = model.with_order(1).log_probs(query, np.array([22]))
    order2 = model.with_order(2).log_probs(query, np.array([23]))
    full = model.with_order(3).log_probs(query, np.array([30]))
    np.testing.assert_allclose(lp[0], unigram[0])   # adjacent N: unigram
    np.testing.assert_allclose(lp[1], order1[0])    # N two away: 1 base each side
    np.testing.assert_allclose(lp[2], order2[0])
    np.testing.assert_allclose(lp[3], full[0])
    assert not np.allclose(lp[1], lp[0])
    # the centre itself is never read: masking it changes nothing
    masked = query.copy()
    masked[30] = 6
    np.testing.assert_allclose(model.log_probs(masked, np.array([30])), lp[3:])


def test_both_strands_model_is_strand_symmetric():
    rng = np.random.default_rng(5)
    train = rng.integers(0, 4, 3000).astype(np.uint8)
    model = BidirectionalKmerModel().fit([train], k=2, alpha=1.0)
    q = rng.integers(0, 4, 50).astype(np.uint8)
    fwd = model.log_probs(q, np.array([25]))[0]
    rev = model.log_probs(reverse_complement(q), np.array([len(q) - 1 - 25]))[0]
    np.testing.assert_allclose(fwd, rev[::-1])  # A<->T, C<->G


def test_select_k_prefers_context_on_yeast():
    from mergedna_cli.io.fasta_records import iter_fasta_records

    seq = np.concatenate([encode(s) for _, s in iter_fasta_records(YEAST_FASTA)])[:120_000]
    train, val = split_train_val([seq], 0.2)
    best_k, alphas, rows = select_k(train, val, ks=range(0, 4))
    assert best_k >= 1 and len(alphas) == best_k + 1
    assert [r.k for r in rows] == [0, 1, 2, 3]
    by_k = {r.k: r for r in rows}
    assert by_k[best_k].val_ce < by_k[0].val_ce and by_k[best_k].val_acc > by_k[0].val_acc
    model, _ = select_and_fit([seq], ks=range(0, 3), val_fraction=0.2)
    assert model.k >= 1 and model.tables[0].sum() == pytest.approx(2 * len(seq), rel=1e-5)


def test_select_k_prefers_unigram_on_iid_sequence():
    rng = np.random.default_rng(6)
    seq = rng.choice(4, size=60_000, p=[0.4, 0.1, 0.1, 0.4]).astype(np.uint8)
    best_k, _, rows = select_k(*split_train_val([seq]), ks=range(0, 4))
    assert rows[0].val_acc == pytest.approx(0.4, abs=0.03)
    assert best_k == 0 or rows[best_k].val_ce > rows[0].val_ce - 1e-3


def test_masked_eval_uses_the_evaluation_positions():
    rng = np.random.default_rng(7)
    train = rng.integers(0, 4, 4000).astype(np.uint8)
    model = BidirectionalKmerModel().fit([train], k=2)
    windows = rng.integers(0, 4, (3, 128)).astype(np.uint8)
    windows[0, 16] = N  # a masked N truth is not scored
    res = kmer_masked_eval(model, windows, spacing=32, phases=2, margin=16)
    expected = sum(len(masked_positions(128, 32, p * 32 // 2, 16)) for p in range(2)) * 3 - 1
    assert res.n_bases == expected
    assert 0.0 <= res.accuracy <= 1.0 and res.cross_entropy > 0
    with pytest.raises(ValueError):
        kmer_masked_eval(BidirectionalKmerModel().fit([train], k=3), windows, margin=2)


def test_masked_eval_scores_the_same_bases_as_the_network():
    torch = pytest.importorskip("torch")
    from mergedna_cli.model import MergeDNA, MergeDNAConfig
    from mergedna_cli.training.evaluation import masked_base_eval

    torch.manual_seed(0)
    net = MergeDNA(MergeDNAConfig.preset("tiny"))
    rng = np.random.default_rng(8)
    windows = rng.integers(0, 4, (2, net.config.context)).astype(np.uint8)
    windows[1, 48] = N
    model = BidirectionalKmerModel().fit([rng.integers(0, 4, 2000).astype(np.uint8)], k=2)
    a = masked_base_eval(net, windows, spacing=32, phases=2, margin=16)
    b = kmer_masked_eval(model, windows, spacing=32, phases=2, margin=16)
    assert a.n_bases == b.n_bases
