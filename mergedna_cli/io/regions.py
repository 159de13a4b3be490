"""Regions from strings (`chr1:1,001-2,000`, 1-based inclusive, like samtools) and BED files
(0-based half-open), always returned as 0-based half-open Region objects.

`parse_bed` is the one BED line parser: `read_bed` here (embed, tracks), the labelled sequence
sets (io/labelled.py: finetune, predict) and the pre-training exclusion and validation BEDs
(training/corpus.py) all read BED through it, each with its own wording of the errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
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


@dataclass(frozen=True)
class BedLine:
    line_no: int        # 1-based line number in the file
    fields: list[str]   # the columns (chrom, start, end, ...)
    start: int          # 0-based, inclusive
    end: int            # 0-based, exclusive


@dataclass(frozen=True)
class BedWording:
    """How one reader words BED errors. Placeholders: {where} (`where` filled with {path} and
    {line_no}), {text} (the stripped line, cut to `text_limit` characters), {start}, {end}."""

    where: str = "{path}:{line_no}"
    columns: str = "{where}: expected chrom, start, end (tab-separated), got {text!r}"  # < 3 columns
    integers: str = "{where}: expected chrom, start, end (tab-separated), got {text!r}"
    interval: str = "{where}: invalid interval {start}-{end} (need 0 <= start <= end)"
    text_limit: int | None = 60


def parse_bed(lines: Iterable[str], path: str, wording: BedWording = BedWording(), *,
              whitespace: bool = False, empty: bool = True, header: Callable[[str], None] | None = None,
              first: Callable[[list[str]], None] | None = None) -> Iterator[BedLine]:
    """The intervals of a BED file's lines. Blank, `track` and `browser` lines are skipped, and so
    are `#` lines (passed to `header` when given, without the line end). Columns are tab-separated;
    with `whitespace`, a line with fewer than 3 tab-separated columns is split on any whitespace.
    An interval needs 0 <= start <= end (start < end unless `empty`). `first` sees the columns of
    the first data line before its interval is read (a reader choosing its columns)."""
    for line_no, line in enumerate(lines, 1):
        if not line.strip() or line.startswith(("track", "browser")):
            continue
        if line.startswith("#"):
            if header is not None:
                header(line.rstrip("\r\n"))
            continue
        fields = line.rstrip("\r\n").split("\t")
        if whitespace and len(fields) < 3:
            fields = line.split()
        text = line.strip()[:wording.text_limit]
        where = wording.where.format(path=path, line_no=line_no)
        if len(fields) < 3:
            raise InputError(wording.columns.format(where=where, text=text))
        if first is not None:
            first(fields)
            first = None
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            raise InputError(wording.integers.format(where=where, text=text)) from None
        if start < 0 or end < start or (not empty and end == start):
            raise InputError(wording.interval.format(where=where, start=start, end=end))
        yield BedLine(line_no, fields, start, end)


def read_bed(path: str) -> Iterator[Region]:
    """Stream BED regions (3+ columns; `#`, `track`, `browser` lines skipped; name kept); start ==
    end is a valid, empty BED interval."""
    try:
        handle = open(path)
    except OSError as exc:
        raise InputError(f"cannot read BED '{path}': {exc.strerror}") from None
    with handle:
        for bed in parse_bed(handle, path, whitespace=True):
            fields, start, end = bed.fields, bed.start, bed.end
            name = fields[3] if len(fields) > 3 else f"{fields[0]}:{start + 1}-{end}"
            yield Region(fields[0], start, end, name)
