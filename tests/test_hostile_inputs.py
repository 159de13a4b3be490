"""Hostile and unusual inputs, the way real VCFs and real habits arrive (non-UTF-8 bytes, BCF,
CRLF, POS 0, a full disk, read-only folders, wrong builds): every case ends in a scored output that keeps every record, or a one-line error with
an exit code; never a traceback, never a lost record, never an overwritten input.

Most commands run in-process (`mergedna_cli.cli.app.main`, torch imported once); those that read
stdin or need a resource limit run as subprocesses. Data: the example BRCA1 slice shipped in
docs/example (always present) and a tiny random model.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example"
REF = EXAMPLE / "brca1_chr17.fa.gz"
CLINVAR = EXAMPLE / "clinvar_brca1.vcf.gz"  # 284 records, bgzip + tabix
HEADER = "##fileformat=VCFv4.2\n##contig=<ID=chr17,length=83257441>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
needs_bcftools = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> str:
    return str(tiny_model_dir)


class Result:
    def __init__(self, code: int, stdout: bytes, stderr: str):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr

    def one_line_error(self, code: int, *fragments: str) -> None:
        assert self.returncode == code, self.stderr
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mergedna: error: "), self.stderr
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])


def run(*args: str) -> Result:
    """`mergedna ARGS` in-process: exit code, stdout bytes, stderr text."""
    from mergedna_cli.cli.app import main

    out, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    argv, sys.argv = sys.argv, ["mergedna", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
        stdout.flush()
    return Result(code, out.getvalue(), err.getvalue())


def score(model: str, vcf, out, *extra: str) -> list[str]:
    return ["score", "--model", model, "--fasta", REF, "--vcf", vcf, "-o", out, "--threads", "1",
            "--quiet", *extra]


def records(path: Path | bytes) -> list[list[str]]:
    if isinstance(path, bytes):
        data = path
    else:
        data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [line.decode("utf-8", "surrogateescape").split("\t")
            for line in data.splitlines() if not line.startswith(b"#")]


def info(record: list[str]) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in record[7].split(";") if "=" in kv)


def seq(start: int, end: int) -> str:
    with pysam.FastaFile(str(REF)) as fasta:
        return fasta.fetch("chr17", start, end).upper()


def write_vcf(path: Path, *lines: str, header: str = HEADER) -> Path:
    path.write_text(header + "".join(line + "\n" for line in lines))
    return path


# -- 1, 2: BCF on stdin; bytes that are not UTF-8 -------------------------------------------------
@needs_bcftools
def test_bcf_on_stdin_and_bcf_file(run_cli, model, tmp_path):
    bcf = subprocess.run(["bcftools", "view", "-Ou", str(CLINVAR)], capture_output=True, check=True).stdout
    done = run_cli(*score(model, "-", "-"), text=False, timeout=300, input=bcf)
    assert done.returncode == 0, done.stderr
    out = records(done.stdout)
    assert len(out) == 284 and all(info(r)["MDNA_STATUS"] == "ok" for r in out)
    (tmp_path / "in.bcf").write_bytes(bcf)
    assert run(*score(model, tmp_path / "in.bcf", tmp_path / "o.vcf")).returncode == 0
    assert [r[:5] for r in records(tmp_path / "o.vcf")] == [r[:5] for r in out]


def test_non_utf8_bytes_come_back_byte_for_byte(run_cli, model, tmp_path):
    ref = seq(43045704, 43045705)
    raw = (HEADER.encode() + f"chr17\t43045705\tlatin\t{ref}\tG\t.\t.\tNOTE=caf".encode() + b"\xe9\n")
    vcf = tmp_path / "latin1.vcf"
    vcf.write_bytes(raw)
    for out in (tmp_path / "o.vcf", tmp_path / "o.vcf.gz"):
        result = run(*score(model, vcf, out))
        assert result.returncode == 0, result.stderr
        data = out.read_bytes()
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        line = [x for x in data.splitlines() if not x.startswith(b"#")][0]
        assert line.startswith(raw.splitlines()[-1] + b";MDNA_LLR=")
    stdin = run_cli(*score(model, "-", "-"), text=False, timeout=300, input=raw)
    assert stdin.returncode == 0 and (b"NOTE=caf\xe9;MDNA_LLR=") in stdin.stdout


# -- 3: output format from the extension; -O; contradictions refused -------------------------------
def test_output_format_follows_the_extension(model, tmp_path):
    vcf = CLINVAR
    assert run(*score(model, vcf, tmp_path / "a.tsv.gz", "--format", "tsv")).returncode == 0
    rows = gzip.decompress((tmp_path / "a.tsv.gz").read_bytes()).decode().splitlines()
    assert rows[0].split("\t")[:8] == ["chrom", "pos", "id", "ref", "alt", "score", "status", "method"]
    assert len(rows) == 285
    assert run(*score(model, vcf, tmp_path / "b.tsv")).returncode == 0  # no --format needed
    assert (tmp_path / "b.tsv").read_text().splitlines() == rows
    assert run(*score(model, vcf, tmp_path / "c.parquet")).returncode == 0
    assert (tmp_path / "c.parquet").read_bytes()[:4] == b"PAR1"
    run(*score(model, vcf, tmp_path / "x.vcf.gz", "--format", "parquet")).one_line_error(2, "contradicts")
    run(*score(model, vcf, tmp_path / "x.parquet", "--format", "tsv")).one_line_error(2, "contradicts")
    run(*score(model, vcf, tmp_path / "x.vcf", "-O", "z")).one_line_error(2, "contradicts")
    run(*score(model, vcf, tmp_path / "x.tsv", "-O", "b")).one_line_error(2, "output type")
    run(*score(model, vcf, tmp_path / "x.txt")).one_line_error(2, "use .vcf.gz, .vcf or '-'")
    assert not list(tmp_path.glob("x.*"))


@needs_bcftools
def test_bcf_output_with_index_and_on_stdout(model, tmp_path):
    out = tmp_path / "o.bcf"
    assert run(*score(model, CLINVAR, out)).returncode == 0
    assert (tmp_path / "o.bcf.csi").exists()
    view = subprocess.run(["bcftools", "view", "-H", "-r", "chr17:43045700-43050000", str(out)],
                          capture_output=True, text=True)
    assert view.returncode == 0 and view.stdout.strip()
    stdout = run(*score(model, CLINVAR, "-", "-O", "u"))
    assert stdout.returncode == 0 and gzip.decompress(stdout.stdout)[:3] == b"BCF"
    stdout = run(*score(model, CLINVAR, "-", "-O", "z"))
    assert stdout.returncode == 0 and len(records(stdout.stdout)) == 284


# -- 4, 10: REF equal to ALT; indels longer than the window ----------------------------------------
def test_ref_equals_alt_and_indels_longer_than_the_window(model, tmp_path):
    start = 43044400
    deletion = seq(start - 1, start - 1 + 50_001)
    dup = seq(start - 1, start - 1 + 20_001)
    vcf = write_vcf(tmp_path / "v.vcf",
                    f"chr17\t{start}\tsame\t{deletion[0]}\t{deletion[0]}\t.\t.\t.",
                    f"chr17\t{start}\tsame_mnv\t{deletion[:3]}\t{deletion[:3]},{deletion[0]}\t.\t.\t.",
                    f"chr17\t{start}\tdel50kb\t{deletion}\t{deletion[0]}\t.\t.\t.",
                    f"chr17\t{start}\tdup20kb\t{dup[0]}\t{dup}\t.\t.\t.",
                    f"chr17\t{start}\tshort_del\t{deletion[:4]}\t{deletion[0]}\t.\t.\t.")
    out = tmp_path / "o.vcf"
    assert run(*score(model, vcf, out)).returncode == 0
    got = {r[2]: info(r) for r in records(out)}
    assert got["same"]["MDNA_STATUS"] == "ref_equals_alt" and got["same"]["MDNA_LLR"] == "."
    assert got["same_mnv"]["MDNA_STATUS"] == "ref_equals_alt,ok"
    assert got["del50kb"]["MDNA_STATUS"] == got["dup20kb"]["MDNA_STATUS"] == "indel_too_long"
    assert got["del50kb"]["MDNA_EMBDIST"] == "."
    assert got["short_del"]["MDNA_STATUS"] == "ok" and float(got["short_del"]["MDNA_EMBDIST"]) >= 0


# -- 5, 12: invalid VCF in is refused; messages name the problem ----------------------------------
def test_invalid_headers_and_inputs_are_refused_by_name(model, tmp_path):
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    body = "chr17\t43045705\t.\tT\tG\t.\t.\t.\n"
    (tmp_path / "no_fileformat.vcf").write_text(cols + body)
    (tmp_path / "five.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n" + body)
    (tmp_path / "nine.vcf").write_text("##fileformat=VCFv4.2\n" + cols.rstrip("\n") + "\tFORMAT\n" + body)
    (tmp_path / "garbage.vcf").write_bytes(bytes(range(128, 256)) * 4)
    (tmp_path / "adir.vcf").mkdir()
    out = tmp_path / "o.vcf"
    run(*score(model, tmp_path / "no_fileformat.vcf", out)).one_line_error(1, "no_fileformat.vcf:1", "##fileformat")
    run(*score(model, tmp_path / "five.vcf", out)).one_line_error(1, "five.vcf:2", "found 5 column")
    run(*score(model, tmp_path / "nine.vcf", out)).one_line_error(1, "found 9 column")
    run(*score(model, tmp_path / "garbage.vcf", out)).one_line_error(1, "is not VCF/BCF")
    run(*score(model, tmp_path / "adir.vcf", out)).one_line_error(1, "is a directory")
    run(*score(model, tmp_path / "missing.vcf", out)).one_line_error(1, "does not exist")
    (tmp_path / "short.vcf").write_text(HEADER + "chr17\t5\t.\tA\n")
    run(*score(model, tmp_path / "short.vcf", out)).one_line_error(1, "short.vcf:4", "8 tab-separated")
    (tmp_path / "empty.vcf").write_text("")
    run(*score(model, tmp_path / "empty.vcf", out)).one_line_error(1, "not a VCF")
    truncated = tmp_path / "truncated.vcf.gz"
    truncated.write_bytes(CLINVAR.read_bytes()[:1500])  # inside the one data block
    run(*score(model, truncated, out)).one_line_error(1, "truncated.vcf.gz")
    assert not out.exists()


@needs_bcftools
def test_pos_zero_trailing_semicolon_crlf_and_old_keys(model, tmp_path):
    ref = seq(43045704, 43045705)
    vcf = tmp_path / "odd.vcf"
    vcf.write_bytes((HEADER + "chr17\t0\ttelomere\tA\tC\t.\t.\t.\n"
                     f"chr17\t43045705\tsemicolon\t{ref}\tG\t.\t.\tDP=3;\n"
                     f"chr17\t43045705\tcrlf\t{ref}\tC\t.\t.\t.\r\n").encode())
    out = tmp_path / "o.vcf"
    assert run(*score(model, vcf, out)).returncode == 0
    got = {r[2]: r for r in records(out)}
    assert list(got) == ["telomere", "semicolon", "crlf"]
    assert info(got["telomere"])["MDNA_STATUS"] == "outside_contig"
    assert got["semicolon"][7].startswith("DP=3;MDNA_LLR=") and ";;" not in got["semicolon"][7]
    assert info(got["crlf"])["MDNA_STATUS"] == "ok"
    assert subprocess.run(["bcftools", "view", "-H", str(out)], capture_output=True).returncode == 0

    # an output of an older version (one MDNA_SCORE for every method) is upgraded when re-scored
    old = tmp_path / "old.vcf"
    old.write_text(HEADER.replace("#CHROM", '##INFO=<ID=MDNA_SCORE,Number=A,Type=Float,Description="old">\n#CHROM')
                   + f"chr17\t43045705\tx\t{ref}\tG\t.\t.\tDP=1;MDNA_SCORE=-0.5;MDNA_STATUS=ok;MDNA_METHOD=snv_llr\n")
    again = tmp_path / "again.vcf"
    assert run(*score(model, old, again)).returncode == 0
    text = again.read_text()
    assert "MDNA_SCORE" not in text and text.count("MDNA_STATUS=") == 1
    assert records(again)[0][7].startswith("DP=1;MDNA_LLR=")


# -- 6: a full disk names the file and leaves no temporaries ---------------------------------------
def test_full_disk_names_the_output_and_leaves_nothing(run_cli, model, tmp_path):
    out = tmp_path / "o.vcf"
    limit = 20_000  # bytes: the annotated VCF is larger; Python ignores SIGXFSZ, so write() fails

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    done = run_cli(*score(model, "-", out), text=False, timeout=300, input=gzip.decompress(CLINVAR.read_bytes()),
                   preexec_fn=small_files)
    assert done.returncode == 1
    message = done.stderr.decode().strip()
    assert message.startswith("mergedna: error: File too large") and str(out) in message, message
    assert len(message.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_atomic_abort_removes_the_temporary_even_when_close_fails(tmp_path):
    from mergedna_cli.atomic import AtomicTextFile

    class DiskFull:
        def write(self, text):
            pass

        def close(self):
            raise OSError(28, "No space left on device")

    target = AtomicTextFile(tmp_path / "tokens.bed")
    real = target._out
    real.close()
    target._out = DiskFull()
    target.abort()
    assert list(tmp_path.iterdir()) == []


# -- 7, 8: bare mergedna; -o equal to an input ------------------------------------------------------
def test_bare_mergedna_prints_help_without_an_empty_error():
    result = run()
    assert result.returncode == 2
    assert b"score" in result.stdout
    assert "error" not in result.stderr


def test_output_equal_to_an_input_is_refused(model, tmp_path):
    vcf = tmp_path / "in.vcf"
    vcf.write_bytes(gzip.decompress(CLINVAR.read_bytes()))
    before = vcf.read_bytes()
    run(*score(model, vcf, vcf)).one_line_error(2, "is the file given to --vcf")
    run(*score(model, vcf, tmp_path / ".." / tmp_path.name / "in.vcf")).one_line_error(2, "--vcf")
    run(*score(model, vcf, tmp_path / "o.vcf", "--skipped", vcf)).one_line_error(2, "--vcf")
    assert vcf.read_bytes() == before


# -- 9: weights readable by colleagues ---------------------------------------------------------------
def test_atomically_written_files_get_the_umask_mode(tiny_model_dir, tmp_path):
    from mergedna_cli.atomic import atomic_write

    mask = os.umask(0o022)
    os.umask(mask)
    wanted = 0o666 & ~mask
    assert stat.S_IMODE((tiny_model_dir / "model.safetensors").stat().st_mode) == wanted

    def private(tmp):  # as safetensors does
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    atomic_write(tmp_path / "head.safetensors", private)
    assert stat.S_IMODE((tmp_path / "head.safetensors").stat().st_mode) == wanted


# -- 11: embed clips at the contig end, warns on all-N and empty regions ----------------------------
def test_embed_clips_regions_and_warns(model, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("chr17\t43044295\t43044600\tgood\nchr17\t1000\t1000\tzero_length\n"
                   "chr17\t83257000\t83257500\tpast_end\nchr17\t1000\t1400\tall_n\n")
    out = tmp_path / "e.tsv"
    result = run("embed", "--model", model, "--fasta", REF, "--regions", bed, "-o", out, "--threads", "1", "-q")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [r[3] for r in rows] == ["good", "zero_length", "past_end", "all_n"]
    assert rows[2][2] == "83257441"  # the contig's length
    assert rows[1][4] == "nan"
    assert "clipped to end 83257441" in result.stderr and "all_n is all N" in result.stderr
    assert "zero_length" in result.stderr


# -- 13 and the run summary: wrong build, shifted positions, --strict -------------------------------
def _shifted(tmp_path: Path, delta: int) -> Path:
    lines = gzip.decompress(CLINVAR.read_bytes()).decode().splitlines()
    out = []
    for line in lines:
        if not line.startswith("#"):
            fields = line.split("\t")
            fields[1] = str(int(fields[1]) + delta)
            line = "\t".join(fields)
        out.append(line)
    path = tmp_path / f"shift{delta}.vcf"
    path.write_text("\n".join(out) + "\n")
    return path


def test_wrong_build_and_shifted_positions_warn_and_strict_fails(model, tmp_path):
    shifted = _shifted(tmp_path, 1)
    summary = tmp_path / "s.json"
    result = run(*score(model, shifted, tmp_path / "o.vcf", "--summary", summary))
    assert result.returncode == 0
    assert "mergedna: warning:" in result.stderr and "one base to the left" in result.stderr
    data = json.loads(summary.read_text())
    assert data["records"] == 284 and data["fractions"]["ref_mismatch"] > 0.5 and data["warnings"]
    strict = run(*score(model, shifted, tmp_path / "strict.vcf", "--strict"))
    strict.one_line_error(1, "--strict", "shift")
    assert not (tmp_path / "strict.vcf").exists()

    hg19 = _shifted(tmp_path, -1_848_000)  # BRCA1 moved by the hg19 -> hg38 offset: all N here
    result = run(*score(model, hg19, tmp_path / "n.vcf", "--summary", summary))
    assert result.returncode == 0 and "fall on N" in result.stderr
    assert json.loads(summary.read_text())["alleles"] == {"reference_is_n": 284}

    clean = run(*score(model, CLINVAR, tmp_path / "clean.vcf", "--strict", "--summary", summary))
    assert clean.returncode == 0 and "warning" not in clean.stderr
    assert json.loads(summary.read_text())["warnings"] == []


# -- per-method keys, log-probabilities, -r/-R ------------------------------------------------------
@needs_bcftools
def test_method_keys_logprobs_and_bcftools_filters(model, tmp_path):
    ref = seq(43045704, 43045707)
    vcf = write_vcf(tmp_path / "m.vcf", f"chr17\t43045705\tsnv\t{ref[0]}\tG,C\t.\t.\t.",
                    f"chr17\t43045705\tindel\t{ref[:3]}\t{ref[0]}\t.\t.\t.",
                    f"chr17\t43045705\tboth\t{ref[:2]}\t{ref[0]},G{ref[1]}\t.\t.\t.")
    out = tmp_path / "o.vcf.gz"
    assert run(*score(model, vcf, out, "--logprobs")).returncode == 0
    got = {r[2]: info(r) for r in records(out)}
    assert got["snv"]["MDNA_EMBDIST"] == ".,." and got["indel"]["MDNA_LLR"] == "."
    assert got["both"]["MDNA_METHOD"] == "indel_embedding_cosine,mnv_llr_sum"
    llr = float(got["snv"]["MDNA_LLR"].split(",")[0])
    ref_lp, alt_lp = (float(got["snv"][k].split(",")[0]) for k in ("MDNA_REF_LOGP", "MDNA_ALT_LOGP"))
    assert llr == pytest.approx(alt_lp - ref_lp, abs=2e-4)
    header = subprocess.run(["bcftools", "view", "-h", str(out)], capture_output=True, text=True).stdout
    for key in ("MDNA_LLR", "MDNA_EMBDIST", "MDNA_REF_LOGP", "MDNA_ALT_LOGP"):
        assert f"##INFO=<ID={key},Number=A,Type=Float" in header
    assert ",Backend=onnx>" in header  # the backend that ran (auto on CPU), on the line naming the model
    # a filter on the indel key keeps the indels; the LLR key does not touch them
    kept = subprocess.run(["bcftools", "view", "-H", "-i", "MDNA_EMBDIST>=0", str(out)],
                          capture_output=True, text=True)
    assert kept.returncode == 0 and {line.split("\t")[2] for line in kept.stdout.splitlines()} == {"indel", "both"}


@needs_bcftools
def test_regions_select_what_bcftools_selects(model, tmp_path):
    region = "chr17:43045700-43050000"
    out = tmp_path / "r.vcf"
    assert run(*score(model, CLINVAR, out, "-r", region)).returncode == 0
    expected = subprocess.run(["bcftools", "view", "-H", "-r", region, str(CLINVAR)], capture_output=True,
                              text=True).stdout.splitlines()
    assert [r[2] for r in records(out)] == [line.split("\t")[2] for line in expected] and expected
    regions = tmp_path / "regions.tsv"  # overlapping regions: each record once
    regions.write_text("chr17\t43045700\t43047000\nchr17\t43046000\t43050000\n17\t43045700\t43045800\n")
    out_r = tmp_path / "R.vcf"
    assert run(*score(model, CLINVAR, out_r, "-R", regions)).returncode == 0
    assert records(out_r) == records(out)
    bcf = tmp_path / "in.bcf"
    subprocess.run(["bcftools", "view", "-Ob", "-o", str(bcf), str(CLINVAR)], check=True)
    subprocess.run(["bcftools", "index", str(bcf)], check=True)
    out_b = tmp_path / "b.vcf"
    assert run(*score(model, bcf, out_b, "-r", region)).returncode == 0
    assert [r[2] for r in records(out_b)] == [r[2] for r in records(out)]
    csi = tmp_path / "csi.vcf.gz"  # a CSI index instead of .tbi
    shutil.copy(CLINVAR, csi)
    subprocess.run(["bcftools", "index", "-c", str(csi)], check=True)
    out_c = tmp_path / "c.vcf"
    assert run(*score(model, csi, out_c, "-r", region)).returncode == 0
    assert records(out_c) == records(out)
    plain = tmp_path / "plain.vcf"
    plain.write_bytes(gzip.decompress(CLINVAR.read_bytes()))
    run(*score(model, plain, tmp_path / "x.vcf", "-r", region)).one_line_error(1, "index")


def test_reference_in_a_read_only_folder(model, tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(REF, folder / "ref.fa.gz")
    real_access = os.access

    def access(path, mode, *args, **kwargs):  # read-only even for root
        if mode & os.W_OK and Path(path).resolve() == folder.resolve():
            return False
        return real_access(path, mode, *args, **kwargs)
    monkeypatch.setattr(os, "access", access)
    args = ["score", "--model", model, "--fasta", folder / "ref.fa.gz", "--vcf", CLINVAR,
            "-o", tmp_path / "o.vcf", "--threads", "1", "-q"]
    run(*args).one_line_error(1, "--fai", "symlink")
    assert run(*args, "--fai", tmp_path / "ref.fai").returncode == 0
    assert (tmp_path / "ref.fai").is_file() and not (folder / "ref.fa.gz.fai").exists()


def test_fai_option_builds_the_index_elsewhere(model, tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    shutil.copy(REF, folder / "ref.fa.gz")
    index = tmp_path / "cache" / "ref.fa.gz.fai"
    index.parent.mkdir()
    result = run("score", "--model", model, "--fasta", folder / "ref.fa.gz", "--vcf", CLINVAR,
                 "-o", tmp_path / "o.vcf", "--threads", "1", "-q", "--fai", index)
    assert result.returncode == 0, result.stderr
    assert index.is_file() and not (folder / "ref.fa.gz.fai").exists()


# -- smaller items: --resume with a conflicting --preset; choices in --help --------------------------
def test_resume_with_a_conflicting_preset_is_an_error(tiny_model_dir, tmp_path):
    from mergedna_cli.model.files import load_config

    out = tmp_path / "run"
    step = out / "checkpoints" / "step-0000002"
    step.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "config.json", step / "config.json")
    (out / "checkpoints" / "latest").write_text("step-0000002\n")
    fasta = tmp_path / "g.fa"
    fasta.write_text(">g\n" + "ACGT" * 200 + "\n")
    stored = load_config(step)
    run("pretrain", "--fasta", fasta, "-o", out, "--resume", "--preset", "small", "--quiet").one_line_error(
        2, "--resume continues the model", "--preset small")
    run("pretrain", "--fasta", fasta, "-o", out, "--resume", "--preset", "tiny", "--context", "128",
        "--quiet").one_line_error(2, "--context 128", "context")
    same = run("pretrain", "--fasta", fasta, "-o", out, "--resume", "--preset", "tiny", "--context",
               str(stored.context), "--quiet")
    assert "--resume continues the model" not in same.stderr  # the same model: on to the checkpoint


def test_score_help_lists_the_choices():
    result = run("score", "--help")
    text = result.stdout.decode()
    assert result.returncode == 0
    for choices in ("flag|skip|error", "vcf|tsv|parquet", "v|z|b|u", "both|forward"):
        assert choices in text, choices


def test_atomic_text_file_names_the_output_when_a_write_fails(tmp_path):
    from mergedna_cli.atomic import AtomicTextFile

    class DiskFull:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def writelines(self, lines):
            raise OSError(28, "No space left on device")

        def close(self):
            raise OSError(28, "No space left on device")

    target = AtomicTextFile(tmp_path / "tokens.bed")
    target._out._handle.close()
    target._out._handle = DiskFull()
    with pytest.raises(OSError) as err:
        target._out.writelines(["chr1\t0\t1\n"])
    assert err.value.filename == str(tmp_path / "tokens.bed") and err.value.errno == 28
    with pytest.raises(OSError):
        target.close()
    assert list(tmp_path.iterdir()) == []


def test_bgzip_cut_at_a_block_boundary_is_refused(model, tmp_path):
    """Python's gzip reads such a file without complaint; its last records would be lost."""
    text = gzip.decompress(CLINVAR.read_bytes())
    whole = tmp_path / "whole.vcf.gz"
    with pysam.BGZFile(str(whole), "wb") as out:
        out.write(text[: len(text) // 2])
        out.flush()  # a block boundary in the middle
        out.write(text[len(text) // 2:])
    data = whole.read_bytes()
    first_block = int.from_bytes(data[16:18], "little") + 1
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(data[:first_block])
    run(*score(model, cut, tmp_path / "o.vcf")).one_line_error(1, "cut.vcf.gz", "end-of-file block is missing")
    assert run(*score(model, whole, tmp_path / "o.vcf")).returncode == 0
    assert len(records(tmp_path / "o.vcf")) == 284
