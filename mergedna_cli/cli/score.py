"""`mergedna score`: zero-shot variant effect scores."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .app import app
from .paths import check_output
from .threads import limit_threads
from .options import Fasta, Backend, BatchSize, Debug, Device, Model, Quiet, Strand, Threads


@app.command()
def score(
    fasta: Fasta,
    vcf: Annotated[str, typer.Option("--vcf", help="Input VCF/BCF (plain, bgzip or BCF); '-' for stdin.")],
    out: Annotated[str, typer.Option("-o", "--out", help="Output: .vcf.gz (bgzip + tabix), .vcf, or '-' for stdout.")],
    format: Annotated[Optional[str], typer.Option("--format", help="Write a table instead of a VCF: tsv or parquet.")] = None,
    mask_spacing: Annotated[int, typer.Option("--mask-spacing", min=0, help="0 (default): one masked position per pass. S > 0: positions at least S apart share a pass (faster; agreement with 0 measured in docs/benchmarks.md).")] = 0,
    ref_mismatch: Annotated[str, typer.Option("--ref-mismatch", help="REF differs from the reference: flag (keep, status), skip (drop, list in --skipped) or error.")] = "flag",
    skipped: Annotated[Optional[Path], typer.Option("--skipped", help="TSV listing every unscored allele and why.")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: score the I-th of N contiguous parts (1-based).")] = None,
    chunk_records: Annotated[int, typer.Option("--chunk-records", min=1, help="Records per chunk; a killed run resumes from its last finished chunk (OUT.partial/).")] = 2048,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the finished chunks of an earlier, interrupted run instead of resuming it.")] = False,
    model: Model = None,
    backend: Backend = "torch",
    device: Device = "auto",
    batch_size: BatchSize = 32,
    strand: Strand = "both",
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Score every ALT allele; every input record is written, in input order. A killed run resumes
    where it stopped when rerun with the same inputs (file in, file out)."""
    limit_threads(threads)
    from ..io.reference import Reference
    from ..model.files import weights_sha256
    from ..model_dirs import resolve_model_dir
    from ..pipelines.backend_factory import make_backend
    from ..pipelines.progress import Logger
    from ..pipelines.score import ScoreOptions, parse_shard, run_score

    if ref_mismatch not in ("flag", "skip", "error"):
        raise UsageError(f"--ref-mismatch must be flag, skip or error, got '{ref_mismatch}'")
    if strand not in ("both", "forward"):
        raise UsageError(f"--strand must be both or forward, got '{strand}'")
    if format not in (None, "tsv", "parquet"):
        raise UsageError(f"--format must be tsv or parquet, got '{format}'")
    if format is None and out != "-" and not out.endswith((".vcf", ".vcf.gz", ".vcf.bgz")):
        raise UsageError(f"output '{out}': use .vcf.gz, .vcf or '-', or pass --format tsv|parquet")
    shard_spec = parse_shard(shard)
    check_output(out)
    if skipped:
        check_output(skipped)
    log = Logger(quiet)
    reference = Reference(fasta)
    model_dir = resolve_model_dir(model)
    # SNVs/MNVs go through the scoring graph; the embedding graph is loaded at the first indel
    engine_backend = make_backend(str(model_dir), backend, device, threads, log=log.info, part="masked")

    def embedding_backend():
        return make_backend(str(model_dir), backend, device, threads, log=log.info, part="embedding")
    options = ScoreOptions(strand=strand, mask_spacing=mask_spacing or None, ref_mismatch=ref_mismatch,
                           batch_size=batch_size, chunk_records=chunk_records)
    with log.counter("scoring records") as tick:
        summary = run_score(engine_backend, reference, vcf, out, options, model_dir.name,
                            weights_sha256(model_dir), table_format=format,
                            skipped=str(skipped) if skipped else None, shard=shard_spec,
                            argv=sys.argv[1:], log=log.info, on_records=tick, restart=restart,
                            embedding_backend=embedding_backend)
    for user, ref in reference.renames.items():
        log.info(f"contig '{user}' matched to reference contig '{ref}'")
    counts = ", ".join(f"{status} {n}" for status, n in summary.alleles.most_common())
    resumed = f"; {summary.resumed} of them from an earlier run" if summary.resumed else ""
    log.info(f"scored {summary.records} records ({counts}){resumed}")
