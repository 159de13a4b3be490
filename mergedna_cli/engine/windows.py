"""Tiling regions into model windows with flanking context.

A window is `context` bases; only its central part is kept, so every kept base is computed with
context on both sides. Consecutive windows' kept parts tile the region exactly; a region shorter
than the kept part sits in the middle of one window. Windows may reach past contig ends: those
bases read as N (the model treats N as an ordinary, unscored base, so shapes stay rectangular).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    contig: str
    start: int       # window span in contig coordinates (0-based, may be < 0 or > length)
    end: int
    keep_start: int  # the kept, central part (contig coordinates)
    keep_end: int

    @property
    def keep_slice(self) -> slice:
        """The kept part in window coordinates."""
        return slice(self.keep_start - self.start, self.keep_end - self.start)


def default_flank(context: int) -> int:
    return context // 4


def tile(contig: str, start: int, end: int, context: int, flank: int) -> Iterator[Window]:
    """Windows whose kept parts tile [start, end) in order."""
    keep = context - 2 * flank
    if keep <= 0:
        raise ValueError(f"flank {flank} leaves no central part in a {context}-base window")
    for lo in range(start, end, keep):
        hi = min(lo + keep, end)
        w_start = lo - (context - (hi - lo)) // 2
        yield Window(contig, w_start, w_start + context, lo, hi)
