"""Genome-browser outputs for learned tokens: BED9 token spans and base-resolution bigWigs.

Entries arrive sorted (contig in reference order, then position) and non-overlapping, window by
window, so files are written as a stream. Chromosome sizes come from the reference index and
names are the reference's, exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyBigWig

from ..atomic import AtomicFile, AtomicTextFile

# The files of a set of tracks, PREFIX.<name>: the token BED9 and the base-resolution bigWigs
# (with --signals two more), in the order they are written and merged.
TRACK_FILES = ("tokens.bed", "boundary.bw", "token_length.bw")
SIGNAL_FILES = ("entropy.bw", "llr.bw")


def track_files(signals: bool) -> list[str]:
    """The BED and bigWig names of one set of tracks (PREFIX.<name>)."""
    return list(TRACK_FILES + (SIGNAL_FILES if signals else ()))


# itemRgb by token length 1, 2, ..., 8+ (a light-to-dark ramp, readable on a white track).
PALETTE = ["200,200,200", "158,202,225", "107,174,214", "66,146,198", "33,113,181", "8,81,156",
           "8,48,107", "37,37,37"]


class TokenBedWriter(AtomicTextFile):
    def __init__(self, path: str, track_line: str | None = None):
        super().__init__(path, track_line + "\n" if track_line else "")

    def write(self, contig: str, starts: np.ndarray, ends: np.ndarray) -> None:
        lengths = ends - starts
        scores = np.minimum(1000, lengths * 1000 // 16)
        colours = np.array(PALETTE)[np.minimum(lengths, len(PALETTE)) - 1]
        self._out.writelines(f"{contig}\t{s}\t{e}\tL{n}\t{sc}\t.\t{s}\t{e}\t{c}\n"
                             for s, e, n, sc, c in zip(starts, ends, lengths, scores, colours))


class BigWigWriter(AtomicFile):
    """Per-base values written as contiguous runs (span 1, step 1)."""

    def __init__(self, path: str, chrom_sizes: list[tuple[str, int]]):
        self._chrom_sizes = chrom_sizes
        super().__init__(path)

    def _open(self, tmp: Path):
        bigwig = pyBigWig.open(str(tmp), "w")
        bigwig.addHeader(self._chrom_sizes, maxZooms=10)
        return bigwig

    def write(self, contig: str, start: int, values: np.ndarray) -> None:
        """values for contig[start:start+len(values)]; NaN entries are left out (no data)."""
        values = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(values)
        if ok.all():
            self._out.addEntries(contig, int(start), values=values, span=1, step=1)
            return
        # runs of defined values
        edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
        for lo, hi in zip(edges[0::2], edges[1::2]):
            self._out.addEntries(contig, int(start + lo), values=values[lo:hi], span=1, step=1)

