"""Pipeline citizenship: the Snakemake workflow, resumable `score` and `tracks`, `merge-tracks`,
threads, logs and exit codes."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyBigWig
import pysam
import pytest
from conftest import EXAMPLE_FASTA, EXAMPLE_VCF

from mergedna_cli.errors import MergeDNAError
from mergedna_cli.pipelines.resume import PartialDir

REPO = Path(__file__).resolve().parents[1]
# The README's example ClinVar BRCA1 VCF (284 records, the shared set's byte for byte) and chr17
VCF, REF = EXAMPLE_VCF, EXAMPLE_FASTA
SNAKEFILE = REPO / "workflows" / "snakemake" / "Snakefile"
# Subprocesses (run_cli puts this environment's `mergedna` and `python` first on PATH) stay on one thread.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture
def mergedna(run_cli):
    return functools.partial(run_cli, env=ONE_THREAD)


def vcf_text(path: Path) -> tuple[list[str], list[str]]:
    """(header lines without the recorded command line, record lines)."""
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    header = [x for x in lines if x.startswith("#") and not x.startswith("##mergedna_command=")]
    return header, [x for x in lines if not x.startswith("#")]


def first_records(path: Path, n: int, out: Path) -> Path:
    """The header and the first n records of a VCF (tests that need no more stay quick)."""
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    header, records = [x for x in lines if x.startswith("#")], [x for x in lines if not x.startswith("#")]
    out.write_text("\n".join(header + records[:n]) + "\n")
    return out


def kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL `process` as soon as ready() holds; fail if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "the run finished before it could be killed: " + process.stderr.read()
        assert time.monotonic() < deadline, "no chunk finished in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def finished(folder: Path, pattern: str) -> list[Path]:
    return [p for p in folder.glob(pattern) if not p.name.endswith(".tmp")] if folder.is_dir() else []


# -- Snakemake -----------------------------------------------------------------------------------
needs_snakemake = pytest.mark.skipif(importlib.util.find_spec("snakemake") is None,
                                     reason="snakemake not installed (pip install -e '.[test]')")


@needs_snakemake
def test_snakemake_three_shards_equal_a_single_run(mergedna, run_cli, tmp_path):
    """The workflow scores the BRCA1 VCF in 3 shards with the shipped model; the joined VCF has
    exactly the records (and header) of one unsharded run, and is bgzipped and indexed."""
    single = tmp_path / "single.vcf.gz"
    run = mergedna("score", "--fasta", REF, "--vcf", VCF, "-o", single, "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"reference": str(REF), "vcf": str(VCF), "shards": 3, "threads": 1,
                                  "outdir": "results", "name": "brca1", "tracks": {"enabled": False}}))
    work = tmp_path / "work"
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--configfile", str(config),
                          "--directory", str(work), "--cores", "2", "--quiet"],
                         capture_output=True, text=True, timeout=900, env=run_cli.env(ONE_THREAD))
    assert run.returncode == 0, run.stdout + run.stderr
    merged = work / "results" / "brca1.scored.vcf.gz"
    assert vcf_text(merged) == vcf_text(single)
    assert len(vcf_text(merged)[1]) == 284
    assert (work / "results" / "brca1.scored.vcf.gz.tbi").is_file()
    with pysam.VariantFile(str(merged)) as vcf:  # the index works: a region query finds records
        assert sum(1 for _ in vcf.fetch("chr17", 43_045_000, 43_050_000)) > 0
    assert not list((work / "results" / "shards").glob("*.vcf.gz"))  # temporary shards removed
    for i in (1, 2, 3):
        assert "scored" in (work / "results" / "logs" / f"score.{i}-of-3.log").read_text()


@needs_snakemake
def test_snakemake_plans_one_tracks_job_per_contig(run_cli, tmp_path):
    config = tmp_path / "config.yaml"
    bed = tmp_path / "regions.bed"
    bed.write_text("chr17\t43044294\t43045802\nchr1\t100\t200\nchr17\t43124000\t43125483\n")
    config.write_text(json.dumps({"reference": str(REF), "vcf": str(VCF), "shards": 4,
                                  "tracks": {"enabled": True, "regions": str(bed), "signals": True}}))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--configfile", str(config),
                          "--directory", str(tmp_path), "--cores", "2", "--dry-run"],
                         capture_output=True, text=True, timeout=300, env=run_cli.env(ONE_THREAD))
    assert run.returncode == 0, run.stdout + run.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in run.stdout.splitlines()
              if line.split()[:1] and line.split()[0] in ("score_shard", "tracks_contig", "join_tracks")}
    assert counts == {"score_shard": 4, "tracks_contig": 2, "join_tracks": 1}
    assert "results/tracks/clinvar_brca1.chr1.llr.bw" in run.stdout


# -- resumable score -----------------------------------------------------------------------------
def test_score_killed_then_rerun_gives_the_uninterrupted_output(mergedna, run_cli, tiny_model_dir, tmp_path):
    """SIGKILL once some chunks are finished: nothing appears under the final names; the rerun
    resumes from the finished chunks and writes byte-identical files (same command, other folder)."""
    args = ["score", "--model", tiny_model_dir, "--fasta", REF, "--vcf", VCF, "-o", "out.vcf.gz",
            "--skipped", "skipped.tsv", "--chunk-records", "4", "--threads", "1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert mergedna(*args, cwd=whole).returncode == 0
    partial = killed / "out.vcf.gz.partial"
    process = run_cli.popen(*args, cwd=killed, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    kill_when(process, lambda: len(finished(partial, "chunk-*.jsonl")) >= 2)
    done = max(int(p.stem.split("-")[2]) for p in finished(partial, "chunk-*.jsonl"))  # chunk-FIRST-END
    assert not (killed / "out.vcf.gz").exists() and not (killed / "out.vcf.gz.tbi").exists()
    assert not (killed / "skipped.tsv").exists()

    run = mergedna(*args, cwd=killed)  # the same command: the recorded command line is the same too
    assert run.returncode == 0, run.stderr
    assert f"resuming: {done:,} records already scored" in run.stderr
    for name in ("out.vcf.gz", "out.vcf.gz.tbi", "skipped.tsv"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    assert not partial.exists()
    assert sorted(p.name for p in killed.iterdir()) == ["out.vcf.gz", "out.vcf.gz.tbi", "skipped.tsv"]


def test_score_chunk_size_does_not_change_scores(mergedna, tiny_model_dir, tmp_path):
    vcf = first_records(VCF, 60, tmp_path / "first60.vcf")
    out = {}
    for chunk in (3, 2048):
        out[chunk] = tmp_path / f"c{chunk}.tsv"
        run = mergedna("score", "--model", tiny_model_dir, "--fasta", REF, "--vcf", vcf, "-o", out[chunk],
                       "--format", "tsv", "--chunk-records", chunk, "--threads", "1", "--quiet")
        assert run.returncode == 0, run.stderr
    assert out[3].read_text() == out[2048].read_text()


def test_partial_dir_manifest_restart_and_lock(tmp_path):
    final = str(tmp_path / "out.vcf")
    messages = []
    with PartialDir(final, {"a": 1}, log=messages.append) as partial:
        partial.write("chunk-1", lambda tmp: tmp.write_text("x"))
        assert [p.name for p in partial.chunks()] == ["chunk-1"]
        with pytest.raises(MergeDNAError, match="another mergedna run is writing"):
            PartialDir(final, {"a": 1}).__enter__()
    with PartialDir(final, {"a": 1}, log=messages.append) as partial:  # same manifest: kept
        assert [p.name for p in partial.chunks()] == ["chunk-1"] and not messages
    with PartialDir(final, {"a": 2}, log=messages.append) as partial:  # other inputs: discarded
        assert partial.chunks() == []
        assert messages == [f"discarding the partial results in {final}.partial: they were made with a different a"]
        partial.write("chunk-1", lambda tmp: tmp.write_text("x"))
    with PartialDir(final, {"a": 2}, restart=True, log=messages.append) as partial:
        assert partial.chunks() == [] and messages[-1].startswith("--restart: discarding")
        partial.remove()
    assert not Path(f"{final}.partial").exists()


# -- resumable tracks and merge-tracks -----------------------------------------------------------
TRACK_FILES = ("tokens.bed", "boundary.bw", "token_length.bw", "entropy.bw", "llr.bw", "tracks.json")


def test_tracks_killed_then_rerun_gives_the_uninterrupted_output(mergedna, run_cli, tiny_model_dir, tmp_path):
    args = ["tracks", "--model", tiny_model_dir, "--fasta", REF, "--region", "chr17:43,044,295-43,046,294",
            "--signals", "-o", "t", "--chunk-bases", "128", "--threads", "1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert mergedna(*args, cwd=whole).returncode == 0
    process = run_cli.popen(*args, cwd=killed, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    kill_when(process, lambda: len(finished(killed / "t.partial", "unit-*.npz")) >= 2)
    assert not any((killed / f"t.{name}").exists() for name in TRACK_FILES)
    run = mergedna(*args, cwd=killed)
    assert run.returncode == 0, run.stderr
    assert "resuming:" in run.stderr
    for name in TRACK_FILES:
        assert (killed / f"t.{name}").read_bytes() == (whole / f"t.{name}").read_bytes(), name
    assert not (killed / "t.partial").exists()


def test_merge_tracks_of_per_contig_runs_equals_one_run(mergedna, tiny_model_dir, tmp_path):
    rng = np.random.default_rng(0)
    acgt = lambda n: "".join(rng.choice(list("ACGT"), n))
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">chrA\n{acgt(700)}\n>chrB\n{'N' * 300}\n>chrC\n{acgt(300)}{'N' * 200}{acgt(250)}\n")
    common = ["--model", tiny_model_dir, "--fasta", fasta, "--threads", "1", "--quiet"]
    assert mergedna("tracks", *common, "--genome", "-o", tmp_path / "whole").returncode == 0
    for contig in ("chrA", "chrB", "chrC"):
        run = mergedna("tracks", *common, "--genome", "--contig", contig, "-o", tmp_path / contig)
        assert run.returncode == 0, run.stderr
    run = mergedna("merge-tracks", tmp_path / "chrC", tmp_path / "chrA", tmp_path / "chrB", "--fasta", fasta,
                   "-o", tmp_path / "merged", "--quiet")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "merged.tokens.bed").read_text() == (tmp_path / "whole.tokens.bed").read_text()
    for name in ("boundary.bw", "token_length.bw"):
        a, b = pyBigWig.open(str(tmp_path / f"whole.{name}")), pyBigWig.open(str(tmp_path / f"merged.{name}"))
        assert a.chroms() == b.chroms()
        for contig, length in a.chroms().items():
            assert np.array_equal(a.values(contig, 0, length, numpy=True), b.values(contig, 0, length, numpy=True),
                                  equal_nan=True)
    whole, merged = (json.loads((tmp_path / f"{p}.tracks.json").read_text()) for p in ("whole", "merged"))
    assert {k: merged[k] for k in ("regions", "bases", "tokens", "windows")} == \
           {k: whole[k] for k in ("regions", "bases", "tokens", "windows")}
    run = mergedna("merge-tracks", tmp_path / "chrA", tmp_path / "whole", "--fasta", fasta, "-o", tmp_path / "bad")
    assert run.returncode == 1 and "overlaps" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("bad*"))


# -- threads, logs, exit codes -------------------------------------------------------------------
def test_threads_reach_torch_onnxruntime_and_thread_pools(run_cli, tiny_model_dir, tmp_path):
    """--threads N is applied before numpy/torch load (OpenMP, OpenBLAS, Arrow pools), to torch's
    intra-op pool and to ONNX Runtime's session."""
    code = (
        "import os, sys\n"
        "from mergedna_cli.cli.app import app\n"
        f"sys.argv = ['mergedna', 'score', '--model', {str(tiny_model_dir)!r}, '--fasta', {str(REF)!r},"
        f" '--vcf', {str(VCF)!r}, '-o', {str(tmp_path / 'o.tsv')!r}, '--format', 'tsv', '--threads', '1', '-q']\n"
        "app(standalone_mode=False)\n"
        "import torch\n"
        "from mergedna_cli.engine.load import make_backend\n"
        "onnx = make_backend('mergedna-small', 'onnx', 'cpu', threads=1)\n"
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'],"
        " onnx.session.get_session_options().intra_op_num_threads)\n")
    env = {k: v for k, v in run_cli.env().items() if not k.endswith("_NUM_THREADS")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "1", "1", "1"]


def test_logs_on_stderr_no_progress_bar_without_a_terminal_and_quiet(mergedna, tiny_model_dir, tmp_path):
    vcf = first_records(VCF, 5, tmp_path / "first5.vcf")
    args = ["score", "--model", tiny_model_dir, "--fasta", REF, "--vcf", vcf, "-o", "-", "--threads", "1"]
    run = mergedna(*args)
    assert run.returncode == 0
    assert all(line.startswith(("#", "chr17\t")) for line in run.stdout.splitlines())
    assert run.stderr.strip() == "scored 5 records (ok 5)"  # one log line, no bar, no escape codes
    quiet = mergedna(*args, "--quiet")
    records = lambda text: [x for x in text.splitlines() if not x.startswith("##mergedna_command=")]
    assert quiet.returncode == 0 and quiet.stderr == "" and records(quiet.stdout) == records(run.stdout)


def test_new_options_exit_codes(mergedna, tiny_model_dir, tmp_path):
    run = mergedna("score", "--fasta", REF, "--vcf", VCF, "-o", tmp_path / "o.vcf", "--chunk-records", "0")
    assert run.returncode == 2 and run.stderr.startswith("mergedna: error:")
    run = mergedna("tracks", "--model", tiny_model_dir, "--fasta", REF, "--genome", "--contig", "chrZ",
                   "-o", tmp_path / "t")
    assert run.returncode == 1 and "contig 'chrZ' not in reference" in run.stderr
    run = mergedna("merge-tracks", tmp_path / "missing", "--fasta", REF, "-o", tmp_path / "m")
    assert run.returncode == 1 and "is not a `mergedna tracks` output" in run.stderr


# -- the workflow files against the CLI they drive -------------------------------------------------
NEXTFLOW = REPO / "workflows" / "nextflow"
COMMANDS = {"score": NEXTFLOW / "modules/mergedna/score/main.nf", "tracks": NEXTFLOW / "modules/mergedna/tracks/main.nf",
            "merge-tracks": NEXTFLOW / "modules/mergedna/mergetracks/main.nf"}


def test_nextflow_modules_use_real_options_and_nf_core_conventions():
    """Nextflow cannot run here: check what can be checked without it. Every option a module or the
    Snakefile passes exists on that command, and the nf-core conventions are in place."""
    import re

    import typer.main

    from mergedna_cli.cli.app import app

    commands = typer.main.get_command(app).commands
    for name, path in COMMANDS.items():
        text = path.read_text()
        script = text[text.index("script:"):text.index("cat <<-END_VERSIONS")]
        known = {opt for param in commands[name].params for opt in param.opts}
        used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-o)\b", script))
        assert used and used <= known, (name, used - known)
        for convention in ("tuple val(meta), path(", "task.ext.args", "stub:", "mergedna --version",
                           'path "versions.yml", emit: versions', "task.ext.when"):
            assert convention in text, (path.name, convention)
        if name != "merge-tracks":
            assert "task.ext.prefix" in text and "--threads ${task.cpus}" in text, path
    snakefile = SNAKEFILE.read_text()
    for name in ("score", "tracks", "merge-tracks"):
        for shell in re.findall(rf'"mergedna {name} (.*?)2> ', snakefile.replace('"\n        "', "")):
            used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-o)\b", shell))
            known = {opt for param in commands[name].params for opt in param.opts}
            assert used and used <= known, (name, used - known)
