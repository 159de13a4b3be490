"""`mergedna embed`: regions -> pooled (and optionally per-token) embeddings -> table.

Every input region gets one output row, in input order. A region reaching past its contig's end
is clipped to the contig (as `tracks` does; the row reports the clipped end) with a warning; a
region with no bases left (a zero-length BED interval, or one wholly past the end) gets a NaN
embedding and a warning; a region whose reference bases are all N gets its vector and a warning
that the vector carries no sequence information.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from ..alphabet import N
from ..engine.engine import Engine, RegionEmbedding
from ..io.embedding_writer import EmbeddingWriter
from ..io.reference import Reference
from ..io.regions import Region

_SHOWN = 10  # warnings of one kind shown one by one; the rest are counted


class _Warnings:
    def __init__(self, warn):
        self.warn, self.counts = warn, {}

    def __call__(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] <= _SHOWN:
            self.warn(message)

    def finish(self) -> None:
        for kind, n in self.counts.items():
            if n > _SHOWN:
                self.warn(f"{n} regions in all {kind} ({_SHOWN} shown above)")


def _clipped(regions: Iterable[Region], reference: Reference, warn: _Warnings) -> Iterator[Region]:
    for region in regions:
        contig = reference.require(region.chrom)
        length = reference.lengths[contig]
        if region.end > length:
            warn("were clipped at the contig end",
                 f"region {region.name} ({region.chrom}:{region.start + 1}-{region.end}) reaches past "
                 f"the end of {contig} ({length:,} bases): clipped to end {length}")
            region = Region(region.chrom, min(region.start, length), length, region.name)
        yield region


def _all_n(reference: Reference, region: Region) -> bool:
    contig = reference.require(region.chrom)
    step = 1 << 20
    return all((reference.fetch_ids(contig, lo, min(lo + step, region.end)) == N).all()
               for lo in range(region.start, region.end, step))


def run_embed(backend, reference: Reference, regions: Iterable[Region], out: str, per_token: bool,
              batch_size: int, strands: str, on_region=lambda: None, warn=lambda m: None) -> int:
    engine = Engine(backend, reference, batch_size=batch_size, strands=strands)
    dim = backend.config.d_model
    writer = EmbeddingWriter(out, dim, per_token)
    warnings = _Warnings(warn)
    queue: deque[tuple[Region, bool]] = deque()  # regions read so far: (region, has bases)

    def to_engine() -> Iterator[Region]:
        for region in _clipped(regions, reference, warnings):
            queue.append((region, len(region) > 0))
            if len(region) > 0:
                yield region

    def empty_rows() -> Iterator[RegionEmbedding]:
        while queue and not queue[0][1]:
            region = queue.popleft()[0]
            warnings("had no bases (embedding NaN)",
                     f"region {region.name} ({region.chrom}:{region.start}-{region.end}, 0-based) has no "
                     f"bases: its embedding is NaN")
            yield RegionEmbedding(region, np.full(dim, np.nan, np.float32), np.zeros(0, np.int64),
                                  np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    n = 0
    try:
        for item in engine.embed(to_engine(), per_token=per_token):
            for row in [*empty_rows(), item]:
                if row is item:
                    queue.popleft()
                    if _all_n(reference, item.region):
                        warnings("were all N", f"region {item.region.name} is all N in the reference: "
                                 "its embedding carries no sequence information")
                writer.add(row)
                n += 1
                on_region()
        for row in empty_rows():
            writer.add(row)
            n += 1
            on_region()
    except BaseException:
        writer.abort()
        raise
    writer.close()
    warnings.finish()
    return n
