"""Speed and peak memory of `mergedna tracks`: the BRCA1 locus and the whole 83 Mb chr17 file.

Each configuration runs the real CLI (`python -m mergedna_cli tracks ... --quiet`) through its own
fresh wrapper process, which reports the CLI's wall time, CPU time and peak RSS from
getrusage(RUSAGE_CHILDREN) - so each peak belongs to exactly one run. Bases are those the run
tiled (PREFIX.tracks.json): with --genome, the stretches between runs of >= 100 N, not the
contig length. A tiny warm-up run (the locus' first 2 kb) first warms file caches and measures the
fixed start-up (imports, model load); "bases/s net" subtracts it from the wall time.

Goals: boundaries only >= 50 kb/s on 2 cores (judged on "net" when there is a warm-up: start-up
alone is longer than 81 kb at 50 kb/s); memory flat in contig length (peak RSS of the
whole-contig run about that of the locus run).

    python benchmarks/tracks_speed.py [--model DIR] [--threads 2] [--skip-genome] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FASTA = (REPO.parent / "shared" / "data" / "grch38_chr17_brca1_region"
                 / "GRCh38_chr17_brca1_region.fa.gz")
LOCUS = "chr17:43,044,295-43,125,483"
WARMUP_BASES = 2_000
GOAL_BASES_PER_S = 50_000
# "flat": the whole contig's peak RSS within this of the locus run's. A locus of fewer windows than
# --batch-size runs smaller batches and peaks lower, so compare with a locus of full batches.
FLAT_MB = 50

# Runs in a fresh interpreter: one CLI run, its wall time and its own rusage, as one JSON line.
WRAPPER = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
run = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": run.returncode, "wall_s": wall,
                  "peak_rss_mb": usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024),
                  "cpu_s": usage.ru_utime + usage.ru_stime, "stderr": run.stderr[-2000:]}))
"""


def run_tracks(args, name: str, where: list[str], signals: bool, workdir: Path) -> dict:
    prefix = workdir / name
    cmd = [sys.executable, "-m", "mergedna_cli", "tracks", "--fasta", str(args.fasta), *where, "-o", str(prefix),
           "--threads", str(args.threads), "--quiet"] + (["--signals"] if signals else [])
    if args.model:
        cmd += ["--model", args.model]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    wrapper = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(cmd)], capture_output=True, text=True,
                             cwd=REPO, check=False)
    if wrapper.returncode != 0:
        raise SystemExit(f"wrapper failed: {wrapper.stderr[-2000:]}")
    result = json.loads(wrapper.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise SystemExit(f"`{' '.join(cmd)}` exited {result['returncode']}:\n{result['stderr']}")
    meta = json.loads(Path(f"{prefix}.tracks.json").read_text())
    outputs = ["tokens.bed", "boundary.bw", "token_length.bw"] + (["entropy.bw", "llr.bw"] if signals else [])
    missing = [o for o in outputs if not Path(f"{prefix}.{o}").is_file()]
    if missing:
        raise SystemExit(f"`{' '.join(cmd)}` did not write {missing}")
    return {**result, "name": name, "signals": signals, "bases": meta["bases"], "tokens": meta["tokens"],
            "windows": meta["windows"], "regions": meta["regions"], "command": " ".join(cmd)}


def contig_length(fasta: str, contig: str) -> int | None:
    fai = Path(f"{fasta}.fai")
    if fai.is_file():
        for line in fai.read_text().splitlines():
            fields = line.split("\t")
            if fields[0] == contig:
                return int(fields[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA), help="reference FASTA (default: %(default)s)")
    parser.add_argument("--region", default=LOCUS, help="the locus (default: BRCA1, %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="passed to the CLI (default: its own)")
    parser.add_argument("--skip-genome", action="store_true", help="skip the whole-contig --genome run")
    parser.add_argument("--skip-signals", action="store_true", help="skip the locus --signals run")
    parser.add_argument("--no-warmup", action="store_true", help="no warm-up run (bases/s net not shown)")
    parser.add_argument("--workdir", default=None, help="keep the tracks here (default: a temp dir)")
    parser.add_argument("--json", default=None, help="write all numbers to this JSON file")
    args = parser.parse_args()

    if args.model and Path(args.model).exists():
        args.model = str(Path(args.model).resolve())
    args.fasta = str(Path(args.fasta).resolve())
    tmp = tempfile.TemporaryDirectory(prefix="mergedna_tracks_speed_") if args.workdir is None else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)

    plan = [("locus", ["--region", args.region], False, f"{args.region}, boundaries")]
    if not args.skip_signals:
        plan.append(("locus-signals", ["--region", args.region], True, f"{args.region}, --signals"))
    if not args.skip_genome:
        plan.append(("genome", ["--genome"], False, "--genome (whole file), boundaries"))
    print(f"mergedna tracks --threads {args.threads}" + (f" --batch-size {args.batch_size}" if args.batch_size else "")
          + f" | model {args.model or '(shipped default)'} | {Path(args.fasta).name} | {os.cpu_count()} CPUs")
    print("peak RSS: ru_maxrss of the CLI process alone; bases: bases tiled (--genome skips runs of >= 100 N); "
          "windows: token windows (--signals masked passes not counted)\n")

    startup = None
    if not args.no_warmup:
        contig, span = args.region.replace(",", "").split(":")
        first = int(span.split("-")[0])
        warmup = f"{contig}:{first}-{first + WARMUP_BASES - 1}"
        warm = run_tracks(args, "warmup", ["--region", warmup], False, workdir)
        startup = warm["wall_s"]
        print(f"warm-up {warmup}: {warm['wall_s']:.1f} s wall, {warm['peak_rss_mb']:.0f} MB "
              f"(start-up cost subtracted for 'bases/s net')\n")

    print(f"  {'run':<40}{'bases':>12}{'windows':>9}{'wall s':>9}{'CPU s':>8}{'bases/s':>10}{'bases/s net':>13}"
          f"{'peak RSS MB':>13}  goal")
    results = []
    for name, where, signals, label in plan:
        row = run_tracks(args, name, where, signals, workdir)
        row["bases_per_s"] = row["bases"] / row["wall_s"]
        net = row["wall_s"] - startup if startup is not None else None
        row["bases_per_s_net"] = row["bases"] / net if net and net > 0 else None
        if signals:
            row["goal"] = "(no goal)"
        else:
            speed = row["bases_per_s_net"] or row["bases_per_s"]  # start-up alone takes seconds
            row["goal"] = (f"{'ok' if speed >= GOAL_BASES_PER_S else 'below'} >= {GOAL_BASES_PER_S // 1000} kb/s"
                           + (" (net)" if row["bases_per_s_net"] else ""))
        results.append(row)
        net_text = f"{row['bases_per_s_net']:,.0f}" if row["bases_per_s_net"] else "-"
        print(f"  {label:<40}{row['bases']:>12,}{row['windows']:>9,}{row['wall_s']:>9.1f}{row['cpu_s']:>8.1f}"
              f"{row['bases_per_s']:>10,.0f}{net_text:>13}{row['peak_rss_mb']:>13.0f}  {row['goal']}", flush=True)

    by_name = {r["name"]: r for r in results}
    if "genome" in by_name:
        locus, genome = by_name["locus"], by_name["genome"]
        growth = genome["peak_rss_mb"] - locus["peak_rss_mb"]
        length = contig_length(args.fasta, args.region.split(":")[0])
        span = f"{length:,}-base contig" if length else "whole file"
        verdict = "flat" if growth <= FLAT_MB else f"NOT flat (> {FLAT_MB} MB more)"
        print(f"\nmemory: peak RSS {locus['peak_rss_mb']:.0f} MB on the locus ({locus['bases']:,} bases) -> "
              f"{genome['peak_rss_mb']:.0f} MB on the {span} ({genome['bases']:,} bases tiled): "
              f"{growth:+.0f} MB, {verdict}")
    print(f"example command: {results[0]['command']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "model": args.model, "fasta": args.fasta,
                                               "region": args.region, "startup_s": startup, "results": results},
                                              indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
