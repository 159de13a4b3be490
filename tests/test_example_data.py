"""The small data the tests run on by default are faithful cuts of the project's shared data:
docs/example (the README's inputs) and tests/data (tests/data/PROVENANCE.md). Extended tests: they
read ../shared/data. Without it, the files' own shape is still checked."""

from __future__ import annotations

import gzip

import pytest
from conftest import CHR17_LENGTH, EXAMPLE_FASTA, EXAMPLE_FIRST_REAL, EXAMPLE_VCF, YEAST_FASTA

from mergedna_cli.alphabet import N
from mergedna_cli.io.fasta_records import iter_fasta_records
from mergedna_cli.io.reference import Reference

EXAMPLE_LAST_REAL = 43_150_000  # 0-based exclusive end of the example's real sequence


def test_example_reference_and_yeast_cut_have_the_documented_shape():
    ref = Reference(EXAMPLE_FASTA)
    assert ref.lengths == {"chr17": CHR17_LENGTH}
    real = ref.fetch_ids("chr17", EXAMPLE_FIRST_REAL, EXAMPLE_LAST_REAL)
    assert (real < N).mean() > 0.99  # real sequence (a few N at most)
    assert (ref.fetch_ids("chr17", EXAMPLE_FIRST_REAL - 1000, EXAMPLE_FIRST_REAL) == N).all()
    assert (ref.fetch_ids("chr17", EXAMPLE_LAST_REAL, EXAMPLE_LAST_REAL + 1000) == N).all()
    ref.close()
    records = list(iter_fasta_records(YEAST_FASTA))
    assert len(records) == 1 and records[0][0] == "NC_001133.9" and len(records[0][1]) == 120_000


@pytest.mark.extended
def test_example_reference_is_the_shared_reference_around_brca1(shared_data_dir):
    shared = Reference(shared_data_dir / "grch38_chr17_brca1_region" / "GRCh38_chr17_brca1_region.fa.gz")
    example = Reference(EXAMPLE_FASTA)
    assert example.lengths == shared.lengths
    for lo in range(EXAMPLE_FIRST_REAL, EXAMPLE_LAST_REAL, 10_000):
        hi = min(lo + 10_000, EXAMPLE_LAST_REAL)
        assert example.fetch_text("chr17", lo, hi) == shared.fetch_text("chr17", lo, hi), lo
    example.close()
    shared.close()


@pytest.mark.extended
def test_example_vcf_is_the_shared_clinvar_set(shared_data_dir):
    shared = shared_data_dir / "clinvar_brca1_2018" / "variants.vcf.gz"
    with gzip.open(EXAMPLE_VCF, "rt") as a, gzip.open(shared, "rt") as b:
        assert a.read() == b.read()  # the 284 records and the header, byte for byte


@pytest.mark.extended
def test_yeast_cut_is_the_start_of_the_shared_chromosome(shared_data_dir):
    (_, cut), = iter_fasta_records(YEAST_FASTA)
    (_, whole), = iter_fasta_records(shared_data_dir / "pretrain_corpus" / "yeast_R64_chrI.fa.gz")
    assert cut == whole[:120_000]
