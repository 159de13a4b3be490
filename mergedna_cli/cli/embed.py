"""`mergedna embed`: pooled embeddings of regions."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from .app import app
from .paths import check_not_input, check_output
from .threads import limit_threads
from .options import (AutoBatchSize, Backend, BackendChoice, Debug, Device, Fasta, Model, Quiet, RegionsBed,
                      RegionStrings, Strand, StrandChoice, Threads)


@app.command()
def embed(
    fasta: Fasta,
    out: Annotated[str, typer.Option("-o", "--out", help="Output: .parquet, .tsv or .npz.")],
    regions: RegionsBed = None,
    region: RegionStrings = None,
    per_token: Annotated[bool, typer.Option("--per-token", help="Also write each learned token's span and vector.")] = False,
    model: Model = None,
    backend: Backend = BackendChoice.auto,
    device: Device = "auto",
    batch_size: AutoBatchSize = "auto",
    strand: Strand = StrandChoice.both,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """One row per region: coordinates, name and the size-weighted mean of its token vectors."""
    limit_threads(threads)
    from ..io.embedding_writer import format_for
    from ..io.reference import Reference
    from ..io.regions import parse_region, read_bed
    from ..engine.load import make_backend, resolve_batch_size
    from ..pipelines.embed import run_embed
    from ..pipelines.progress import Logger
    import sys

    if (regions is None) == (not region):
        raise UsageError("give either --regions BED or one or more --region")
    strand = StrandChoice(strand).value
    format_for(out)
    check_output(out)
    check_not_input(out, regions, "--regions", fasta=fasta)
    log = Logger(quiet)
    reference = Reference(fasta)
    items = read_bed(str(regions)) if regions else (parse_region(r, reference) for r in region)
    engine_backend = make_backend(model, backend, device, threads, log=log.info, part="embedding")
    batch_size = resolve_batch_size(batch_size, engine_backend, log=log.info)
    with log.counter("embedding regions") as tick:
        n = run_embed(engine_backend, reference, items, out, per_token, batch_size, strand, on_region=tick,
                      warn=lambda message: print(f"mergedna: warning: {message}", file=sys.stderr))
    for user, ref in reference.renames.items():
        log.info(f"contig '{user}' matched to reference contig '{ref}'")
    log.info(f"wrote {n} regions to {out}")
