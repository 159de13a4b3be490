"""Readers under mergedna_cli.io: region strings, BED files, the reference FASTA, the embedding writer.

Coordinates: region strings are 1-based inclusive (like samtools) and come back 0-based half-open;
BED is 0-based half-open already. Small FASTAs are written by the tests; the real chr17 reference is
the README's example (docs/example), and the larger shared copy in an extended test.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest
from conftest import CHR17_LENGTH, EXAMPLE_FASTA, EXAMPLE_FIRST_REAL

from mergedna_cli.alphabet import N, encode
from mergedna_cli.errors import InputError, UsageError
from mergedna_cli.io.embedding_writer import EmbeddingWriter, format_for
from mergedna_cli.io.reference import Reference
from mergedna_cli.io.regions import Region, parse_region, read_bed

SHARED_REF = "grch38_chr17_brca1_region/GRCh38_chr17_brca1_region.fa.gz"


def write_fasta(path: Path, records: dict[str, str], width: int = 7) -> Path:
    """Plain FASTA with short lines, so the .fai's line geometry is exercised."""
    with open(path, "w") as handle:
        for name, seq in records.items():
            handle.write(f">{name} some description\n")
            for i in range(0, len(seq), width):
                handle.write(seq[i:i + width] + "\n")
    return path


# ----------------------------------------------------------------------------- region strings

def test_parse_region_is_one_based_inclusive_with_commas():
    region = parse_region("chr1:1,001-2,000")
    assert (region.chrom, region.start, region.end) == ("chr1", 1000, 2000)
    assert len(region) == 1000
    assert region.name == "chr1:1,001-2,000"


def test_parse_region_single_base():
    region = parse_region("chrX:5-5")
    assert (region.chrom, region.start, region.end, len(region)) == ("chrX", 4, 5, 1)


def test_parse_region_strips_whitespace():
    region = parse_region("  chr2:10-20\n")
    assert (region.chrom, region.start, region.end, region.name) == ("chr2", 9, 20, "chr2:10-20")


def _reference(tmp_path, contigs: dict[str, int]) -> Reference:
    fasta = tmp_path / "ref.fa"
    fasta.write_text("".join(f">{name}\n{'A' * n}\n" for name, n in contigs.items()))
    return Reference(fasta)


def test_parse_region_whole_contig_uses_lengths(tmp_path):
    region = parse_region("chr1", _reference(tmp_path, {"chr1": 5000, "chr2": 10}))
    assert (region.chrom, region.start, region.end) == ("chr1", 0, 5000)
    assert region.name == "chr1"


def test_parse_region_whole_contig_matches_names(tmp_path):
    region = parse_region("chr2", _reference(tmp_path, {"1": 50, "2": 10}))
    assert (region.chrom, region.start, region.end) == ("chr2", 0, 10)


def test_parse_region_whole_contig_unknown(tmp_path):
    with pytest.raises(InputError) as err:
        parse_region("chrZ", _reference(tmp_path, {"chr1": 5000}))
    assert str(err.value).startswith("contig 'chrZ' not in reference") and str(err.value).endswith("it has: chr1")


@pytest.mark.parametrize("text", ["chr1:0-5", "chr1:10-5"])
def test_parse_region_bad_interval(text):
    with pytest.raises(InputError) as err:
        parse_region(text)
    assert str(err.value) == (f"region '{text}': start must be >= 1 and end >= start "
                              "(1-based, inclusive)")


@pytest.mark.parametrize("text", ["chr1:a-b", "chr1:5-", "chr1:-5", "chr1:1-5:7", "", "chr 1:1-5"])
def test_parse_region_malformed(text):
    with pytest.raises(InputError) as err:
        parse_region(text)
    assert str(err.value) == f"region '{text}' is not chrom, or chrom:start-end (1-based, inclusive)"


# ----------------------------------------------------------------------------- BED

def test_read_bed_skips_headers_keeps_names(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text(
        "# a comment\n"
        "track name=regions description=\"test\"\n"
        "browser position chr1:1-100\n"
        "\n"
        "chr1\t10\t20\n"
        "chr2\t0\t5\tgeneA\t0\t+\n"
        "chrX\t100\t250\tenhancer 1\n"   # a name with a space stays whole (tab-separated BED)
        "chr3 7 9\n"                      # space-separated BED3 still reads
    )
    regions = list(read_bed(str(bed)))
    assert regions == [
        Region("chr1", 10, 20, "chr1:11-20"),   # default name: the 1-based region string
        Region("chr2", 0, 5, "geneA"),
        Region("chrX", 100, 250, "enhancer 1"),
        Region("chr3", 7, 9, "chr3:8-9"),
    ]


def test_read_bed_crlf_line_endings(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_bytes(b"chr1\t10\t20\tA\r\nchr1\t30\t40\r\n")
    assert list(read_bed(str(bed))) == [Region("chr1", 10, 20, "A"), Region("chr1", 30, 40, "chr1:31-40")]


@pytest.mark.parametrize("bad_line", ["chr1\t10", "chr1\tten\t20", "chr1\t1.5\t20"])
def test_read_bed_malformed_line_names_file_and_line(tmp_path, bad_line):
    bed = tmp_path / "r.bed"
    bed.write_text(f"# header\nchr1\t1\t2\n{bad_line}\nchr1\t3\t4\n")
    reader = read_bed(str(bed))
    assert next(reader) == Region("chr1", 1, 2, "chr1:2-2")
    with pytest.raises(InputError) as err:
        next(reader)
    assert str(err.value) == (f"{bed}:3: expected chrom, start, end (tab-separated), "
                              f"got {bad_line!r}")


@pytest.mark.parametrize("start,end", [(20, 10), (-1, 5)])
def test_read_bed_invalid_interval_names_file_and_line(tmp_path, start, end):
    bed = tmp_path / "r.bed"
    bed.write_text(f"chr1\t1\t2\nchr1\t{start}\t{end}\tx\n")
    with pytest.raises(InputError) as err:
        list(read_bed(str(bed)))
    assert str(err.value) == f"{bed}:2: invalid interval {start}-{end} (need 0 <= start <= end)"


def test_read_bed_keeps_a_zero_length_interval(tmp_path):
    """start == end is valid BED (an insertion point): one such line must not reject the file."""
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t1\t2\nchr1\t5\t5\tpoint\n")
    assert [(r.start, r.end, r.name) for r in read_bed(str(bed))] == [(1, 2, "chr1:2-2"), (5, 5, "point")]


def test_read_bed_missing_file(tmp_path):
    path = tmp_path / "missing.bed"
    with pytest.raises(InputError) as err:
        list(read_bed(str(path)))
    assert str(err.value) == f"cannot read BED '{path}': No such file or directory"


# ----------------------------------------------------------------------------- reference

SEQ = "ACGTACGTACgtacgtNNRYacgtAC"   # soft-masked and IUPAC codes included


def test_plain_fasta_gets_fai_and_reads_back(tmp_path):
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": SEQ, "chr2": "GGGCCC"})
    assert not (tmp_path / "ref.fa.fai").exists()
    ref = Reference(fasta)
    assert (tmp_path / "ref.fa.fai").is_file()
    assert ref.contigs == ["chr1", "chr2"]
    assert ref.lengths == {"chr1": len(SEQ), "chr2": 6}
    assert ref.fetch_text("chr1", 8, 14) == SEQ[8:14].upper()
    np.testing.assert_array_equal(ref.fetch_ids("chr1", 0, len(SEQ)), encode(SEQ))
    # soft-masked lower case reads as the base; R/Y read as N
    np.testing.assert_array_equal(ref.fetch_ids("chr1", 10, 20), [2, 3, 0, 1, 2, 3, N, N, N, N])
    ref.close()


def test_bgzip_fasta_gets_fai_and_gzi(tmp_path):
    plain = write_fasta(tmp_path / "plain.fa", {"chr1": SEQ * 50})
    bgz = tmp_path / "ref.fa.gz"
    pysam.tabix_compress(str(plain), str(bgz))
    ref = Reference(bgz)
    assert (tmp_path / "ref.fa.gz.fai").is_file() and (tmp_path / "ref.fa.gz.gzi").is_file()
    assert ref.fetch_text("chr1", 1000, 1030) == (SEQ * 50)[1000:1030].upper()


def test_missing_fasta(tmp_path):
    path = tmp_path / "nope.fa"
    with pytest.raises(InputError) as err:
        Reference(path)
    assert str(err.value) == f"reference FASTA '{path}' does not exist"


def _readonly_message(path: Path) -> str:
    return (f"reference '{path}' has no .fai index and its folder is not writable; "
            f"pass --fai DIR/NAME.fai (built there if missing), run `samtools faidx {path}` "
            f"where you can write, or symlink the FASTA into a writable folder")


@pytest.fixture
def readonly_dir(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    fasta = write_fasta(folder / "ref.fa", {"chr1": SEQ})
    folder.chmod(0o555)
    yield folder, fasta
    folder.chmod(0o755)


def test_readonly_folder_without_fai_says_how_to_index(readonly_dir):
    folder, fasta = readonly_dir
    if os.access(folder, os.W_OK):
        pytest.skip("folder is writable despite chmod 0o555 (running as root)")
    with pytest.raises(InputError) as err:
        Reference(fasta)
    assert str(err.value) == _readonly_message(fasta)


def test_readonly_folder_without_fai_simulated(readonly_dir, monkeypatch):
    """The same check where chmod cannot stop the writer (root): the folder reports not writable."""
    folder, fasta = readonly_dir
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve() == folder.resolve():
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(InputError) as err:
        Reference(fasta)
    assert str(err.value) == _readonly_message(fasta)
    assert not (folder / "ref.fa.fai").exists()


def test_readonly_folder_with_fai_opens(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    fasta = write_fasta(folder / "ref.fa", {"chr1": SEQ})
    pysam.faidx(str(fasta))
    folder.chmod(0o555)
    try:
        assert Reference(fasta).lengths == {"chr1": len(SEQ)}
    finally:
        folder.chmod(0o755)


def test_plain_gzip_fasta_gives_bgzip_hint(tmp_path):
    path = tmp_path / "ref.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(f">chr1\n{SEQ}\n")
    with pytest.raises(InputError) as err:
        Reference(path)
    message = str(err.value)
    assert message.startswith(f"cannot open reference '{path}': ")
    assert message.endswith(" (gzip FASTA must be bgzip-compressed: "
                            "`zcat F.fa.gz | bgzip > F.bgz.fa.gz`)")
    assert "\n" not in message


@pytest.fixture
def ensembl_style(tmp_path) -> Reference:
    return Reference(write_fasta(tmp_path / "ens.fa", {"1": "ACGTACGT", "MT": "GATTACA", "chrX": "CCCC"}))


@pytest.mark.parametrize("user,expected", [
    ("1", "1"), ("chr1", "1"), ("MT", "MT"), ("chrM", "MT"), ("chrMT", "MT"),
    ("chrX", "chrX"), ("X", "chrX"),
])
def test_contig_name_matching(ensembl_style, user, expected):
    assert ensembl_style.resolve(user) == expected
    assert ensembl_style.require(user) == expected


def test_contig_renames_are_recorded_once(ensembl_style):
    for name in ["chr1", "chr1", "chrM", "X", "1"]:
        ensembl_style.require(name)
    assert ensembl_style.renames == {"chr1": "1", "chrM": "MT", "X": "chrX"}


def test_chrM_to_MT_ucsc_direction(tmp_path):
    ref = Reference(write_fasta(tmp_path / "ucsc.fa", {"chr1": "ACGT", "chrM": "GATTACA"}))
    assert ref.require("MT") == "chrM"
    assert ref.require("M") == "chrM"
    assert ref.require("1") == "chr1"


def test_ambiguous_alias_is_not_guessed(tmp_path):
    ref = Reference(write_fasta(tmp_path / "amb.fa", {"M": "ACGT", "MT": "GATTACA"}))
    assert ref.resolve("chrM") is None
    with pytest.raises(InputError):
        ref.require("chrM")


def test_unknown_contig_lists_available(ensembl_style):
    with pytest.raises(InputError) as err:
        ensembl_style.require("chr2")
    assert str(err.value) == f"contig 'chr2' not in reference {ensembl_style.path}; it has: 1, MT, chrX"


def test_unknown_contig_list_is_truncated(tmp_path):
    names = [str(i) for i in range(1, 13)]
    ref = Reference(write_fasta(tmp_path / "many.fa", {n: "ACGT" for n in names}))
    with pytest.raises(InputError) as err:
        ref.require("chrY")
    assert str(err.value) == (f"contig 'chrY' not in reference {ref.path}; "
                              "it has: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...")


@pytest.mark.parametrize("start,end", [(-3, 13), (-5, 2), (8, 15), (12, 20), (-6, -1), (0, 10)])
def test_fetch_ids_pads_with_n_past_contig_ends(tmp_path, start, end):
    seq = "ACGTACGTAC"  # length 10
    ref = Reference(write_fasta(tmp_path / "r.fa", {"c": seq}))
    ids = ref.fetch_ids("c", start, end)
    assert ids.dtype == np.uint8
    assert len(ids) == end - start
    expected = np.array([encode(seq[p])[0] if 0 <= p < len(seq) else N for p in range(start, end)])
    np.testing.assert_array_equal(ids, expected)
    assert ref.fetch_text("c", start, end) == seq[max(start, 0):max(min(end, len(seq)), 0)]


def check_real_reference(path: Path, first_real: int) -> None:
    ref = Reference(path)
    assert ref.lengths == {"chr17": CHR17_LENGTH}
    assert ref.require("17") == "chr17"
    brca1 = ref.fetch_ids("chr17", 43_044_294, 43_044_394)
    assert set(np.unique(brca1)) <= {0, 1, 2, 3} and len(set(np.unique(brca1))) == 4
    # real sequence from 0-based first_real; N before it, then padding past the end
    edge = ref.fetch_ids("chr17", first_real - 9, first_real + 11)
    assert (edge[:9] == N).all() and (edge[9:] < 4).all()
    tail = ref.fetch_ids("chr17", CHR17_LENGTH - 5, CHR17_LENGTH + 5)
    assert len(tail) == 10 and (tail == N).all()


def test_real_reference():
    """The example chr17: real sequence is 43,020,001-43,150,000 (1-based)."""
    check_real_reference(EXAMPLE_FASTA, EXAMPLE_FIRST_REAL)


@pytest.mark.extended
def test_real_reference_shared(shared_data_dir):
    """The shared chr17: real sequence is 42,425,000-43,600,000 (1-based)."""
    check_real_reference(shared_data_dir / SHARED_REF, 42_424_999)


def test_io_does_not_import_torch():
    code = ("import sys, mergedna_cli.io.reference, mergedna_cli.io.regions, "
            "mergedna_cli.io.embedding_writer; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- embedding writer

def test_format_for_extensions():
    assert [format_for(p) for p in ["a.parquet", "b.tsv", "c.npz"]] == ["parquet", "tsv", "npz"]
    with pytest.raises(UsageError) as err:
        format_for("out.csv")
    assert str(err.value) == "output 'out.csv': choose an extension among .parquet, .tsv, .npz"


@pytest.mark.parametrize("ext", [".tsv", ".parquet", ".npz"])
def test_writer_abort_leaves_nothing(tmp_path, ext):
    class Item:
        region = Region("chr1", 0, 10, "r")
        embedding = np.zeros(4, np.float32)

    target = tmp_path / f"out{ext}"
    writer = EmbeddingWriter(str(target), dim=4, per_token=False)
    writer.add(Item())
    writer.abort()
    assert list(tmp_path.iterdir()) == []


class _Item:
    def __init__(self, region: Region, dim: int, n_tokens: int = 0):
        self.region = region
        self.embedding = np.arange(dim, dtype=np.float32) + region.start
        if n_tokens:
            bounds = np.linspace(region.start, region.end, n_tokens + 1).astype(np.int64)
            self.token_starts, self.token_ends = bounds[:-1], bounds[1:]
            self.token_vectors = np.ones((n_tokens, dim), np.float32) * region.start


@pytest.mark.parametrize("per_token", [False, True])
def test_writer_parquet_columns(tmp_path, per_token):
    import pyarrow.parquet as pq

    target = tmp_path / "out.parquet"
    writer = EmbeddingWriter(str(target), dim=4, per_token=per_token, batch_rows=2)
    items = [_Item(Region("chr1", 10 * i, 10 * i + 10, f"r{i}"), 4, 3 if per_token else 0)
             for i in range(5)]   # 5 rows in batches of 2: three row groups
    for item in items:
        writer.add(item)
    writer.close()
    data = pq.read_table(target).to_pydict()
    assert data["name"] == [f"r{i}" for i in range(5)]
    np.testing.assert_array_equal(np.array(data["embedding"]), np.stack([i.embedding for i in items]))
    if per_token:
        assert data["token_starts"][1] == [10, 13, 16] and data["token_ends"][1] == [13, 16, 20]
        assert np.array(data["token_vectors"][4]).shape == (3, 4)
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("per_token", [False, True])
def test_writer_empty_parquet_keeps_schema(tmp_path, per_token):
    import pyarrow.parquet as pq

    full, empty = tmp_path / "full.parquet", tmp_path / "empty.parquet"
    writer = EmbeddingWriter(str(full), dim=4, per_token=per_token)
    writer.add(_Item(Region("chr1", 0, 10, "r"), 4, 2 if per_token else 0))
    writer.close()
    EmbeddingWriter(str(empty), dim=4, per_token=per_token).close()
    table = pq.read_table(empty)
    assert table.num_rows == 0
    assert table.schema == pq.read_table(full).schema


def test_writer_empty_npz(tmp_path):
    target = tmp_path / "out.npz"
    EmbeddingWriter(str(target), dim=4, per_token=False).close()
    with np.load(target) as data:
        assert data["embedding"].shape == (0, 4)
        assert len(data["chrom"]) == 0


def test_writer_empty_npz_per_token(tmp_path):
    target = tmp_path / "out.npz"
    EmbeddingWriter(str(target), dim=4, per_token=True).close()
    with np.load(target) as data:
        assert data["token_offsets"].tolist() == [0]
        assert data["token_vectors"].shape == (0, 4)
