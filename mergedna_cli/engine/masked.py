"""Masked-base predictions at chosen positions: the zero-shot scoring primitive.

Every requested position is masked exactly once per strand, and a window is never run twice.
Two plans:

- one position per pass (`spacing=None`): a window centred on each position, one base masked;
- shared passes (`spacing=S`): the contig is cut into tiles (the windows' kept, central parts);
  inside a tile, positions with the same offset modulo S share one pass, so the masks of a pass
  are at least S bases apart and every masked base keeps >= flank bases of context on each side.

Returns log-probabilities over A C G T for the forward-strand base at each position, averaged
over the forward and reverse-complement passes when both strands are used.
"""

from __future__ import annotations

import numpy as np

from ..alphabet import MASK, reverse_complement
from .windows import default_flank

# log p on the reverse strand of complement(b), indexed by forward base b: A<->T, C<->G.
_COMPLEMENT_COLUMNS = np.array([3, 2, 1, 0])


def plan_passes(positions: np.ndarray, context: int, flank: int, spacing: int | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """For sorted unique positions: (window_start per pass, pass index per position)."""
    if spacing is None:
        return positions - context // 2, np.arange(len(positions))
    keep = context - 2 * flank
    tile = positions // keep
    key = tile * spacing + (positions - tile * keep) % spacing
    unique_keys, pass_index = np.unique(key, return_inverse=True)
    window_start = (unique_keys // spacing) * keep - flank
    return window_start, pass_index


def masked_log_probs(backend, reference, contig: str, positions: np.ndarray, spacing: int | None,
                     batch_size: int, both_strands: bool, flank: int | None = None) -> np.ndarray:
    """(P, 4) log-probabilities at sorted unique 0-based `positions` of `contig`."""
    context = backend.config.context
    flank = default_flank(context) if flank is None else flank
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) == 0:
        return np.zeros((0, 4), np.float32)
    starts, pass_of = plan_passes(positions, context, flank, spacing)
    offset_in_window = positions - starts[pass_of]
    result = np.zeros((len(positions), 4), np.float64)
    order = np.argsort(pass_of, kind="stable")
    bounds = np.searchsorted(pass_of[order], np.arange(len(starts) + 1))
    per_batch = max(1, batch_size // 2) if both_strands else batch_size
    for first in range(0, len(starts), per_batch):
        passes = np.arange(first, min(first + per_batch, len(starts)))
        # one read per window: memory stays bounded however far apart the variants are
        ids = np.stack([reference.fetch_ids(contig, int(s), int(s) + context) for s in starts[passes]]
                       ).astype(np.int64)  # (b, context)
        members = order[bounds[passes[0]]:bounds[passes[-1] + 1]]  # positions of these passes
        rows = pass_of[members] - first
        cols = offset_in_window[members]
        ids[rows, cols] = MASK
        if getattr(backend, "part", "full") == "masked":
            result[members] = _query_pass(backend, ids, rows, cols, both_strands)
        elif both_strands:
            out = backend.run(np.concatenate([ids, reverse_complement(ids)])).log_probs
            forward, reverse = out[: len(passes)], out[len(passes):]
            lp_f = forward[rows, cols]
            lp_r = reverse[rows, context - 1 - cols][:, _COMPLEMENT_COLUMNS]
            result[members] = 0.5 * (lp_f.astype(np.float64) + lp_r)
        else:
            result[members] = backend.run(ids).log_probs[rows, cols]
    return result.astype(np.float32)


def _query_pass(backend, ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, both_strands: bool) -> np.ndarray:
    """Log-probabilities at (rows, cols) from the "masked" graph, which decodes only the queried
    bases. rows are sorted; a row with fewer queries than the fullest one repeats its first."""
    first = np.searchsorted(rows, rows)  # index of each row's first query
    rank = np.arange(len(rows)) - first
    query = np.zeros((len(ids), rank.max() + 1), dtype=np.int64)
    query[rows] = cols[first][:, None]
    query[rows, rank] = cols
    if not both_strands:
        return backend.run(ids, query).log_probs[rows, rank]
    n = ids.shape[1]
    out = backend.run(np.concatenate([ids, reverse_complement(ids)]),
                      np.concatenate([query, n - 1 - query])).log_probs
    forward, reverse = out[: len(ids)], out[len(ids):]
    return 0.5 * (forward[rows, rank].astype(np.float64) + reverse[rows, rank][:, _COMPLEMENT_COLUMNS])
