"""Bidirectional k-mer context model: the baseline a pre-trained MergeDNA model must beat.

A benchmark tool, not part of the installed package: pretrain_eval.py, zero_shot.py and the
tests import it from benchmarks/ (the `mergedna` commands never use it).

It predicts the centre base from the k bases on each side (4^(2k) contexts of 2k bases), the
same task as the masked-base evaluation in `mergedna_cli/training/evaluation.py`, using only counts.

Smoothing (interpolated Dirichlet backoff). Order j uses the j bases on each side of the centre;
order 0 is the unigram. With weighted counts c_j(ctx, b) and n_j(ctx) = sum_b c_j(ctx, b),

    p_0(b)       = (c_0(b) + alpha_0 / 4) / (n_0 + alpha_0)
    p_j(b | ctx) = (c_j(ctx, b) + alpha_j * p_{j-1}(b | ctx')) / (n_j(ctx) + alpha_j)

where ctx' drops the outermost base on each side. Rare contexts thus fall back smoothly to the
shorter ones and unseen contexts get exactly the order j-1 prediction. Each order has its own
alpha_j; `select_k` picks them greedily (order 0 first) from a grid by validation CE.

N handling. Counting skips every N centre, and a position counts in order j only if its j
bases on each side are A/C/G/T. At prediction time a position whose k-base context holds an N
(or runs off the sequence) is predicted by the longest N-free order: the unigram when an
adjacent base is N, order 1 when the nearest N is 2 bases away, and so on.

Context codes. The order-j code puts the outermost pair of bases in the lowest digits,
code_j = 16 * code_{j-1} + 4 * left_j + right_j, so code_{j-1} = code_j >> 4: one pass computes
the order-k code and every lower order is a shift away (and the order j-1 count table is the
order j table summed over groups of 16 rows).

Training data and weights. `fit` takes per-array weights: each base of array i adds weight[i]
to its count instead of 1, which is the per-file sampling weight of the neural model's
`WindowSampler` (records are drawn with probability weight x length), so both models are fitted
to the same data distribution. Weights are rescaled to a mean of 1 per base, so alpha is in
units of an average base whatever the weights' scale. By default both strands are counted (the
neural model is trained on 50% reverse-complemented windows), which also makes the model
strand-symmetric.

Memory: the order-k table is 4^(2k) x 4 float32 (k=6: 268 MB) plus the lower orders (1/15 of
that); long arrays are processed in chunks of `CHUNK` positions. Everything is numpy-vectorised:
the only Python loops run over orders, chunks and arrays, never over bases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from mergedna_cli.alphabet import N, N_BASES, reverse_complement

CHUNK = 1 << 21          # positions per counting chunk (a few 16 MB temporaries)
EVAL_CHUNK = 1 << 18     # positions per scoring chunk (k+1 look-ups of 8 MB each)
MAX_K = 7                # the order-7 table alone is 4.3 GB (k=6: 268 MB)
DEFAULT_ALPHAS = tuple(2.0 ** e for e in range(-2, 13))   # 0.25 .. 4096, the alpha grid


def _padded(ids: np.ndarray, k: int) -> np.ndarray:
    """ids with k N's on each side, so every position has a (possibly N) k-context."""
    out = np.full(len(ids) + 2 * k, N, dtype=np.uint8)
    out[k:k + len(ids)] = ids
    return out


def _context_codes(padded: np.ndarray, centres: np.ndarray | None, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Order-k context codes (int64, N read as A) and the longest N-free order (int8, 0..k)
    for centre indices `centres` into a k-padded id array (None: every centre, k..len-k)."""
    n = len(padded) - 2 * k if centres is None else len(centres)
    code = np.zeros(n, dtype=np.int64)
    order = np.zeros(n, dtype=np.int8)
    alive = np.ones(n, dtype=bool)
    for j in range(1, k + 1):
        if centres is None:  # contiguous: slices, no gather
            left, right = padded[k - j:k - j + n], padded[k + j:k + j + n]
        else:
            left, right = padded[centres - j], padded[centres + j]
        code <<= 4
        code |= (np.minimum(left, 3).astype(np.int64) << 2) | np.minimum(right, 3)
        alive &= (left < N_BASES) & (right < N_BASES)
        order += alive
    return code, order


def _accumulate(table: np.ndarray, keys: np.ndarray, weight: float) -> None:
    """table.ravel()[keys] += weight for every key (repeats counted), without a Python loop."""
    flat = table.reshape(-1)
    if len(keys) == 0:
        return
    if len(keys) * 8 >= flat.size:   # dense: one bincount over the whole table
        flat += (np.bincount(keys, minlength=flat.size) * weight).astype(flat.dtype)
    else:                            # sparse (large tables): sort the chunk's keys
        uniq, counts = np.unique(keys, return_counts=True)
        flat[uniq] += (counts * weight).astype(flat.dtype)


def count_tables(arrays: Sequence[np.ndarray], weights: Sequence[float] | None, k: int,
                 both_strands: bool = True) -> list[np.ndarray]:
    """Weighted counts for orders 0..k: tables[j] has shape (4^(2j), 4), float32.

    Every position with an A/C/G/T centre counts once in the table of its longest N-free
    order m (<= k), and, by summing groups of 16 rows, in every order below m as well. So
    tables[j] counts exactly the positions whose j bases on each side are all A/C/G/T.
    """
    if not 0 <= k <= MAX_K:
        raise ValueError(f"k must be in 0..{MAX_K}, got {k}")
    weights = _normalised_weights(arrays, weights)
    direct = [np.zeros((4 ** (2 * j), N_BASES), dtype=np.float32) for j in range(k + 1)]
    for ids, w in zip(arrays, weights):
        if w == 0 or len(ids) == 0:
            continue
        strands = (0, 1) if both_strands else (0,)
        for lo in range(0, len(ids), CHUNK):
            hi = min(len(ids), lo + CHUNK)
            # the chunk's centres plus k bases of context on each side, N beyond the array
            left, right = lo - max(0, lo - k), min(len(ids), hi + k) - hi
            piece = np.full(hi - lo + 2 * k, N, dtype=np.uint8)
            piece[k - left:k + hi - lo + right] = ids[lo - left:hi + right]
            for strand in strands:
                seq = reverse_complement(piece) if strand else piece
                centre = seq[k:k + hi - lo]
                code, order = _context_codes(seq, None, k)
                ok = centre < N_BASES
                for j in range(k + 1):
                    sel = ok & (order == j)
                    keys = ((code[sel] >> (4 * (k - j))) << 2) | centre[sel]
                    keys = keys.astype(np.uint32)  # < 4^15: sorts faster than int64
                    _accumulate(direct[j], keys, w)
    # fold each order into the one below: rows c*16 .. c*16+15 share the shorter context c
    for j in range(k, 0, -1):
        direct[j - 1] += direct[j].reshape(-1, 16, N_BASES).sum(axis=1)
    return direct


def _normalised_weights(arrays: Sequence[np.ndarray], weights: Sequence[float] | None) -> np.ndarray:
    """Per-array weights rescaled to a mean of 1 per base (all 1 when None)."""
    if weights is None:
        return np.ones(len(arrays))
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(arrays):
        raise ValueError(f"{len(w)} weights for {len(arrays)} arrays")
    if (w < 0).any():
        raise ValueError("weights must be >= 0")
    lengths = np.array([len(a) for a in arrays], dtype=np.float64)
    total = (w * lengths).sum()
    return w * lengths.sum() / total if total > 0 else w


def _alpha_tuple(alpha, k: int) -> tuple[float, ...]:
    """A per-order alpha tuple of length k + 1 from a number or a sequence."""
    if np.ndim(alpha) == 0:
        out = (float(alpha),) * (k + 1)
    else:
        out = tuple(float(a) for a in alpha)[:k + 1]
        if len(out) != k + 1:
            raise ValueError(f"{len(out)} alphas for orders 0..{k}")
    if min(out) <= 0:
        raise ValueError("alpha must be > 0")
    return out


class BidirectionalKmerModel:
    """p(centre base | k bases on each side) with interpolated Dirichlet backoff.

    `alpha` is the Dirichlet strength of every order (a number), or one per order 0..k.
    """

    def __init__(self, k: int = 0, alpha: float | Sequence[float] = 1.0,
                 tables: list[np.ndarray] | None = None, both_strands: bool = True):
        self.k, self.both_strands, self.tables = k, both_strands, tables
        self.alphas = _alpha_tuple(alpha, k)

    @property
    def alpha(self) -> float:
        """The alpha of the top order k."""
        return self.alphas[-1]

    def fit(self, arrays: Sequence[np.ndarray], weights: Sequence[float] | None = None,
            k: int | None = None, alpha: float | Sequence[float] | None = None,
            both_strands: bool | None = None) -> "BidirectionalKmerModel":
        """Count orders 0..k over id arrays (uint8, A=0 C=1 G=2 T=3; ids >= 4 are N and never
        a centre or a context base). `weights`: one count weight per array (None: all 1)."""
        k = self.k if k is None else k
        if alpha is None:  # keep the alphas, the top one repeated for new orders
            alpha = (self.alphas + (self.alphas[-1],) * k)[:k + 1]
        self.alphas = _alpha_tuple(alpha, k)
        self.k = k
        self.both_strands = self.both_strands if both_strands is None else both_strands
        self.tables = count_tables(arrays, weights, self.k, self.both_strands)
        return self

    def with_order(self, k: int, alpha: float | Sequence[float] | None = None
                   ) -> "BidirectionalKmerModel":
        """The model of a lower order k (and maybe other alphas), sharing this one's counts."""
        if self.tables is None or k > self.k:
            raise ValueError(f"order {k} needs a model fitted with k >= {k}")
        return BidirectionalKmerModel(k, self.alphas[:k + 1] if alpha is None else alpha,
                                      self.tables[:k + 1], self.both_strands)

    @property
    def n_parameters(self) -> int:
        return sum(t.size for t in self.tables or [])

    def log_probs(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(P, 4) natural-log probabilities of A, C, G, T at `positions` of the encoded `ids`.

        The centre bases themselves are never read (they may be masked or N). A context base
        that is N, or lies outside `ids`, makes the position fall back to the longest N-free
        symmetric context (order < k; the unigram if an adjacent base is N).
        """
        if self.tables is None:
            raise ValueError("the k-mer model is not fitted")
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if len(positions) and (positions.min() < 0 or positions.max() >= len(ids)):
            raise ValueError("positions outside the sequence")
        padded = _padded(np.asarray(ids, dtype=np.uint8), self.k)
        out = np.empty((len(positions), N_BASES))
        for lo in range(0, len(positions), EVAL_CHUNK):
            pos = positions[lo:lo + EVAL_CHUNK]
            code, order = _context_codes(padded, pos + self.k, self.k)
            prob = None
            for j in range(self.k + 1):
                prob = _order_step(self.tables[j], code >> (4 * (self.k - j)), order, j,
                                   self.alphas[j], prob)
            out[lo:lo + len(pos)] = np.log(prob)
        return out


def _order_step(table: np.ndarray, code_j: np.ndarray, order: np.ndarray, j: int, alpha: float,
                prev: np.ndarray | None, rows: np.ndarray | None = None) -> np.ndarray:
    """p_j from the order-j counts and p_{j-1} (`prev`; None for j=0), kept only where the
    order-j context is N-free (elsewhere p_{j-1} stays). (P, 4) float64."""
    c = (table[code_j] if rows is None else rows).astype(np.float64)
    prior = np.full((1, N_BASES), 1.0 / N_BASES) if prev is None else prev
    p = (c + alpha * prior) / (c.sum(axis=1, keepdims=True) + alpha)
    if prev is None:
        return p
    return np.where((order >= j)[:, None], p, prev)


# ---------------------------------------------------------------------------------------------
# choosing k and the alphas on a validation split of the training data

class SelectionRow(NamedTuple):
    k: int
    alpha: float          # the alpha chosen for order k (orders below keep theirs)
    val_acc: float
    val_ce: float         # nats per base
    val_bases: int


def split_train_val(arrays: Sequence[np.ndarray], val_fraction: float = 0.1
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hold out the last `val_fraction` of every array (views, no copy)."""
    train, val = [], []
    for a in arrays:
        cut = len(a) - int(round(len(a) * val_fraction))
        train.append(a[:cut])
        val.append(a[cut:])
    return train, val


def _scored_positions(arrays: Sequence[np.ndarray], weights: Sequence[float] | None, k: int,
                      max_positions: int | None):
    """Order-k context codes, N-free orders, truths and per-position weights of the A/C/G/T
    positions of `arrays`, strided evenly so that at most about `max_positions` are kept."""
    w_norm = _normalised_weights(arrays, weights)
    total = sum(len(a) for a in arrays)
    stride = max(1, -(-total // max_positions)) if max_positions else 1
    codes, orders, truths, ws = [], [], [], []
    for ids, w in zip(arrays, w_norm):
        if w == 0 or len(ids) == 0:
            continue
        ids = np.asarray(ids, dtype=np.uint8)
        pos = np.arange(0, len(ids), stride)
        pos = pos[ids[pos] < N_BASES]
        code, order = _context_codes(_padded(ids, k), pos + k, k)
        codes.append(code)
        orders.append(order)
        truths.append(ids[pos].astype(np.int64))
        ws.append(np.full(len(pos), w))
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
    return (cat(codes, np.int64), cat(orders, np.int8), cat(truths, np.int64),
            cat(ws, np.float64))


def _metrics(prob: np.ndarray, truth: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted accuracy and CE (nats) of (P, 4) probabilities."""
    wsum = max(w.sum(), 1e-300)
    acc = float((w * (prob.argmax(1) == truth)).sum() / wsum)
    ce = float(-(w * np.log(prob[np.arange(len(truth)), truth])).sum() / wsum)
    return acc, ce


def evaluate(model: BidirectionalKmerModel, arrays: Sequence[np.ndarray],
             weights: Sequence[float] | None = None, max_positions: int | None = 2_000_000
             ) -> tuple[float, float, int]:
    """(accuracy, CE in nats, positions) over the A/C/G/T bases of `arrays`, each position
    weighted by its array's weight, strided to at most about `max_positions` positions."""
    code, order, truth, w = _scored_positions(arrays, weights, model.k, max_positions)
    prob = None
    for j in range(model.k + 1):
        prob = _order_step(model.tables[j], code >> (4 * (model.k - j)), order, j,
                           model.alphas[j], prob)
    if prob is None or len(truth) == 0:
        return float("nan"), float("nan"), 0
    return (*_metrics(prob, truth, w), len(truth))


def select_k(train_arrays: Sequence[np.ndarray], val_arrays: Sequence[np.ndarray],
             weights: Sequence[float] | None = None, ks: Sequence[int] = range(0, 7),
             alphas: Sequence[float] = DEFAULT_ALPHAS, both_strands: bool = True,
             max_val_positions: int | None = 1_000_000
             ) -> tuple[int, tuple[float, ...], list[SelectionRow]]:
    """Fit orders 0..max(ks) on `train_arrays` once and choose, order by order, the alpha from
    `alphas` with the lowest validation CE given the lower orders' choices (greedy). Returns
    (best k, its alphas for orders 0..k, one row per k of `ks`); the best k has the lowest
    validation cross-entropy. `weights` (one per array, the same for train and validation
    arrays) weight both the counts and the validation bases."""
    ks = sorted(set(ks))
    k_max = max(ks)
    model = BidirectionalKmerModel(k_max, 1.0, both_strands=both_strands)
    model.fit(train_arrays, weights)
    code, order, truth, w = _scored_positions(val_arrays, weights, k_max, max_val_positions)
    if len(truth) == 0:
        raise ValueError("no A/C/G/T base to validate on")
    prob, chosen, rows = None, [], []
    for j in range(k_max + 1):
        counts = model.tables[j][code >> (4 * (k_max - j))]
        best = None
        for alpha in alphas:
            p = _order_step(model.tables[j], None, order, j, alpha, prob, rows=counts)
            acc, ce = _metrics(p, truth, w)
            if best is None or ce < best[2]:
                best = (alpha, acc, ce, p)
        alpha, acc, ce, prob = best
        chosen.append(alpha)
        if j in ks:
            rows.append(SelectionRow(j, alpha, acc, ce, len(truth)))
    best_row = min(rows, key=lambda r: r.val_ce)
    return best_row.k, tuple(chosen[:best_row.k + 1]), rows


def select_and_fit(arrays: Sequence[np.ndarray], weights: Sequence[float] | None = None,
                   ks: Sequence[int] = range(0, 7), alphas: Sequence[float] = DEFAULT_ALPHAS,
                   val_fraction: float = 0.1, both_strands: bool = True,
                   max_val_positions: int | None = 1_000_000
                   ) -> tuple[BidirectionalKmerModel, list[SelectionRow]]:
    """Choose k and the alphas on the last `val_fraction` of every training array, then refit
    on all of the training data with them. Returns (model, selection table)."""
    train, val = split_train_val(arrays, val_fraction)
    k, chosen, rows = select_k(train, val, weights, ks, alphas, both_strands, max_val_positions)
    model = BidirectionalKmerModel(k, chosen, both_strands=both_strands).fit(arrays, weights)
    return model, rows


@dataclass
class KmerMaskedEval:
    accuracy: float
    cross_entropy: float  # nats per masked base
    n_bases: int


def kmer_masked_eval(model: BidirectionalKmerModel, windows: np.ndarray, spacing: int = 32,
                     phases: int = 1, margin: int = 16) -> KmerMaskedEval:
    """The k-mer counterpart of `evaluation.masked_base_eval`: the same masked positions
    (every `spacing`-th base of each window, for each phase), predicted from the k bases on
    each side inside the window, scored over A/C/G/T truths."""
    from mergedna_cli.training.evaluation import masked_positions

    if model.k > margin:
        raise ValueError(f"k={model.k} exceeds the margin {margin}: contexts would leave the window")
    windows = np.ascontiguousarray(windows, dtype=np.uint8)
    n_win, context = windows.shape
    flat = windows.reshape(-1)
    correct, ce_sum, count = 0, 0.0, 0
    for phase in range(phases):
        pos = masked_positions(context, spacing, phase * spacing // phases, margin)
        glob = (np.arange(n_win, dtype=np.int64)[:, None] * context + pos[None, :]).reshape(-1)
        truth = flat[glob].astype(np.int64)
        scored = truth < N_BASES
        glob, truth = glob[scored], truth[scored]
        lp = model.log_probs(flat, glob)
        correct += int(np.count_nonzero(lp.argmax(1) == truth))
        ce_sum += float(-lp[np.arange(len(glob)), truth].sum())
        count += len(glob)
    return KmerMaskedEval(correct / max(count, 1), ce_sum / max(count, 1), count)
