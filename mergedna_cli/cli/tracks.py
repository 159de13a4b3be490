"""`mergedna tracks`: token BED9 and bigWig tracks for genome browsers; `mergedna merge-tracks`:
one set of tracks from several runs (a pipeline's per-contig jobs)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .app import app
from .options import (AutoBatchSize, Backend, BackendChoice, Device, Fasta, Model, Quiet, RegionsBed,
                      RegionStrings, Strand, StrandChoice, Threads)
from .threads import limit_threads


@app.command()
def tracks(
    fasta: Fasta,
    out: Annotated[str, typer.Option("-o", "--out", help="Output prefix: PREFIX.tokens.bed, PREFIX.boundary.bw, ...")],
    regions: RegionsBed = None,
    region: RegionStrings = None,
    genome: Annotated[bool, typer.Option("--genome", help="Every contig, skipping runs of >= 100 N.")] = False,
    contig: Annotated[Optional[list[str]], typer.Option("--contig", help="Only these contigs (repeatable): one pipeline job per contig, joined by merge-tracks.")] = None,
    signals: Annotated[bool, typer.Option("--signals", help="Also write per-base entropy and mean masked-base LLR (costs masked passes).")] = False,
    mask_spacing: Annotated[int, typer.Option("--mask-spacing", min=1, help="Masked bases sharing one pass for --signals are this far apart.")] = 16,
    compression: Annotated[Optional[float], typer.Option("--compression", help="Inference compression (tokens per base; default: the model's, 0.5). Runs on PyTorch (--backend auto picks it; not --backend onnx).")] = None,
    track_line: Annotated[bool, typer.Option("--track-line", help="Start the BED with a UCSC track line (bedToBigBed rejects it).")] = False,
    chunk_bases: Annotated[int, typer.Option("--chunk-bases", min=1, help="Bases per unit of work; a killed run resumes from its last finished unit (PREFIX.partial/).")] = 1 << 20,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the finished units of an earlier, interrupted run instead of resuming it.")] = False,
    hub: Annotated[Optional[str], typer.Option("--hub", help="Also write a UCSC track hub (one hub.txt) in this folder; tokens as bigBed if bedToBigBed is on PATH.")] = None,
    hub_genome: Annotated[str, typer.Option("--hub-genome", help="UCSC assembly name of the reference, for --hub.")] = "hg38",
    hub_email: Annotated[Optional[str], typer.Option("--hub-email", help="Contact email for hub.txt (UCSC requires one).")] = None,
    model: Model = None,
    backend: Backend = BackendChoice.auto,
    device: Device = "auto",
    batch_size: AutoBatchSize = "auto",
    strand: Strand = StrandChoice.both,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Learned token spans (BED9) and bigWigs of token starts and token length; --signals adds
    masked-base entropy and LLR. A killed run resumes where it stopped when rerun with the same
    inputs."""
    limit_threads(threads)
    from ..pipelines.progress import Logger
    from ..pipelines.tracks import TracksRequest, run

    run(TracksRequest(
        fasta=str(fasta), out=out, regions=str(regions) if regions is not None else None,
        region=tuple(region or ()), genome=genome, contig=tuple(contig or ()), signals=signals,
        mask_spacing=mask_spacing, compression=compression, track_line=track_line, chunk_bases=chunk_bases,
        restart=restart, hub=hub, hub_genome=hub_genome, hub_email=hub_email, model=model, backend=backend,
        device=device, batch_size=batch_size, strand=strand, threads=threads), Logger(quiet))


@app.command("merge-tracks")
def merge_tracks(
    parts: Annotated[list[str], typer.Argument(help="Output prefixes of `mergedna tracks` runs, in any order.")],
    fasta: Fasta,
    out: Annotated[str, typer.Option("-o", "--out", help="Output prefix of the merged tracks.")],
    quiet: Quiet = False,
) -> None:
    """Merge `tracks` outputs made per contig (or per part) into one BED9, one bigWig per signal
    and one JSON: the gather step of a pipeline (workflows/, docs/pipelines.md)."""
    from ..pipelines.merge_tracks import MergeTracksRequest, run
    from ..pipelines.progress import Logger

    run(MergeTracksRequest(parts=tuple(parts), fasta=str(fasta), out=out), Logger(quiet))
