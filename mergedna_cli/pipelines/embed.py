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
from dataclasses import dataclass

import numpy as np

from ..alphabet import N
from ..engine.engine import Engine, RegionEmbedding
from ..engine.load import make_backend, resolve_batch_size
from ..errors import UsageError
from ..io.embedding_writer import EmbeddingWriter, format_for
from ..io.reference import Reference
from ..io.regions import Region, parse_region, read_bed
from .choices import InferenceOptions, StrandChoice
from .paths import check_not_input, check_output
from .progress import Logger

_SHOWN = 10  # warnings of one kind shown one by one; the rest are counted


@dataclass(frozen=True)
class EmbedRequest(InferenceOptions):
    """`mergedna embed`, as parsed by cli/embed.py."""

    fasta: str
    out: str                        # .parquet, .tsv or .npz
    regions: str | None = None      # --regions BED
    region: tuple[str, ...] = ()    # --region strings (exactly one of regions and region)
    per_token: bool = False


def run(request: EmbedRequest, log: Logger | None = None) -> int:
    """Check the request, load the reference and the model's embedding graph, write the table;
    returns the number of rows written."""
    log = log or Logger()
    if (request.regions is None) == (not request.region):
        raise UsageError("give either --regions BED or one or more --region")
    format_for(request.out)
    check_output(request.out)
    check_not_input(request.out, request.regions, "--regions", fasta=request.fasta)
    reference = Reference(request.fasta)
    items = (read_bed(request.regions) if request.regions
             else (parse_region(r, reference) for r in request.region))
    backend = make_backend(request.model, request.backend, request.device, request.threads, log=log.info,
                           part="embedding")
    batch_size = resolve_batch_size(request.batch_size, backend, log=log.info)
    with log.counter("embedding regions") as tick:
        n = run_embed(backend, reference, items, request.out, request.per_token, batch_size,
                      StrandChoice(request.strand).value, on_region=tick, warn=log.warning)
    for user, ref in reference.renames.items():
        log.info(f"contig '{user}' matched to reference contig '{ref}'")
    log.info(f"wrote {n} regions to {request.out}")
    return n


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
