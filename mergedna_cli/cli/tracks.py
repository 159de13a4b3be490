"""`mergedna tracks`: token BED9 and bigWig tracks for genome browsers; `mergedna merge-tracks`:
one set of tracks from several runs (a pipeline's per-contig jobs)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .app import app
from .threads import limit_threads
from .options import (AutoBatchSize, Backend, BackendChoice, Debug, Device, Fasta, Model, Quiet, RegionsBed,
                      RegionStrings, Strand, StrandChoice, Threads)


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
    debug: Debug = False,
) -> None:
    """Learned token spans (BED9) and bigWigs of token starts and token length; --signals adds
    masked-base entropy and LLR. A killed run resumes where it stopped when rerun with the same
    inputs."""
    limit_threads(threads)
    from ..io.reference import Reference
    from ..io.regions import parse_region, read_bed
    from ..model.files import weights_sha256
    from ..model_dirs import resolve_model_dir
    from ..engine.load import make_backend, resolve_batch_size
    from ..pipelines.progress import Logger
    from ..pipelines.resume import file_identity
    from ..pipelines.tracks import TracksOptions, check_prefix, genome_regions, run_tracks, sorted_merged

    if sum([regions is not None, bool(region), genome]) != 1:
        raise UsageError("give exactly one of --regions BED, --region, or --genome")
    if compression is not None and not 0.05 <= compression <= 1.0:
        raise UsageError(f"--compression must be in [0.05, 1], got {compression}")
    if compression is not None and backend == "onnx":
        raise UsageError("--compression needs --backend torch: the ONNX graphs are exported at the model's compression")
    check_prefix(out)
    if hub:
        from ..io.track_hub import check_hub_options
        check_hub_options(hub_email, hub_genome)
    log = Logger(quiet)
    reference = Reference(fasta)
    model_dir = resolve_model_dir(model)
    # boundaries need only the tokenizer; --signals adds the scoring graph's masked passes
    # --compression changes the PyTorch tokenizer only: --backend auto then means torch
    require = "torch" if compression is not None else None
    tokens_backend = make_backend(str(model_dir), backend, device, threads, log=log.info, part="tokens",
                                  require=require)
    signals_backend = (make_backend(str(model_dir), backend, device, threads, log=log.info, part="masked",
                                    require=require) if signals else None)
    batch_size = resolve_batch_size(batch_size, tokens_backend, signals_backend, log=log.info)
    log.info(f"running {tokens_backend.name} on {tokens_backend.device}, {batch_size} windows per batch")
    for engine_backend in (tokens_backend, signals_backend):
        if compression is not None and engine_backend is not None:
            engine_backend.config.compression = compression
    contigs = [reference.require(c) for c in contig] if contig else None
    if genome:
        spans = genome_regions(reference, contigs=contigs)
        inputs = {"genome": True}
    else:
        items = read_bed(str(regions)) if regions else (parse_region(r, reference) for r in region)
        spans = [s for s in sorted_merged(items, reference) if contigs is None or s[0] in contigs]
        inputs = {"bed": file_identity(regions)} if regions else {"region": list(region)}
    inputs["contigs"] = contigs
    options = TracksOptions(batch_size=batch_size, signals=signals, mask_spacing=mask_spacing,
                            strand=StrandChoice(strand).value, track_line=track_line, chunk_bases=chunk_bases)
    with log.counter("windows") as tick:
        meta = run_tracks(tokens_backend, reference, spans, out, options, model_dir.name,
                          weights_sha256(model_dir), log=log.info, on_window=tick, inputs=inputs,
                          restart=restart, signals_backend=signals_backend)
    for user, ref in reference.renames.items():
        log.info(f"contig '{user}' matched to reference contig '{ref}'")
    log.info(f"wrote {out}.tokens.bed and bigWigs: {meta['tokens']:,} tokens over {meta['bases']:,} "
             f"bases (mean length {meta['mean_token_length']:.2f})")
    if hub:
        from ..io.track_hub import write_hub
        chrom_sizes = [(c, reference.lengths[c]) for c in reference.contigs]
        made_with = f"{meta['tool']}, backend {meta['backend']} on {meta['device']}" + (
            f" (signals: {meta['signals_backend']} on {meta['signals_device']})" if "signals_backend" in meta else "")
        path = write_hub(hub, out, chrom_sizes, model_dir.name, signals, hub_email, hub_genome, log=log.info,
                         made_with=made_with)
        log.info(f"wrote {path}")


@app.command("merge-tracks")
def merge_tracks(
    parts: Annotated[list[str], typer.Argument(help="Output prefixes of `mergedna tracks` runs, in any order.")],
    fasta: Fasta,
    out: Annotated[str, typer.Option("-o", "--out", help="Output prefix of the merged tracks.")],
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Merge `tracks` outputs made per contig (or per part) into one BED9, one bigWig per signal
    and one JSON: the gather step of a pipeline (workflows/, docs/pipelines.md)."""
    from ..io.reference import Reference
    from ..pipelines.merge_tracks import merge_tracks as run_merge
    from ..pipelines.progress import Logger
    from ..pipelines.tracks import check_prefix

    check_prefix(out)
    if out in parts:
        raise UsageError(f"-o {out} is one of the parts; choose another prefix")
    log = Logger(quiet)
    meta = run_merge(Reference(fasta), parts, out, log=log.info)
    log.info(f"wrote {out}.tokens.bed and bigWigs: {meta['tokens']:,} tokens over {meta['bases']:,} bases "
              f"from {len(parts)} parts")
