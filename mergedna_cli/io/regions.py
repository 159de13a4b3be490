"""Regions from strings (`chr1:1,001-2,000`, 1-based inclusive, like samtools) and BED files
(0-based half-open), always returned as 0-based half-open Region objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InputError

_REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


@dataclass(frozen=True)
class Region:
    chrom: str
    start: int  # 0-based, inclusive
    end: int    # 0-based, exclusive; None-like -1 means "to the contig end" before resolution
    name: str = "."

    def __len__(self) -> int:
        return self.end - self.start


def parse_region(text: str, reference=None) -> Region:
    """'chr1:1,001-2,000' -> Region('chr1', 1000, 2000); 'chr1' -> the whole contig (needs the
    Reference, whose name matching applies: 'chr1' finds contig '1')."""
    match = _REGION.match(text.strip())
    if not match:
        raise InputError(f"region '{text}' is not chrom, or chrom:start-end (1-based, inclusive)")
    chrom = match["chrom"]
    if match["start"] is None:
        if reference is None:
            raise InputError(f"region '{text}': a whole-contig region needs the reference")
        return Region(chrom, 0, reference.lengths[reference.require(chrom)], text.strip())
    start, end = int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))
    if start < 1 or end < start:
        raise InputError(f"region '{text}': start must be >= 1 and end >= start (1-based, inclusive)")
    return Region(chrom, start - 1, end, text.strip())


def read_bed(path: str) -> Iterator[Region]:
    """Stream BED regions (3+ columns; `#`, `track`, `browser` lines skipped; name kept)."""
    try:
        handle = open(path)
    except OSError as exc:
        raise InputError(f"cannot read BED '{path}': {exc.strerror}") from None
    with handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 3:
                fields = line.split()
            try:
                start, end = int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise InputError(f"{path}:{line_no}: expected chrom, start, end (tab-separated), "
                                 f"got {line.strip()[:60]!r}") from None
            if start < 0 or end < start:  # start == end is a valid, empty BED interval
                raise InputError(f"{path}:{line_no}: invalid interval {start}-{end} (need 0 <= start <= end)")
            name = fields[3] if len(fields) > 3 else f"{fields[0]}:{start + 1}-{end}"
            yield Region(fields[0], start, end, name)
