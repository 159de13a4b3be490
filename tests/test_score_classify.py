"""`score`'s status table (`Scorer.classify`: each ALT's status and method, docs/commands.md) as
unit tests, and the command line -> ScoreRequest hand-over (typer's CliRunner, no model run).

Data: the BRCA1 slice of chr17 shipped in docs/example (real sequence; position 1,000 is N)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pysam
import pytest

from mergedna_cli.errors import InputError
from mergedna_cli.io.reference import Reference
from mergedna_cli.io.vcf import Variant
from mergedna_cli.pipelines import score as pipeline
from mergedna_cli.pipelines.score import STATUSES, AlleleJob, RecordJob, ScoreOptions, Scorer

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example"
REF = EXAMPLE / "brca1_chr17.fa.gz"
CLINVAR = EXAMPLE / "clinvar_brca1.vcf.gz"
CONTEXT = 512  # the shipped models' window: indels up to 128 bases fit (docs/commands.md)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(REF)


def scorer(reference: Reference, ref_mismatch: str = "flag") -> Scorer:
    backend = SimpleNamespace(config=SimpleNamespace(context=CONTEXT))  # classify runs no model
    return Scorer(backend, reference, ScoreOptions(ref_mismatch=ref_mismatch))


def seq(start: int, end: int) -> str:
    """chr17[start:end) of the example reference, 0-based."""
    with pysam.FastaFile(str(REF)) as fasta:
        return fasta.fetch("chr17", start, end).upper()


def classify(reference, chrom: str, pos: int, ref: str, alt: str, ref_mismatch: str = "flag") -> RecordJob:
    variant = Variant(0, [chrom, str(pos), ".", ref, alt, ".", ".", "."])
    return scorer(reference, ref_mismatch).classify(variant, reference.resolve(chrom))


def statuses(job: RecordJob) -> list[str]:
    return [allele.status for allele in job.alleles]


POS = 43045705  # 1-based; chr17:43,045,705-43,045,706 is TA


def test_the_example_reference_is_what_the_table_below_assumes():
    assert seq(POS - 1, POS + 1) == "TA" and seq(999, 1000) == "N"


def test_snv_and_multiallelic_are_scored_by_masked_llr(reference):
    job = classify(reference, "chr17", POS, "T", "A,C,G")
    assert statuses(job) == ["ok"] * 3 and job.ref_check == "match"
    assert [a.method for a in job.alleles] == ["snv_llr"] * 3
    assert [a.positions for a in job.alleles] == [(POS - 1,)] * 3
    assert [a.ref_bases for a in job.alleles] == [(3,)] * 3  # T
    assert [a.alt_bases for a in job.alleles] == [(0,), (1,), (2,)]  # A C G
    lower = classify(reference, "chr17", POS, "t", "c")
    assert lower.alleles == (job.alleles[1],)  # soft-masked alleles read as upper case


def test_mnv_masks_only_the_changed_bases(reference):
    job = classify(reference, "chr17", POS, "TA", "GA")
    (allele,) = job.alleles
    assert allele.status == "ok" and allele.method == "mnv_llr_sum"
    assert allele.positions == (POS - 1,) and allele.alt_bases == (2,)
    (both,) = classify(reference, "chr17", POS, "TA", "GC").alleles
    assert both.positions == (POS - 1, POS) and both.ref_bases == (3, 0) and both.alt_bases == (2, 1)


def test_indels_fit_the_pooled_centre_or_are_too_long(reference):
    assert scorer(reference).max_indel == 128
    job = classify(reference, "chr17", POS, "TA", "T,TAGG")
    assert statuses(job) == ["ok", "ok"]
    assert [a.method for a in job.alleles] == ["indel_embedding_cosine"] * 2
    assert all(a.positions == () for a in job.alleles)
    fits, too_long = seq(POS - 1, POS - 1 + 128), seq(POS - 1, POS - 1 + 129)
    assert statuses(classify(reference, "chr17", POS, fits, "T")) == ["ok"]
    assert statuses(classify(reference, "chr17", POS, too_long, "T")) == ["indel_too_long"]
    assert statuses(classify(reference, "chr17", POS, "T", "T" + "A" * 128)) == ["indel_too_long"]


@pytest.mark.parametrize("alt, status", [
    ("<DEL>", "symbolic_allele"), ("T[chr17:100[", "symbolic_allele"), ("]chr17:100]T", "symbolic_allele"),
    ("*", "spanning_deletion"), (".", "missing_allele"), ("R", "non_acgt_allele"), ("TN", "non_acgt_allele"),
    ("T", "ref_equals_alt"),
])
def test_alleles_that_cannot_be_scored(reference, alt, status):
    job = classify(reference, "chr17", POS, "T", alt)
    assert statuses(job) == [status] and job.alleles[0].method == "."
    assert job.ref_check == "match"  # the record's REF was still compared


def test_record_level_statuses_apply_to_every_scorable_alt(reference):
    missing = classify(reference, "chrUn", 5, "A", "C,<DEL>")
    assert missing.contig is None and statuses(missing) == ["contig_not_in_reference", "symbolic_allele"]
    assert missing.ref_check is None
    on_n = classify(reference, "chr17", 1000, "A", "C,G")
    assert statuses(on_n) == ["reference_is_n"] * 2 and on_n.ref_check == "reference_is_n"
    n_ref = classify(reference, "chr17", 1000, "N", "A")
    assert statuses(n_ref) == ["non_acgt_allele"] and n_ref.ref_check is None
    telomere = classify(reference, "chr17", 0, "A", "C")  # POS 0 is legal: kept, not scored
    assert statuses(telomere) == ["outside_contig"] and telomere.ref_check is None
    past_end = classify(reference, "chr17", reference.lengths["chr17"], "AC", "GT")
    assert statuses(past_end) == ["outside_contig"]
    renamed = classify(reference, "17", POS, "T", "G")
    assert renamed.contig == "chr17" and statuses(renamed) == ["ok"]


def test_ref_mismatch_records_the_one_base_shift(reference):
    # a position whose left and right neighbours differ from it and from each other
    start = next(p for p in range(POS, POS + 200) if len({*seq(p - 1, p + 2)}) == 3)
    here, left, right = seq(start, start + 1), seq(start - 1, start), seq(start + 1, start + 2)
    other = next(b for b in "ACGT" if b not in (here, left, right))
    for vcf_ref, check in ((right, "mismatch+1"), (left, "mismatch-1"), (other, "mismatch")):
        job = classify(reference, "chr17", start + 1, vcf_ref, "A,*")
        assert job.ref_check == check
        assert statuses(job) == ["ref_mismatch", "spanning_deletion"]
    with pytest.raises(InputError, match=rf"REF mismatch at chr17:{start + 1}: VCF has {other}, reference has {here}"):
        classify(reference, "chr17", start + 1, other, "A", ref_mismatch="error")


def test_statuses_are_the_documented_table():
    assert STATUSES == ("ok", "ref_mismatch", "ref_equals_alt", "indel_too_long", "symbolic_allele",
                        "spanning_deletion", "missing_allele", "non_acgt_allele", "contig_not_in_reference",
                        "reference_is_n", "outside_contig")


def test_work_orders_are_immutable(reference):
    job = classify(reference, "chr17", POS, "T", "A")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.ref_check = "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.alleles[0].status = "x"
    assert isinstance(job.alleles[0], AlleleJob)


# -- the command line -> ScoreRequest ------------------------------------------------------------
def invoke(monkeypatch, *args: str):
    """`mergedna score ARGS` in-process with pipelines.score.run replaced: the request it got."""
    from typer.testing import CliRunner

    from mergedna_cli.cli.app import app
    from mergedna_cli.cli.threads import _POOL_VARIABLES

    for name in _POOL_VARIABLES:  # --threads sets them; restored after the test
        monkeypatch.setenv(name, "0")
    got = []
    monkeypatch.setattr(pipeline, "run", lambda request, **kw: got.append(request))
    result = CliRunner().invoke(app, ["score", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert len(got) == 1
    return got[0]


def test_every_score_option_reaches_the_request(monkeypatch, tmp_path):
    from mergedna_cli.cli.options import BackendChoice, StrandChoice
    from mergedna_cli.cli.score import OutputType, RefMismatch, TableFormat
    from mergedna_cli.pipelines.score import ScoreRequest

    request = invoke(
        monkeypatch, "--fasta", REF, "--vcf", CLINVAR, "-o", tmp_path / "o.vcf.gz", "--format", "vcf",
        "-O", "z", "-r", "chr17:43044000-43050000", "--mask-spacing", "16", "--ref-mismatch", "skip",
        "--logprobs", "--calibrate", "--calibration", tmp_path / "table.json", "--skipped", tmp_path / "s.tsv",
        "--summary", tmp_path / "s.json", "--warn-fraction", "0.2", "--strict", "--shard", "2/3",
        "--chunk-records", "7", "--restart", "--fai", tmp_path / "ref.fai", "--model", "mergedna-base",
        "--backend", "torch", "--device", "cpu", "--batch-size", "8", "--strand", "forward", "--threads", "1",
        "--quiet")
    assert isinstance(request, ScoreRequest)
    expected = dict(
        fasta=REF, vcf=str(CLINVAR), out=str(tmp_path / "o.vcf.gz"), format=TableFormat.vcf,
        output_type=OutputType.z, regions="chr17:43044000-43050000", regions_file=None, mask_spacing=16,
        ref_mismatch=RefMismatch.skip, logprobs=True, calibrate=True, calibration=tmp_path / "table.json",
        skipped=tmp_path / "s.tsv", summary=tmp_path / "s.json", warn_fraction=0.2, strict=True, shard="2/3",
        chunk_records=7, restart=True, fai=tmp_path / "ref.fai", model="mergedna-base",
        backend=BackendChoice.torch, device="cpu", batch_size=8, strand=StrandChoice.forward, threads=1,
        quiet=True)
    got = {f.name: getattr(request, f.name) for f in dataclasses.fields(request) if f.name != "argv"}
    assert got == expected
    assert set(expected) | {"argv"} == {f.name for f in dataclasses.fields(ScoreRequest)}
    assert isinstance(request.ref_mismatch, RefMismatch) and isinstance(request.strand, StrandChoice)
    assert request.output_format() == ("vcf", "z", False) and request.shard_spec() == (2, 3)


def test_score_defaults_and_the_regions_file(monkeypatch, tmp_path):
    from mergedna_cli.cli.options import BackendChoice, StrandChoice
    from mergedna_cli.cli.score import RefMismatch

    bed = tmp_path / "r.bed"
    bed.write_text("chr17\t43044000\t43050000\n")
    request = invoke(monkeypatch, "--fasta", REF, "--vcf", CLINVAR, "-o", tmp_path / "o.tsv", "-R", bed)
    assert request.regions_file == bed and request.regions is None
    assert (request.format, request.output_type, request.mask_spacing, request.ref_mismatch) == \
           (None, None, 0, RefMismatch.flag)
    assert (request.backend, request.device, request.batch_size, request.strand, request.threads) == \
           (BackendChoice.auto, "auto", "auto", StrandChoice.both, None)
    assert (request.chunk_records, request.warn_fraction, request.shard, request.model) == (2048, 0.05, None, None)
    assert request.output_format() == ("tsv", None, False)
    assert request.wanted_regions()[0].start == 43044000


@pytest.mark.parametrize("args, message", [
    (["-o", "x.parquet", "-O", "z"], "-O z is a VCF/BCF output type"),
    (["-o", "-", "--format", "parquet"], "parquet output needs a file name"),
    (["-o", "x.vcf", "-r", "chr17", "-R", "r.bed"], "not both"),
    (["-o", "x.vcf", "--shard", "0/2"], "--shard must be I/N"),
])
def test_contradicting_options_are_usage_errors_before_any_work(monkeypatch, args, message):
    from typer.testing import CliRunner

    from mergedna_cli.cli.app import app

    monkeypatch.setattr(pipeline, "run", lambda request, **kw: pytest.fail("run() was reached"))
    result = CliRunner().invoke(app, ["score", "--fasta", str(REF), "--vcf", str(CLINVAR), *args])
    assert type(result.exception).__name__ == "UsageError" and message in str(result.exception)


def test_the_command_line_loads_no_numpy_before_threads_are_set():
    """--threads sizes the OpenMP/OpenBLAS pools through the environment, read when numpy or torch
    loads: the CLI modules must not import them (pipelines/score.py does, so it is imported late)."""
    import subprocess
    import sys

    code = ("import sys, mergedna_cli.cli.app\n"
            "print(sorted(m for m in ('numpy', 'torch', 'pyarrow', 'mergedna_cli.pipelines.score') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"
