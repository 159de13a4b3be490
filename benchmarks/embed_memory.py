"""Does `mergedna embed` stream? Wall time and peak RSS of the real CLI for growing region counts.

For each count, a seeded random BED of regions inside chr17:42,500,000-43,500,000 (real GRCh38
sequence) is embedded by `python -m mergedna_cli embed ... --quiet` in a child process. Each run
goes through its own fresh wrapper process that starts the CLI, samples its RSS from /proc while
it runs, waits for it and reports its peak RSS from getrusage(RUSAGE_CHILDREN) - so each peak
belongs to exactly one CLI run. Flat memory means the peak RSS does not grow with the count.
A small warm-up run first exports the ONNX graph if needed and warms file caches; it is shown
but is not one of the measured counts.

    python benchmarks/embed_memory.py [--model DIR] [--counts 1000,10000] [--threads 2]
        [--backend torch|onnx] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FASTA = (REPO.parent / "shared" / "data" / "grch38_chr17_brca1_region"
                 / "GRCh38_chr17_brca1_region.fa.gz")

# Runs in a fresh interpreter: start the command, sample the child's RSS, print one JSON line.
WRAPPER = r"""
import json, resource, subprocess, sys, time
cmd = json.loads(sys.argv[1])
start = time.perf_counter()
child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
samples = []
status = f"/proc/{child.pid}/status"
while child.poll() is None:
    try:
        with open(status) as handle:
            rss = next(int(l.split()[1]) for l in handle if l.startswith("VmRSS:"))
        samples.append((time.perf_counter() - start, rss / 1024))
    except (OSError, StopIteration):
        pass
    time.sleep(0.05)
out, err = child.communicate()
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
print(json.dumps({"returncode": child.returncode, "wall_s": wall, "peak_rss_mb": peak,
                  "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "rss_samples": samples,
                  "stderr": err[-2000:]}))
"""


def write_bed(path: Path, count: int, length: int, seed: int, contig: str, lo: int, hi: int) -> list[str]:
    """`count` regions of `length` bases, random (seeded) inside [lo, hi), sorted; returns names."""
    rng = random.Random(seed)
    starts = sorted(rng.randrange(lo, hi - length) for _ in range(count))
    names = [f"r{i}" for i in range(count)]
    with open(path, "w") as handle:
        for name, start in zip(names, starts):
            handle.write(f"{contig}\t{start}\t{start + length}\t{name}\n")
    return names


def run_cli(args, bed: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "mergedna_cli", "embed", "--fasta", str(args.fasta), "--regions", str(bed),
           "-o", str(out), "--threads", str(args.threads), "--backend", args.backend, "--quiet"]
    if args.model:
        cmd += ["--model", args.model]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.strand:
        cmd += ["--strand", args.strand]
    wrapper = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(cmd)], capture_output=True, text=True,
                             cwd=REPO)
    if wrapper.returncode != 0:
        raise SystemExit(f"wrapper failed: {wrapper.stderr[-2000:]}")
    result = json.loads(wrapper.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise SystemExit(f"`{' '.join(cmd)}` exited {result['returncode']}:\n{result['stderr']}")
    result["command"] = " ".join(cmd)
    return result


def check_output(out: Path, names: list[str], dim_expected: int | None = None) -> dict:
    """Rows written, in BED order, with finite embeddings."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    emb = table.column("embedding").combine_chunks()
    values = np.asarray(emb.values.to_numpy(zero_copy_only=False))
    return {"rows": table.num_rows, "in_order": table.column("name").to_pylist() == names,
            "dim": emb.type.list_size, "finite": bool(np.isfinite(values).all())}


def rss_profile(samples: list) -> tuple[float, float]:
    """Sampled RSS (MB) at half the run and the highest sample in its last quarter: equal values
    mean memory stopped growing once the model was loaded."""
    if not samples:
        return float("nan"), float("nan")
    end = samples[-1][0]
    mid = min(samples, key=lambda s: abs(s[0] - end / 2))[1]
    late = max(s[1] for s in samples if s[0] >= 0.75 * end)
    return mid, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA), help="reference FASTA (default: %(default)s)")
    parser.add_argument("--counts", default="1000,10000", help="region counts (default: %(default)s)")
    parser.add_argument("--region-length", type=int, default=200)
    parser.add_argument("--span", default="chr17:42500000-43500000", help="regions fall in this 0-based span")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--batch-size", type=int, default=None, help="passed to the CLI (default: its own)")
    parser.add_argument("--strand", default=None, choices=["both", "forward"], help="passed to the CLI")
    parser.add_argument("--warmup", type=int, default=10,
                        help="regions in the unmeasured warm-up run (0: none)")
    parser.add_argument("--workdir", default=None,
                        help="keep BED and parquet files here (default: a temp dir)")
    parser.add_argument("--json", default=None, help="write all numbers to this JSON file")
    args = parser.parse_args()

    counts = [int(c) for c in args.counts.split(",") if c]
    contig, rest = args.span.split(":")
    lo, hi = (int(x.replace(",", "")) for x in rest.split("-"))
    if args.model:
        args.model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    args.fasta = str(Path(args.fasta).resolve())

    tmp = tempfile.TemporaryDirectory(prefix="mergedna_embed_memory_") if args.workdir is None else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"mergedna embed --backend {args.backend} --threads {args.threads}"
          + (f" --batch-size {args.batch_size}" if args.batch_size else "")
          + (f" --strand {args.strand}" if args.strand else "")
          + f" | model {args.model or '(shipped default)'} | {args.region_length} bp regions in {args.span} "
            f"(seed {args.seed}) | {os.cpu_count()} CPUs")
    print("peak RSS: ru_maxrss of the CLI process alone (getrusage(RUSAGE_CHILDREN) in a fresh wrapper per "
          "run); RSS mid / late: /proc samples at half the run and the top of its last quarter\n")
    print(f"  {'regions':>8}{'wall s':>9}{'regions/s':>11}{'bases/s':>10}{'CPU s':>8}{'peak RSS MB':>13}"
          f"{'RSS mid':>9}{'RSS late':>10}{'rows':>8}  check")

    results = []
    plan = ([("warm-up", args.warmup)] if args.warmup else []) + [("measured", c) for c in counts]
    for kind, count in plan:
        bed = workdir / f"regions_{count}.bed"
        out = workdir / f"embed_{count}.parquet"
        names = write_bed(bed, count, args.region_length, args.seed, contig, lo, hi)
        run = run_cli(args, bed, out)
        check = check_output(out, names)
        mid, late = rss_profile(run["rss_samples"])
        ok = check["rows"] == count and check["in_order"] and check["finite"]
        wall = run["wall_s"]
        row = {"kind": kind, "regions": count, "wall_s": wall, "regions_per_s": count / wall,
               "bases_per_s": count * args.region_length / wall, "cpu_s": run["user_s"] + run["sys_s"],
               "peak_rss_mb": run["peak_rss_mb"], "rss_mid_mb": mid, "rss_late_mb": late,
               "rss_samples": len(run["rss_samples"]), "output": check, "ok": ok, "command": run["command"]}
        results.append(row)
        label = str(count) if kind == "measured" else f"({count})"
        print(f"  {label:>8}{row['wall_s']:>9.1f}{row['regions_per_s']:>11.1f}{row['bases_per_s']:>10,.0f}"
              f"{row['cpu_s']:>8.1f}{row['peak_rss_mb']:>13.0f}{mid:>9.0f}{late:>10.0f}{check['rows']:>8}  "
              f"{'ok' if ok else 'FAILED'}" + ("  (warm-up, not measured)" if kind != "measured" else ""),
              flush=True)

    measured = [r for r in results if r["kind"] == "measured"]
    if len(measured) > 1:
        small, large = measured[0], measured[-1]
        growth = large["peak_rss_mb"] - small["peak_rss_mb"]
        print(f"\npeak RSS {small['peak_rss_mb']:.0f} MB at {small['regions']:,} regions -> "
              f"{large['peak_rss_mb']:.0f} MB at {large['regions']:,} ({growth:+.0f} MB, "
              f"{100 * growth / small['peak_rss_mb']:+.1f}%) for "
              f"{large['regions'] / small['regions']:.0f}x the regions; regions/s "
              f"{small['regions_per_s']:.1f} -> {large['regions_per_s']:.1f}")
        extra = large["wall_s"] - small["wall_s"]
        if extra > 0:  # start-up (imports, model load) cancels out
            marginal = (large["regions"] - small["regions"]) / extra
            print(f"marginal speed between the two: {marginal:.1f} regions/s (start-up excluded)")
    print(f"example command: {measured[-1]['command'] if measured else results[-1]['command']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": args.backend, "threads": args.threads,
                                               "model": args.model, "fasta": args.fasta,
                                               "region_length": args.region_length, "span": args.span,
                                               "seed": args.seed, "results": results}, indent=1))
        print(f"wrote {args.json}")
    if not all(r["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
