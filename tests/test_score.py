"""`mergedna score` on real BRCA1 variants and hand-made edge cases (tiny random model, docs/example data)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# The example data shipped in docs/example: GRCh38 chr17 at full length (real sequence around
# BRCA1) and the 284 ClinVar SNVs, so these tests run from a plain clone.
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example"
REF = EXAMPLE / "brca1_chr17.fa.gz"
CLINVAR = EXAMPLE / "clinvar_brca1.vcf.gz"
needs_bcftools = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir




def score_args(model_dir, vcf, out, *extra) -> list[str]:
    return ["score", "--model", str(model_dir), "--fasta", str(REF), "--vcf", str(vcf), "-o", str(out),
            "--threads", "1", "--quiet", *extra]


def body(path: Path) -> list[list[str]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as handle:
        return [line.rstrip("\n").split("\t") for line in handle if not line.startswith("#")]


@pytest.fixture(scope="module")
def edge_vcf(tmp_path_factory) -> Path:
    """Records exercising every status, chromosome naming and multi-allelic handling."""
    ref_base = subprocess.run(["python", "-c", f"import pysam;print(pysam.FastaFile('{REF}').fetch('chr17',43045704,43045706))"],
                              capture_output=True, text=True).stdout.strip()
    assert ref_base == "TA"
    lines = [
        "##fileformat=VCFv4.2",
        '##INFO=<ID=X,Number=1,Type=Float,Description="an original field">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
        "chr17\t43045705\tsnv_multi\tT\tA,C,G\t50\tPASS\tX=0.1234567",
        "17\t43045705\tno_chr_prefix\tT\tG\t.\t.\t.",
        "chr17\t43045705\tmismatch\tG\tA\t.\t.\t.",
        "chr17\t43045705\tsymbolic\tT\t<DEL>,*\t.\t.\t.",
        "chr17\t43045705\tmnv\tTA\tGC\t.\t.\t.",
        "chr17\t43045705\tdeletion\tTA\tT\t.\t.\t.",
        "chr17\t43045705\tinsertion\tT\tTGGC\t.\t.\t.",
        "chr17\t1000\tref_is_n\tN\tA\t.\t.\t.",
        "chrUn\t5\tmissing_contig\tA\tC\t.\t.\t.",
        "chr17\t83257441\tcontig_end\tN\tC\t.\t.\t.",
        "chr17\t43045706\tiupac_alt\tA\tR\t.\t.\t.",
    ]
    path = tmp_path_factory.mktemp("vcf") / "edge.vcf"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_record_kept_in_order_with_statuses(run_cli, model_dir, edge_vcf, tmp_path):
    out, skipped = tmp_path / "out.vcf", tmp_path / "skipped.tsv"
    run = run_cli(*score_args(model_dir, edge_vcf, out, "--skipped", str(skipped)))
    assert run.returncode == 0, run.stderr
    records = body(out)
    original = body(edge_vcf)
    assert [r[2] for r in records] == [r[2] for r in original]
    for new, old in zip(records, original):
        assert new[:7] == old[:7]
        if old[7] != ".":
            assert new[7].startswith(old[7] + ";")  # original INFO untouched, keys appended
    info = {r[2]: dict(kv.split("=", 1) for kv in r[7].split(";") if "=" in kv) for r in records}
    assert info["snv_multi"]["MDNA_STATUS"] == "ok,ok,ok"
    assert len(info["snv_multi"]["MDNA_LLR"].split(",")) == 3
    assert info["no_chr_prefix"]["MDNA_STATUS"] == "ok"
    assert info["no_chr_prefix"]["MDNA_LLR"] == info["snv_multi"]["MDNA_LLR"].split(",")[2]
    assert info["mismatch"]["MDNA_STATUS"] == "ref_mismatch" and info["mismatch"]["MDNA_LLR"] == "."
    assert info["symbolic"]["MDNA_STATUS"] == "symbolic_allele,spanning_deletion"
    assert info["mnv"]["MDNA_METHOD"] == "mnv_llr_sum"
    assert info["deletion"]["MDNA_METHOD"] == info["insertion"]["MDNA_METHOD"] == "indel_embedding_cosine"
    assert float(info["deletion"]["MDNA_EMBDIST"]) >= 0.0 and info["deletion"]["MDNA_LLR"] == "."
    assert info["ref_is_n"]["MDNA_STATUS"] == "non_acgt_allele"
    assert info["missing_contig"]["MDNA_STATUS"] == "contig_not_in_reference"
    assert info["iupac_alt"]["MDNA_STATUS"] == "non_acgt_allele"
    reasons = [line.split("\t")[-1] for line in skipped.read_text().splitlines()[1:]]
    assert sorted(reasons) == sorted(["ref_mismatch", "symbolic_allele", "spanning_deletion", "non_acgt_allele",
                                      "contig_not_in_reference", "non_acgt_allele", "non_acgt_allele"])


def test_mnv_is_sum_of_its_snvs(run_cli, model_dir, tmp_path):
    vcf = tmp_path / "m.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "chr17\t43045705\ta\tT\tG\t.\t.\t.\nchr17\t43045706\tb\tA\tC\t.\t.\t.\n"
                   "chr17\t43045705\tab\tTA\tGC\t.\t.\t.\n")
    out = tmp_path / "m.tsv"
    assert run_cli(*score_args(model_dir, vcf, out, "--format", "tsv", "--mask-spacing", "0")).returncode == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    a, b, ab = (float(r[5]) for r in rows)
    assert ab == pytest.approx(a + b, abs=2e-4)


def test_ref_mismatch_skip_and_error(run_cli, model_dir, edge_vcf, tmp_path):
    out = tmp_path / "o.vcf"
    run = run_cli(*score_args(model_dir, edge_vcf, out, "--ref-mismatch", "skip"))
    assert run.returncode == 0
    assert "mismatch" not in [r[2] for r in body(out)] and len(body(out)) == len(body(edge_vcf)) - 1
    run = run_cli(*score_args(model_dir, edge_vcf, out, "--ref-mismatch", "error"))
    assert run.returncode == 1
    assert run.stderr.strip() == ("mergedna: error: REF mismatch at chr17:43045705: VCF has G, reference "
                                  "has T (use --ref-mismatch flag|skip)")
    assert not out.exists() or len(body(out)) == len(body(edge_vcf)) - 1  # earlier file untouched


@needs_bcftools
def test_vcf_gz_is_indexed_and_read_by_bcftools(run_cli, model_dir, tmp_path):
    out = tmp_path / "clinvar.vcf.gz"
    run = run_cli(*score_args(model_dir, CLINVAR, out))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "clinvar.vcf.gz.tbi").exists()
    view = subprocess.run(["bcftools", "view", "-H", str(out)], capture_output=True, text=True)
    assert view.returncode == 0 and len(view.stdout.splitlines()) == len(body(CLINVAR))
    query = subprocess.run(["bcftools", "query", "-f", "%MDNA_LLR\\t%MDNA_STATUS\\n", "-r",
                            "chr17:43045700-43050000", str(out)], capture_output=True, text=True)
    assert query.returncode == 0 and query.stdout.strip()
    assert all(line.split("\t")[1] == "ok" for line in query.stdout.splitlines())


def test_shards_concatenate_to_the_full_run(run_cli, model_dir, tmp_path):
    full = tmp_path / "full.vcf"
    assert run_cli(*score_args(model_dir, CLINVAR, full)).returncode == 0
    parts = []
    for i in (1, 2, 3):
        part = tmp_path / f"part{i}.vcf"
        assert run_cli(*score_args(model_dir, CLINVAR, part, "--shard", f"{i}/3")).returncode == 0
        parts.append(part.read_text())
    def header(text):  # the recorded command line names each run's own output
        return [line for line in text.splitlines() if line.startswith("#") and "mergedna_command" not in line]

    records = [line for text in parts for line in text.splitlines() if not line.startswith("#")]
    full_text = full.read_text()
    assert records == [line for line in full_text.splitlines() if not line.startswith("#")]
    assert all(header(text) == header(full_text) for text in parts)


def test_deterministic_across_batch_sizes_and_stdin_stdout(run_cli, model_dir, tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    assert run_cli(*score_args(model_dir, CLINVAR, a, "--format", "tsv", "--batch-size", "2")).returncode == 0
    assert run_cli(*score_args(model_dir, CLINVAR, b, "--format", "tsv", "--batch-size", "32")).returncode == 0
    assert a.read_text() == b.read_text()
    text = gzip.open(CLINVAR, "rt").read()
    run = run_cli(*score_args(model_dir, "-", "-"), input=text)
    assert run.returncode == 0
    assert sum(1 for line in run.stdout.splitlines() if not line.startswith("#")) == len(body(CLINVAR))


def test_bad_inputs_are_one_line_errors(run_cli, model_dir, tmp_path):
    bad = tmp_path / "bad.vcf"
    bad.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr17\tabc\t.\tA\tC\t.\t.\t.\n")
    cases = [
        (score_args(model_dir, tmp_path / "missing.vcf", tmp_path / "o.vcf"), 1, "does not exist"),
        (score_args(model_dir, bad, tmp_path / "o.vcf"), 1, "POS 'abc' is not a positive integer"),
        (score_args(model_dir, CLINVAR, tmp_path / "o.txt"), 2, "use .vcf.gz, .vcf or '-'"),
        (score_args(model_dir, CLINVAR, tmp_path / "o.vcf", "--shard", "4/3"), 2, "--shard must be I/N"),
    ]
    for args, code, message in cases:
        run = run_cli(*args)
        assert run.returncode == code, (args, run.stderr)
        assert run.stderr.startswith("mergedna: error:") and message in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.vcf").exists()


def test_empty_and_truncated_vcfs(run_cli, model_dir, tmp_path):
    header_only = tmp_path / "header_only.vcf"
    header_only.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    run = run_cli(*score_args(model_dir, header_only, tmp_path / "empty_out.vcf"))
    assert run.returncode == 0, run.stderr
    assert body(tmp_path / "empty_out.vcf") == []

    zero = tmp_path / "zero.vcf"
    zero.write_text("")
    truncated = tmp_path / "truncated.vcf.gz"
    with gzip.open(CLINVAR, "rb") as handle:
        data = gzip.compress(handle.read())
    truncated.write_bytes(data[: len(data) // 2])
    for vcf, message in ((zero, "not a VCF (no '#CHROM' header line)"),
                         (truncated, "Compressed file ended before the end-of-stream marker was reached")):
        out = tmp_path / f"{vcf.name}.out.vcf.gz"
        run = run_cli(*score_args(model_dir, vcf, out))
        assert run.returncode == 1, run.stderr
        assert run.stderr.startswith("mergedna: error:") and message in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
        assert not out.exists() and not Path(f"{out}.partial").exists()


# -- in-process: the run's composition, its chunks and shards ---------------------------------------
def indel_vcf(path: Path) -> Path:
    """Six records at six positions around BRCA1 exon 11: SNVs, an MNV, indels and a REF mismatch."""
    import pysam

    first = 43045705
    with pysam.FastaFile(str(REF)) as fasta:
        window = fasta.fetch("chr17", first - 1, first + 60).upper()

    def base(pos: int, n: int = 1) -> str:
        return window[pos - first:pos - first + n]

    def other(b: str) -> str:
        return "A" if b != "A" else "C"
    p = [first + 7 * k for k in range(6)]
    records = [(p[0], "s", base(p[0]), f"{other(base(p[0]))},G" if base(p[0]) != "G" else "A,T"),
               (p[1], "m", base(p[1], 2), other(base(p[1])) + other(base(p[1] + 1))),
               (p[2], "d", base(p[2], 2), base(p[2])), (p[3], "i", base(p[3]), base(p[3]) + "GGC"),
               (p[4], "x", other(base(p[4])), "T"), (p[5], "d2", base(p[5], 3), base(p[5]))]
    path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
        f"chr17\t{pos}\t{name}\t{ref}\t{alt}\t.\t.\tDP=3\n" for pos, name, ref, alt in records))
    return path


def test_weights_load_once_with_indels_on_torch(model_dir, tmp_path, monkeypatch):
    """SNVs (masked graph) and indels (embedding graph) run on one loaded PyTorch model, and the
    weights are hashed once; the scores equal those of a separately loaded embedding backend."""
    import mergedna_cli.model.files as files
    import mergedna_cli.model.serialization as serialization
    from mergedna_cli.engine.load import make_backend
    from mergedna_cli.io.reference import Reference
    from mergedna_cli.pipelines import score as pipeline

    calls = {"load": 0, "sha": 0}
    load, sha = serialization.load_model, files.weights_sha256

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(serialization, "load_model", counted("load", load))
    monkeypatch.setattr(files, "weights_sha256", counted("sha", sha))
    vcf = indel_vcf(tmp_path / "indels.vcf")
    out = tmp_path / "shared.tsv"
    request = pipeline.ScoreRequest(fasta=REF, vcf=str(vcf), out=str(out), model=str(model_dir), backend="torch",
                                    device="cpu", threads=1, quiet=True, argv=("score",), logprobs=True)
    summary = pipeline.run(request)
    assert calls == {"load": 1, "sha": 1}
    assert summary.alleles == {"ok": 6, "ref_mismatch": 1}

    masked = make_backend(model_dir, "torch", "cpu", 1, part="masked")
    separate = make_backend(model_dir, "torch", "cpu", 1, part="embedding")
    assert calls["load"] == 3
    alone = tmp_path / "separate.tsv"
    pipeline.run_score(masked, Reference(REF), str(vcf), str(alone),
                       pipeline.ScoreOptions(logprobs=True), model_dir.name, sha(model_dir), table_format="tsv",
                       argv=[], embedding_backend=separate)
    assert out.read_text() == alone.read_text()
    assert sum(line.split("\t")[7] == "indel_embedding_cosine" for line in out.read_text().splitlines()) == 3


def test_resumed_chunks_keep_their_text_and_debris_is_removed(model_dir, tmp_path, monkeypatch):
    """The output of a run is the concatenation of its chunks' text: a rerun that finds every
    chunk finished scores nothing (the model is never asked) and writes the same bytes; a chunk
    cut short (no .jsonl) and one that does not follow on are removed and redone."""
    from mergedna_cli.engine.load import make_backend
    from mergedna_cli.io.reference import Reference
    from mergedna_cli.pipelines import score as pipeline

    vcf = indel_vcf(tmp_path / "indels.vcf")
    backend = make_backend(model_dir, "torch", "cpu", 1, part="full")
    options = pipeline.ScoreOptions(chunk_records=2)
    whole = tmp_path / "whole.vcf"
    pipeline.run_score(backend, Reference(REF), str(vcf), str(whole), options, "tiny", "0" * 64, argv=[],
                       skipped=str(tmp_path / "whole.skipped"))
    expected = whole.read_text()

    class Refuses:  # a backend that must not be run
        config = backend.config
        name = "torch"

        def run(self, *args):
            raise AssertionError("a finished chunk was scored again")

    out = tmp_path / "out.vcf"

    def run(scoring_backend, **kw):
        return pipeline.run_score(scoring_backend, Reference(REF), str(vcf), str(out), options, "tiny", "0" * 64,
                                  argv=[], log=messages.append, **kw)

    class Stop(Exception):
        pass

    messages: list[str] = []
    seen = []

    def stop_after_two(n):
        seen.append(n)
        if sum(seen) >= 4:
            raise Stop

    with pytest.raises(Stop):
        run(backend, on_records=stop_after_two)
    partial = Path(f"{out}.partial")
    names = sorted(p.name for p in partial.iterdir())
    assert names == ["chunk-000000000000-000000000002.jsonl", "chunk-000000000000-000000000002.out",
                     "chunk-000000000000-000000000002.skipped", "chunk-000000000002-000000000004.jsonl",
                     "chunk-000000000002-000000000004.out", "chunk-000000000002-000000000004.skipped",
                     "lock", "manifest.json"]
    assert not out.exists()
    (partial / "chunk-000000000002-000000000004.jsonl").unlink()  # killed before its .jsonl was written
    (partial / "chunk-000000000005-000000000006.out").write_text("debris\n")
    run(backend)
    assert out.read_text() == expected and not partial.exists()
    assert any(m.startswith("resuming: 2 records already scored") for m in messages)

    # every chunk finished, the run stopped as the output was opened: a rerun scores nothing again
    out.unlink()
    opened = pipeline.ScoreOutput.__enter__

    def fail(self):
        raise Stop
    monkeypatch.setattr(pipeline.ScoreOutput, "__enter__", fail)
    with pytest.raises(Stop):
        run(backend)
    monkeypatch.setattr(pipeline.ScoreOutput, "__enter__", opened)
    assert partial.is_dir() and not out.exists()
    run(Refuses())
    assert out.read_text() == expected and not partial.exists()


def test_shards_count_from_the_index_and_the_last_takes_the_rest(tmp_path):
    from mergedna_cli.io.vcf import count_indexed_records
    from mergedna_cli.pipelines.score import count_records, shard_range

    assert count_indexed_records(str(CLINVAR)) == 284 == count_records(str(CLINVAR))
    plain = tmp_path / "plain.vcf"
    plain.write_text(gzip.open(CLINVAR, "rt").read())
    assert count_indexed_records(str(plain)) is None and count_records(str(plain)) == 284
    stale = tmp_path / "stale.vcf.gz"
    shutil.copy(CLINVAR, stale)
    shutil.copy(f"{CLINVAR}.tbi", f"{stale}.tbi")
    os.utime(f"{stale}.tbi", ns=(0, 0))  # an index older than its file is not trusted
    assert count_indexed_records(str(stale)) is None and count_records(str(stale)) == 284
    parts = [shard_range(284, (i, 3)) for i in (1, 2, 3)]
    assert [(r.start, r.stop) for r in parts[:2]] == [(0, 94), (94, 189)]
    assert parts[2].start == 189 and 10**9 in parts[2]  # a count that falls short loses no record
