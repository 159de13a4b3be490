"""`mergedna embed`: pooled embeddings of regions."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from .options import (AutoBatchSize, Backend, BackendChoice, Device, Fasta, Model, Quiet, RegionsBed,
                      RegionStrings, Strand, StrandChoice, Threads)
from .threads import limit_threads


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
) -> None:
    """One row per region: coordinates, name and the size-weighted mean of its token vectors."""
    limit_threads(threads)
    from ..pipelines.embed import EmbedRequest, run
    from ..pipelines.progress import Logger

    run(EmbedRequest(fasta=str(fasta), out=out, regions=str(regions) if regions is not None else None,
                     region=tuple(region or ()), per_token=per_token, model=model, backend=backend,
                     device=device, batch_size=batch_size, strand=strand, threads=threads), Logger(quiet))
