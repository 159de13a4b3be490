"""`mergedna score`: zero-shot variant effect scores. The options become a ScoreRequest;
pipelines/score.py runs it."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .app import app
from .options import (
    AutoBatchSize,
    Backend,
    BackendChoice,
    Device,
    Fasta,
    Model,
    Quiet,
    Strand,
    StrandChoice,
    Threads,
)
from .paths import check_not_input, check_output
from .threads import limit_threads


class TableFormat(str, Enum):
    vcf = "vcf"
    tsv = "tsv"
    parquet = "parquet"


class OutputType(str, Enum):
    v = "v"
    z = "z"
    b = "b"
    u = "u"


class RefMismatch(str, Enum):
    flag = "flag"
    skip = "skip"
    error = "error"



@app.command()
def score(
    fasta: Fasta,
    vcf: Annotated[str, typer.Option("--vcf", help="Input VCF/BCF (plain, bgzip or BCF); '-' for stdin.")],
    out: Annotated[str, typer.Option("-o", "--out", help="Output: .vcf.gz (bgzip + tabix), .vcf, .bcf (+ CSI), .tsv[.gz], .parquet, or '-' for stdout (VCF unless --format/-O).")],
    format: Annotated[Optional[TableFormat], typer.Option("--format", help="Output format; default: from the extension of -o.")] = None,
    output_type: Annotated[Optional[OutputType], typer.Option("-O", "--output-type", help="VCF output type as in bcftools: v plain VCF, z bgzip VCF, b BCF, u uncompressed BCF; default: from the extension of -o.")] = None,
    regions: Annotated[Optional[str], typer.Option("-r", "--regions", help="Score only records overlapping these regions: chr, chr:beg or chr:beg-end (1-based), comma-separated; needs an indexed VCF/BCF.")] = None,
    regions_file: Annotated[Optional[Path], typer.Option("-R", "--regions-file", help="As -r, from a file: CHROM, POS or CHROM, BEG, END (1-based, tab-separated), or a .bed file (0-based).")] = None,
    mask_spacing: Annotated[int, typer.Option("--mask-spacing", min=0, help="0 (default): one masked position per pass. S > 0: positions at least S apart share a pass (faster; agreement with 0 measured in docs/benchmarks.md).")] = 0,
    ref_mismatch: Annotated[RefMismatch, typer.Option("--ref-mismatch", help="REF differs from the reference: flag (keep, status), skip (drop, list in --skipped) or error.")] = RefMismatch.flag,
    logprobs: Annotated[bool, typer.Option("--logprobs", help="Also write the ref and alt log-probabilities behind each LLR (MDNA_REF_LOGP, MDNA_ALT_LOGP).")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Also write each SNV's LLR minus its 5-mer context baseline (MDNA_LLR_CAL), from the model's calibration.json.")] = False,
    calibration: Annotated[Optional[Path], typer.Option("--calibration", help="Calibration table to use instead of the model's (implies --calibrate; built by benchmarks/calibration.py).")] = None,
    skipped: Annotated[Optional[Path], typer.Option("--skipped", help="TSV listing every unscored allele and why.")] = None,
    summary_file: Annotated[Optional[Path], typer.Option("--summary", help="Write the run summary (status counts, REF mismatch and N fractions, warnings) as JSON.")] = None,
    warn_fraction: Annotated[float, typer.Option("--warn-fraction", min=0.0, max=1.0, help="Warn (error with --strict) when more than this fraction of records have a mismatching REF, fall on N or on missing contigs.")] = 0.05,
    strict: Annotated[bool, typer.Option("--strict", help="Make the wrong-reference warnings errors (exit 1, no output).")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: score the I-th of N contiguous parts (1-based).")] = None,
    chunk_records: Annotated[int, typer.Option("--chunk-records", min=1, help="Records per chunk; a killed run resumes from its last finished chunk (OUT.partial/).")] = 2048,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the finished chunks of an earlier, interrupted run instead of resuming it.")] = False,
    fai: Annotated[Optional[Path], typer.Option("--fai", help="FASTA index to use or build (for a reference in a read-only folder; a bgzip FASTA also needs its .gzi beside it).")] = None,
    model: Model = None,
    backend: Backend = BackendChoice.auto,
    device: Device = "auto",
    batch_size: AutoBatchSize = "auto",
    strand: Strand = StrandChoice.both,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Score every ALT allele; every input record is written, in input order. A killed run resumes
    where it stopped when rerun with the same inputs (file in, file out)."""
    limit_threads(threads)  # before numpy, torch or pyarrow load (pipelines import them)
    from ..pipelines import score as pipeline

    request = pipeline.ScoreRequest(
        fasta=fasta, vcf=vcf, out=out, format=format, output_type=output_type, regions=regions,
        regions_file=regions_file, mask_spacing=mask_spacing, ref_mismatch=ref_mismatch, logprobs=logprobs,
        calibrate=calibrate, calibration=calibration, skipped=skipped, summary=summary_file,
        warn_fraction=warn_fraction, strict=strict, shard=shard, chunk_records=chunk_records, restart=restart,
        fai=fai, model=model, backend=backend, device=device, batch_size=batch_size, strand=StrandChoice(strand),
        threads=threads, quiet=quiet, argv=tuple(sys.argv[1:]))
    check_output(out)
    check_not_input(out, vcf, "--vcf", fasta=fasta)
    for side in (skipped, summary_file):
        if side:
            check_output(side)
            check_not_input(side, vcf, "--vcf", fasta=fasta, out=out)
    if skipped and summary_file and Path(skipped).resolve() == Path(summary_file).resolve():
        raise UsageError("--skipped and --summary name the same file")
    pipeline.run(request)
