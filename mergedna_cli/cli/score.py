"""`mergedna score`: zero-shot variant effect scores."""

from __future__ import annotations

import re
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .app import app
from .paths import check_not_input, check_output
from .threads import limit_threads
from .options import (AutoBatchSize, Backend, BackendChoice, Debug, Device, Fasta, Model, Quiet, Strand,
                      StrandChoice, Threads)


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


# extension -> (format, VCF output type or table compression)
_EXTENSIONS = (
    (r"\.vcf\.b?gz$", "vcf", "z"), (r"\.vcf$", "vcf", "v"), (r"\.bcf$", "vcf", "b"),
    (r"\.tsv\.b?gz$", "tsv", "gz"), (r"\.tsv$", "tsv", None),
    (r"\.(parquet|pq)$", "parquet", None),
)


def resolve_output(out: str, fmt: str | None, output_type: str | None) -> tuple[str, str | None, bool]:
    """(format, VCF output type, gzip the table) from the extension, --format and -O; an
    extension that says one thing and an option another is an error, not a guess."""
    guessed = next(((f, kind) for pattern, f, kind in _EXTENSIONS if re.search(pattern, out)), None)
    if output_type and fmt in ("tsv", "parquet"):
        raise UsageError(f"-O {output_type} is a VCF/BCF output type; it does not go with --format {fmt}")
    if guessed is None:
        if fmt in ("tsv", "parquet"):
            return fmt, None, out.endswith(".gz")
        if out == "-" or output_type or fmt == "vcf":
            return "vcf", output_type or "v", False
        raise UsageError(f"output '{out}': use .vcf.gz, .vcf or '-', .bcf, .tsv[.gz] or .parquet, "
                         f"or pass --format tsv|parquet or -O v|z|b|u")
    ext_format, kind = guessed
    if fmt is not None and fmt != ext_format:
        raise UsageError(f"--format {fmt} contradicts the output name '{out}' (a {ext_format} name); "
                         f"use a .{fmt if fmt != 'vcf' else 'vcf.gz'} name")
    if ext_format != "vcf":
        if output_type:
            raise UsageError(f"-O {output_type} is a VCF/BCF output type; '{out}' names a {ext_format} table")
        return ext_format, None, kind == "gz"
    if output_type and output_type != kind and not (output_type == "u" and kind == "b"):
        raise UsageError(f"-O {output_type} contradicts the output name '{out}' (which means -O {kind})")
    return "vcf", output_type or kind, False


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
    debug: Debug = False,
) -> None:
    """Score every ALT allele; every input record is written, in input order. A killed run resumes
    where it stopped when rerun with the same inputs (file in, file out)."""
    limit_threads(threads)
    from ..io.reference import Reference
    from ..io.vcf import parse_regions, read_regions_file
    from ..model.files import weights_sha256
    from ..model_dirs import resolve_model_dir
    from ..engine.load import make_backend, resolve_batch_size
    from ..pipelines.progress import Logger
    from ..pipelines.score import OutputSpec, ScoreOptions, load_calibration, parse_shard, run_score

    strand = StrandChoice(strand).value
    fmt, kind, compress = resolve_output(out, format.value if format else None,
                                         output_type.value if output_type else None)
    if fmt == "parquet" and out == "-":
        raise UsageError("parquet output needs a file name, not '-'")
    if regions is not None and regions_file is not None:
        raise UsageError("give -r/--regions or -R/--regions-file, not both")
    shard_spec = parse_shard(shard)
    check_output(out)
    check_not_input(out, vcf, "--vcf", fasta=fasta)
    for side, name in ((skipped, "--skipped"), (summary_file, "--summary")):
        if side:
            check_output(side)
            check_not_input(side, vcf, "--vcf", fasta=fasta, out=out)
    if skipped and summary_file and Path(skipped).resolve() == Path(summary_file).resolve():
        raise UsageError("--skipped and --summary name the same file")
    wanted = None
    if regions is not None:
        wanted = parse_regions(regions)
    elif regions_file is not None:
        wanted = read_regions_file(str(regions_file))
    log = Logger(quiet)
    reference = Reference(fasta, fai=fai)
    model_dir = resolve_model_dir(model)
    # SNVs/MNVs go through the scoring graph; the embedding graph is loaded at the first indel
    engine_backend = make_backend(str(model_dir), backend, device, threads, log=log.info, part="masked")
    batch_size = resolve_batch_size(batch_size, engine_backend, log=log.info)

    def embedding_backend():
        return make_backend(str(model_dir), backend, device, threads, log=log.info, part="embedding")
    def warn(message: str) -> None:  # shown even with --quiet, like the run summary's warnings
        print(f"mergedna: warning: {message}", file=sys.stderr)
    table = load_calibration(model_dir, calibration, weights_sha256(model_dir), warn) \
        if calibrate or calibration else None
    options = ScoreOptions(strand=strand, mask_spacing=mask_spacing or None, ref_mismatch=ref_mismatch.value,
                           batch_size=batch_size, chunk_records=chunk_records, logprobs=logprobs,
                           warn_fraction=warn_fraction, strict=strict, calibration=table)
    backend_name = getattr(engine_backend, "name", None) or backend
    spec = OutputSpec(out, None if fmt == "vcf" else fmt, kind if fmt == "vcf" else None, compress,
                      skipped=str(skipped) if skipped else None,
                      summary=str(summary_file) if summary_file else None,
                      summary_extra={"input": vcf, "output": out, "reference": str(fasta),
                                     "model": model_dir.name, "backend": backend_name})
    with log.counter("scoring records") as tick:
        summary = run_score(engine_backend, reference, vcf, spec, options, model_dir.name,
                            weights_sha256(model_dir), shard=shard_spec, argv=sys.argv[1:], log=log.info,
                            on_records=tick, restart=restart, embedding_backend=embedding_backend,
                            regions=wanted, backend_name=backend_name)
    for user, ref in reference.renames.items():
        log.info(f"contig '{user}' matched to reference contig '{ref}'")
    counts = ", ".join(f"{status} {n}" for status, n in summary.alleles.most_common())
    resumed = f"; {summary.resumed} of them from an earlier run" if summary.resumed else ""
    fractions = summary.fractions()
    checks = ""  # the REF checks, when any failed (a clean run keeps its one short line)
    if summary.mismatches or summary.ref_checks["reference_is_n"]:
        checks = (f"; REF mismatch {fractions['ref_mismatch']:.1%}, reference N "
                  f"{fractions['reference_is_n']:.1%} of {summary.compared} records compared")
    log.info(f"scored {summary.records} records ({counts}){resumed}{checks}")
    for warning in summary.warnings:  # shown even with --quiet: the scores are likely meaningless
        print(f"mergedna: warning: {warning}", file=sys.stderr)
