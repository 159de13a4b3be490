"""The `mergedna` command line: embed, export-onnx, info, --version (run as a subprocess).

Each call runs `python -m mergedna_cli` with a tiny random model, one thread and the ONNX cache in
a temporary folder. Outputs are read back with pyarrow / numpy and compared with the engine run
in-process; errors must be one line on stderr, `mergedna: error: ...`, with the documented exit code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import CHR17_LENGTH, EXAMPLE_FASTA

import mergedna_cli
from mergedna_cli.engine.backends import TorchBackend
from mergedna_cli.engine.engine import Engine
from mergedna_cli.engine.onnx_export import cached_onnx_path
from mergedna_cli.io.reference import Reference
from mergedna_cli.io.regions import Region
from mergedna_cli.model import MergeDNA, MergeDNAConfig

BRCA1 = 43_044_294   # 0-based

# BED regions (0-based); the second has no name column, the third crosses the contig end
BED_TEXT = (
    "# regions for the test\n"
    "track name=test\n"
    f"chr17\t{BRCA1}\t{BRCA1 + 300}\tbrca1_a\n"
    f"chr17\t{BRCA1 + 5000}\t{BRCA1 + 5001}\n"
    f"chr17\t{CHR17_LENGTH - 41}\t{CHR17_LENGTH + 59}\tpast_end\n"
    f"17\t{BRCA1 + 9000}\t{BRCA1 + 9130}\tensembl_name\n"
)
BED_REGIONS = [
    Region("chr17", BRCA1, BRCA1 + 300, "brca1_a"),
    Region("chr17", BRCA1 + 5000, BRCA1 + 5001, f"chr17:{BRCA1 + 5001}-{BRCA1 + 5001}"),
    Region("chr17", CHR17_LENGTH - 41, CHR17_LENGTH, "past_end"),  # clipped at the contig end
    Region("17", BRCA1 + 9000, BRCA1 + 9130, "ensembl_name"),
]


# ----------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def ref_path() -> Path:
    """The README's example chr17 (full length; real sequence around BRCA1, N elsewhere)."""
    return EXAMPLE_FASTA


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> Path:
    torch.set_num_threads(1)
    return tiny_model_dir


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def env(cache_dir) -> dict:
    # what a pipeline step sees: no terminal width
    return {"MERGEDNA_CACHE": str(cache_dir), "OMP_WAIT_POLICY": "PASSIVE", "COLUMNS": None}


@pytest.fixture
def cli(run_cli, env, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path, env=env, timeout=300)
    return run


@pytest.fixture(scope="module")
def bed(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bed") / "regions.bed"
    path.write_text(BED_TEXT)
    return path


@pytest.fixture(scope="module")
def expected(model_dir, ref_path):
    """In-process engine results (both strands, batch 16; batch size does not change them)."""
    backend = TorchBackend(model_dir, device="cpu", threads=1)
    engine = Engine(backend, Reference(ref_path), batch_size=16, strands="both")

    def run(regions):
        return list(engine.embed(regions, per_token=True))
    return run


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def assert_error(proc: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"mergedna: error: {message}"]


def model_args(model_dir) -> list[str]:
    """The CLI pinned to the engine that `expected` runs in-process (the default backend is auto;
    the cross-backend bound is tested in test_backend_choice.py and test_engine.py)."""
    return ["--model", str(model_dir), "--threads", "1", "--backend", "torch"]


# ----------------------------------------------------------------------------- embed outputs

@pytest.mark.parametrize("ext", [".tsv", ".parquet", ".npz"])
def test_embed_bed_one_row_per_region(cli, ref_path, model_dir, bed, expected, tmp_path, ext):
    out = tmp_path / f"emb{ext}"
    proc = cli("embed", "--fasta", ref_path, "--regions", bed, "-o", out, *model_args(model_dir))
    assert_ok(proc)
    assert proc.stdout == ""   # data goes to the file, logs to stderr
    assert f"wrote {len(BED_REGIONS)} regions to {out}" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]   # no temporary file left
    if ext == ".tsv":
        lines = out.read_text().splitlines()
        header = lines[0].split("\t")
        assert header == ["chrom", "start", "end", "name"] + [f"emb_{i}" for i in range(32)]
        rows = [line.split("\t") for line in lines[1:]]
        coords = [(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]
        emb = np.array([[float(v) for v in r[4:]] for r in rows])
        atol = 1e-6   # 6 significant digits
    elif ext == ".parquet":
        table = pq.read_table(out).to_pydict()
        coords = list(zip(table["chrom"], table["start"], table["end"], table["name"]))
        emb = np.array(table["embedding"])
        atol = 0
    else:
        with np.load(out) as data:   # no pickle needed
            coords = list(zip(data["chrom"].tolist(), data["start"].tolist(), data["end"].tolist(),
                              data["name"].tolist()))
            emb = data["embedding"]
            assert emb.dtype == np.float32
        atol = 0
    assert coords == [(r.chrom, r.start, r.end, r.name) for r in BED_REGIONS]
    assert emb.shape == (len(BED_REGIONS), 32)
    want = np.stack([item.embedding for item in expected(BED_REGIONS)])
    np.testing.assert_allclose(emb, want, atol=atol, rtol=1e-5)


def test_embed_region_strings(cli, ref_path, model_dir, expected, tmp_path):
    out = tmp_path / "emb.tsv"
    texts = ["chr17:43,044,295-43,045,000", "chr17:43044295-43044295", "17:83257400-83257500"]
    args = [a for t in texts for a in ("--region", t)]
    proc = cli("embed", "--fasta", ref_path, *args, "-o", out, *model_args(model_dir))
    assert_ok(proc)
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [tuple(r[:4]) for r in rows] == [
        ("chr17", "43044294", "43045000", texts[0]),
        ("chr17", "43044294", "43044295", texts[1]),
        ("17", "83257399", "83257441", texts[2]),   # user's contig name kept; clipped at the end
    ]
    assert "contig '17' matched to reference contig 'chr17'" in proc.stderr
    want = expected([Region("chr17", 43044294, 43045000), Region("chr17", 43044294, 43044295),
                     Region("chr17", 83257399, 83257441)])
    assert "clipped to end 83257441" in proc.stderr
    emb = np.array([[float(v) for v in r[4:]] for r in rows])
    np.testing.assert_allclose(emb, np.stack([w.embedding for w in want]), atol=1e-6, rtol=1e-5)


def test_embed_whole_contig_region(cli, tmp_path, model_dir):
    fasta = tmp_path / "small.fa"
    fasta.write_text(">chrA\n" + "ACGTTGCAAC" * 30 + "\n>chrB\nGATTACA\n")
    out = tmp_path / "emb.npz"
    proc = cli("embed", "--fasta", fasta, "--region", "chrB", "--region", "chrA", "-o", out,
               *model_args(model_dir))
    assert_ok(proc)
    with np.load(out) as data:
        assert data["chrom"].tolist() == ["chrB", "chrA"]
        assert data["start"].tolist() == [0, 0] and data["end"].tolist() == [7, 300]
        assert data["name"].tolist() == ["chrB", "chrA"]


def check_token_spans(regions, starts, ends, vectors, want):
    for region, s, e, v, w in zip(regions, starts, ends, vectors, want):
        s, e, v = np.asarray(s), np.asarray(e), np.asarray(v)
        assert s[0] == region.start and e[-1] == region.end
        np.testing.assert_array_equal(s[1:], e[:-1])
        assert (e - s >= 1).all()
        assert v.shape == (len(s), 32)
        np.testing.assert_array_equal(s, w.token_starts)
        np.testing.assert_allclose(v, w.token_vectors, atol=0, rtol=1e-6)


def test_embed_per_token_parquet(cli, ref_path, model_dir, bed, expected, tmp_path):
    out = tmp_path / "tok.parquet"
    proc = cli("embed", "--fasta", ref_path, "--regions", bed, "--per-token", "-o", out,
               *model_args(model_dir))
    assert_ok(proc)
    table = pq.read_table(out)
    assert table.num_rows == len(BED_REGIONS)
    for column in ("token_starts", "token_ends", "token_vectors"):
        assert str(table.schema.field(column).type).startswith("list<")
    data = table.to_pydict()
    check_token_spans(BED_REGIONS, data["token_starts"], data["token_ends"], data["token_vectors"],
                      expected(BED_REGIONS))


def test_embed_per_token_npz(cli, ref_path, model_dir, bed, expected, tmp_path):
    out = tmp_path / "tok.npz"
    proc = cli("embed", "--fasta", ref_path, "--regions", bed, "--per-token", "-o", out,
               *model_args(model_dir))
    assert_ok(proc)
    with np.load(out) as data:
        offsets = data["token_offsets"]
        assert offsets[0] == 0 and len(offsets) == len(BED_REGIONS) + 1
        cut = lambda a: [a[offsets[i]:offsets[i + 1]] for i in range(len(BED_REGIONS))]  # noqa: E731
        check_token_spans(BED_REGIONS, cut(data["token_starts"]), cut(data["token_ends"]),
                          cut(data["token_vectors"]), expected(BED_REGIONS))


def test_embed_onnx_backend_matches_torch(cli, ref_path, model_dir, bed, expected, cache_dir, tmp_path):
    out = tmp_path / "onnx.npz"
    proc = cli("embed", "--fasta", ref_path, "--regions", bed, "--backend", "onnx", "--device", "cpu",
               "-o", out, "--model", str(model_dir), "--threads", "1")
    assert_ok(proc)
    cached = cached_onnx_path(model_dir, "embedding")  # the test process sees no MERGEDNA_CACHE: compare names
    assert (cache_dir / "onnx" / cached.name).is_file()
    assert f"exporting {model_dir.name} to ONNX (first use)" in proc.stderr
    with np.load(out) as data:
        emb = data["embedding"]
    want = np.stack([item.embedding for item in expected(BED_REGIONS)])
    np.testing.assert_allclose(emb, want, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- embed errors

def test_embed_needs_region_or_regions(cli, ref_path, model_dir, tmp_path):
    proc = cli("embed", "--fasta", ref_path, "-o", tmp_path / "x.tsv", *model_args(model_dir))
    assert_error(proc, 2, "give either --regions BED or one or more --region")


def test_embed_not_both_region_and_regions(cli, ref_path, model_dir, bed, tmp_path):
    proc = cli("embed", "--fasta", ref_path, "--regions", bed, "--region", "chr17:1-10",
               "-o", tmp_path / "x.tsv", *model_args(model_dir))
    assert_error(proc, 2, "give either --regions BED or one or more --region")


def test_embed_per_token_needs_table_format(cli, ref_path, model_dir, tmp_path):
    proc = cli("embed", "--fasta", ref_path, "--region", "chr17:43044295-43044395", "--per-token",
               "-o", tmp_path / "x.tsv", *model_args(model_dir))
    assert_error(proc, 2, "--per-token needs a .parquet or .npz output (token lists do not fit a TSV row)")
    assert not list(tmp_path.glob("*x.tsv*"))


def test_embed_unknown_extension(cli, ref_path, model_dir, tmp_path):
    proc = cli("embed", "--fasta", ref_path, "--region", "chr17:43044295-43044395",
               "-o", "out.csv", *model_args(model_dir))
    assert_error(proc, 2, "output 'out.csv': choose an extension among .parquet, .tsv, .npz")


def test_embed_missing_fasta(cli, model_dir, tmp_path):
    proc = cli("embed", "--fasta", "missing.fa", "--region", "chr1:1-10", "-o", "x.tsv",
               *model_args(model_dir))
    assert_error(proc, 1, "reference FASTA 'missing.fa' does not exist")


def test_embed_unknown_contig(cli, ref_path, model_dir, tmp_path):
    proc = cli("embed", "--fasta", ref_path, "--region", "chr17:43044295-43044395",
               "--region", "chrZ:1-10", "-o", "x.parquet", *model_args(model_dir))
    assert_error(proc, 1, f"contig 'chrZ' not in reference {ref_path}; it has: chr17")
    assert list(tmp_path.iterdir()) == []   # no output, complete or partial


def test_embed_bad_region_string(cli, ref_path, model_dir):
    proc = cli("embed", "--fasta", ref_path, "--region", "chr17:0-10", "-o", "x.tsv",
               *model_args(model_dir))
    assert_error(proc, 1, "region 'chr17:0-10': start must be >= 1 and end >= start (1-based, inclusive)")


def test_embed_malformed_bed_line(cli, ref_path, model_dir, tmp_path):
    bed = tmp_path / "bad.bed"
    bed.write_text(f"chr17\t{BRCA1}\t{BRCA1 + 10}\nchr17\t{BRCA1 + 10}\t{BRCA1}\n")
    proc = cli("embed", "--fasta", ref_path, "--regions", bed, "-o", "x.tsv", *model_args(model_dir))
    assert_error(proc, 1, f"{bed}:2: invalid interval {BRCA1 + 10}-{BRCA1} (need 0 <= start <= end)")
    assert not (tmp_path / "x.tsv").exists()


def test_embed_whole_contig_region_with_alias(cli, ref_path, model_dir, tmp_path):
    fasta = tmp_path / "ens.fa"
    fasta.write_text(">1\n" + "ACGTTGCAAC" * 5 + "\n>MT\nGATTACA\n")
    proc = cli("embed", "--fasta", fasta, "--region", "chr1", "--region", "chrM", "-o", "x.npz",
               *model_args(model_dir))
    assert_ok(proc)
    with np.load(tmp_path / "x.npz") as data:
        assert data["chrom"].tolist() == ["chr1", "chrM"]
        assert data["end"].tolist() == [50, 7]


@pytest.mark.parametrize("ext", [".tsv", ".parquet"])
def test_embed_output_folder_missing(cli, ref_path, model_dir, ext):
    proc = cli("embed", "--fasta", ref_path, "--region", "chr17:43044295-43044395",
               "-o", f"no_such_dir/x{ext}", *model_args(model_dir))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("mergedna: error: ") and "no_such_dir" in proc.stderr


def test_embed_plain_gzip_fasta_error_is_one_line(cli, model_dir, tmp_path):
    import gzip
    fasta = tmp_path / "ref.fa.gz"
    with gzip.open(fasta, "wt") as handle:
        handle.write(">chr1\nACGTACGTAC\n")
    proc = cli("embed", "--fasta", fasta, "--region", "chr1:1-5", "-o", "x.tsv", *model_args(model_dir))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"mergedna: error: cannot open reference '{fasta}': ")
    assert lines[0].endswith("(gzip FASTA must be bgzip-compressed: `zcat F.fa.gz | bgzip > F.bgz.fa.gz`)")


def test_embed_missing_option_is_one_line_usage_error(cli, model_dir):
    proc = cli("embed", "--region", "chr1:1-10", "-o", "x.tsv", *model_args(model_dir))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["mergedna: error: Missing option '--fasta'."]


# ----------------------------------------------------------------------------- other commands

def test_export_onnx_command(cli, model_dir, tmp_path):
    out = tmp_path / "graphs" / "tiny.onnx"
    proc = cli("export-onnx", "--model", model_dir, "-o", out)
    assert_ok(proc)
    assert out.is_file() and out.stat().st_size > 10_000
    assert f"wrote {out}: ONNX Runtime vs PyTorch on 4 real-sequence batches" in proc.stderr
    assert proc.stderr.rstrip().endswith("token maps identical")
    # the float64 plan graph that settles near-tied merges goes beside it; no temporary file is left
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.onnx", "tiny.plan.onnx"]
    from mergedna_cli.engine.backends import OnnxBackend
    graph = OnnxBackend(out, MergeDNAConfig.preset("tiny"), device="cpu", threads=1)
    ids = np.zeros((2, 100), dtype=np.int64)
    assert graph.run(ids).log_probs.shape == (2, 100, 4)


@pytest.fixture(scope="module")
def info_run(run_cli, env, model_dir, tmp_path_factory) -> subprocess.CompletedProcess:
    """`mergedna info` run once for the two checks below (each run costs a torch import)."""
    return run_cli("info", "--model", model_dir, cwd=tmp_path_factory.mktemp("info"), env=env, timeout=300)


def weights_sha(model_dir) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


def test_info_model_card(info_run, model_dir):
    assert_ok(info_run)
    rows = dict(line.split("\t", 1) for line in info_run.stdout.splitlines() if line.strip())
    assert "tiny" in rows["preset"]
    n_params = sum(p.numel() for p in MergeDNA(MergeDNAConfig.preset("tiny")).parameters())
    assert f"{n_params:,}" in rows["parameters"]
    assert rows["weights sha256"] == weights_sha(model_dir)


def test_info_prints_full_sha256(info_run, model_dir):
    assert_ok(info_run)
    assert weights_sha(model_dir) in info_run.stdout


def test_version_is_bare(cli):
    proc = cli("--version")
    assert_ok(proc)
    assert proc.stdout == mergedna_cli.__version__ + "\n"
    assert proc.stdout.strip() == importlib.metadata.version("mergedna")
    assert proc.stderr == ""
