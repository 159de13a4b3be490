"""Windows of regions through a backend, in batches, results back in input order.

`run_windows` batches (tag, window) pairs, optionally with each window's reverse complement, and
yields one row per window in input order: `tracks` runs its token maps through it. `Engine` uses
it for `embed`: pooled (and per-token) embeddings of regions, streamed region by region, so memory
does not grow with the number of regions. `kept_token_spans` and `per_base_vectors` read a row
(tracks' spans; score's indel embeddings). The masked passes of `score` and `tracks --signals`
batch their own queries (masked.py), and `predict` pads whole sequences (finetune/predictor.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..alphabet import reverse_complement
from ..io.reference import Reference
from ..io.regions import Region
from .backends import BackendOutput
from .windows import Window, default_flank, tile


@dataclass
class RegionEmbedding:
    region: Region               # as given by the user (contig name as in the input)
    embedding: np.ndarray        # (D,) float32: mean over the region's bases of their token vector
    token_starts: np.ndarray | None = None  # per-token spans (forward strand), contig coordinates
    token_ends: np.ndarray | None = None
    token_vectors: np.ndarray | None = None


@dataclass
class _Pending:
    region: Region
    n_windows: int
    total: np.ndarray
    bases: int = 0
    done: int = 0
    starts: list = field(default_factory=list)
    ends: list = field(default_factory=list)
    vectors: list = field(default_factory=list)


def kept_token_spans(base2tok: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens of one window's kept part, cut at its edges (tokens are decided per window):
    (starts, ends) in contig coordinates and the token index of each span."""
    tok = base2tok[window.keep_slice]
    first = np.flatnonzero(np.r_[True, tok[1:] != tok[:-1]])  # first kept base of each token
    ends = np.r_[first[1:], len(tok)]
    return window.keep_start + first, window.keep_start + ends, tok[first]


def per_base_vectors(out: BackendOutput) -> np.ndarray:
    """Unmerge: every base takes its token's vector, (B, N, D)."""
    return np.take_along_axis(out.token_vectors, out.base2tok[..., None], axis=1)


def row_base_vectors(row: BackendOutput) -> np.ndarray:
    """Unmerge for one row: (N, D)."""
    return row.token_vectors[row.base2tok]


class Engine:
    def __init__(self, backend, reference: Reference, batch_size: int = 16,
                 flank: int | None = None, strands: str = "both"):
        self.backend, self.reference = backend, reference
        self.context = backend.config.context
        self.flank = default_flank(self.context) if flank is None else flank
        self.batch_size, self.both_strands = batch_size, strands == "both"

    def _windows(self, regions: Iterable[Region]) -> Iterator[tuple[int, Region, int, Window]]:
        for index, region in enumerate(regions):
            contig = self.reference.require(region.chrom)
            n_windows = len(range(region.start, region.end, self.context - 2 * self.flank))
            for window in tile(contig, region.start, region.end, self.context, self.flank):
                yield index, region, n_windows, window

    def embed(self, regions: Iterable[Region], per_token: bool = False) -> Iterator[RegionEmbedding]:
        """Pooled embedding of every region, in input order (streamed)."""
        pending: dict[int, _Pending] = {}
        next_out = 0

        def tagged_windows():
            for index, region, n_windows, window in self._windows(regions):
                if index not in pending:
                    pending[index] = _Pending(region, n_windows, np.zeros(self.backend_dim, np.float64))
                yield index, window

        for index, window, fwd, rev in run_windows(self.backend, self.reference, tagged_windows(),
                                                   self.batch_size, self.both_strands):
            p = pending[index]
            keep = window.keep_slice
            kept = row_base_vectors(fwd)[keep].astype(np.float64).sum(0)
            if rev is not None:  # the reverse strand's window, read back in forward order
                kept = 0.5 * (kept + row_base_vectors(rev)[::-1][keep].astype(np.float64).sum(0))
            p.total += kept
            p.bases += keep.stop - keep.start
            if per_token:
                starts, ends, tokens = kept_token_spans(fwd.base2tok, window)
                p.starts.append(starts)
                p.ends.append(ends)
                p.vectors.append(fwd.token_vectors[tokens])
            p.done += 1
            while next_out in pending and pending[next_out].done == pending[next_out].n_windows:
                yield self._finish(pending.pop(next_out))
                next_out += 1

    @property
    def backend_dim(self) -> int:
        return self.backend.config.d_model

    @staticmethod
    def _finish(p: _Pending) -> RegionEmbedding:
        result = RegionEmbedding(p.region, (p.total / max(p.bases, 1)).astype(np.float32))
        if p.starts:
            result.token_starts = np.concatenate(p.starts)
            result.token_ends = np.concatenate(p.ends)
            result.token_vectors = np.concatenate(p.vectors).astype(np.float32)
        return result


def run_windows(backend, reference: Reference, windows: Iterable[tuple[object, Window]], batch_size: int,
                both_strands: bool = False) -> Iterator[tuple[object, Window, BackendOutput, BackendOutput | None]]:
    """Run (tag, Window) pairs through the backend, `batch_size` windows per call; yields
    (tag, window, forward row, reverse-complement row or None) in input order. The one batching
    mechanism of the engine."""
    batch: list = []

    def flush():
        ids = np.stack([reference.fetch_ids(w.contig, w.start, w.end) for _, w in batch]).astype(np.int64)
        n = len(batch)
        out = backend.run(np.concatenate([ids, reverse_complement(ids)]) if both_strands else ids)
        for row, (tag, window) in enumerate(batch):
            yield tag, window, _row(out, row), _row(out, n + row) if both_strands else None
        batch.clear()

    for item in windows:
        batch.append(item)
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


def _row(out: BackendOutput, row: int) -> BackendOutput:
    return BackendOutput(*(None if getattr(out, f) is None else getattr(out, f)[row]
                           for f in BackendOutput.__dataclass_fields__))
