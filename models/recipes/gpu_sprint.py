#!/usr/bin/env python3
"""Pre-train on one lent GPU inside a fixed wall-clock budget (how the GPU-trained weights were made).

Runs several `mergedna pretrain` jobs side by side on the one GPU (each is launch-bound at these
model sizes, so they share it well). A short probe of every job, run concurrently, measures its
throughput; the real runs then get the number of steps that fits the remaining budget, so their
cosine schedules finish instead of being cut off. `timeout -s INT` is the safety net: on SIGINT
pretrain checkpoints and writes the model before exiting. Each finished run directory (without
its corpus cache, with only its latest checkpoint) is packed into OUT/<job>.tar.

  python models/recipes/gpu_sprint.py --data DATA_DIR --work /tmp/sprint --out "$OUT" --budget 420
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = ["arabidopsis_TAIR10_chr1.fa.gz", "celegans_first1pct_each_chromosome.fa.gz",
         "drosophila_dm6_chr4.fa.gz", "ecoli_K12_MG1655.fa.gz", "yeast_R64_chrI.fa.gz",
         "human_GRCh38_chr17_42425000-43600000.fa.gz", "human_GRCh38_chr2_1-2333275.fa.gz",
         "human_GRCh38_chr22_20000001-21000000.fa.gz"]
HELD_OUT = "human_GRCh37_chr20_1Mb_vg1kgp.fa.gz"

# name -> (how the model starts, batch size per step, peak lr, warm-up steps)
JOBS = {
    "small": (["--init-from", str(HERE.parent / "mergedna-small")], 256, 1e-3, 100),
    "base": (["--preset", "base"], 256, 2e-3, 200),
    # a second lease: continue the first lease's base model (its run directory under --data)
    "base-continued": (["--init-from", "{data}/mergedna-base"], 256, 1e-3, 50),
}
SEEDS = {"base-continued": 2}  # new windows, not the first lease's again


DEVICE, BATCH = "cuda", None  # --device / --batch (a CPU dry run of this script)


def pretrain_cmd(data: Path, job: str, out: Path, steps: int, extra: list[str]) -> list[str]:
    start, batch, lr, warmup = JOBS[job]
    batch = BATCH or batch
    cmd = [sys.executable, "-m", "mergedna_cli", "pretrain", "--device", DEVICE, "--precision", "fp32",
           "--weight", "human_*=10", "--exclude", str(HERE / "exclude_brca1_locus.bed"),
           "--val-fasta", str(data / HELD_OUT), "--val-windows", "128", "--batch-size", str(batch),
           "--lr", str(lr), "--warmup", str(min(warmup, steps // 4)), "--steps", str(steps),
           "--seed", str(SEEDS.get(job, 1)), "-o", str(out), "--quiet", *[a.replace("{data}", str(data)) for a in start], *extra]
    for name in TRAIN:
        cmd += ["--fasta", str(data / name)]
    return cmd


def run_all(cmds: dict[str, list[str]], limit: float, logs: Path) -> dict[str, int]:
    """Start every command at once (each under `timeout -s INT limit`), wait for all; exit codes."""
    with contextlib.ExitStack() as stack:
        procs = {job: subprocess.Popen(["timeout", "-s", "INT", "-k", "30", str(int(limit)), *cmd],
                                       stdout=stack.enter_context(open(logs / f"{job}.out", "a")),
                                       stderr=subprocess.STDOUT)
                 for job, cmd in cmds.items()}
        return {job: proc.wait() for job, proc in procs.items()}


def throughput(metrics: Path) -> float:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if '"bases_per_s"' in line]
    steady = rows[1:] or rows  # the first row includes CUDA start-up
    return sum(r["bases_per_s"] for r in steady) / len(steady)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pack(run_dir: Path, tar_path: Path, max_bytes: int = 15 << 20) -> None:
    """The run directory; its latest checkpoint only where the tar stays under the 16 MB that a
    lent machine hands back per file (a larger model comes back without its optimizer state)."""
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    kept = [p for p in sorted(run_dir.iterdir()) if p.name not in ("corpus_cache", "checkpoints")]
    with tarfile.open(tar_path, "w") as tar:
        for path in kept:
            tar.add(path, arcname=f"{run_dir.name}/{path.name}")
        if checkpoints and sum(map(du, kept)) + du(checkpoints[-1]) < max_bytes:
            tar.add(checkpoints[-1], arcname=f"{run_dir.name}/checkpoints/{checkpoints[-1].name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder holding the FASTA files")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, required=True, help="wall seconds for everything")
    ap.add_argument("--jobs", default=",".join(JOBS))
    ap.add_argument("--probe-steps", type=int, default=40)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, help="override every job's batch size (dry runs)")
    args = ap.parse_args()
    global DEVICE, BATCH
    DEVICE, BATCH = args.device, args.batch
    deadline = time.time() + args.budget
    jobs = args.jobs.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    probe = {job: pretrain_cmd(args.data, job, args.work / f"probe-{job}", args.probe_steps,
                               ["--log-every", "5", "--val-every", "100000", "--checkpoint-every", "100000",
                                "--cache-dir", str(args.work / "cache" / job)]) for job in jobs}
    codes = run_all(probe, deadline - time.time(), args.work)
    rates = {}
    for job in jobs:
        metrics = args.work / f"probe-{job}" / "metrics.jsonl"
        if codes[job] != 0 or not metrics.is_file():
            print(f"probe {job} failed (exit {codes[job]}):\n" + (args.work / f"{job}.out").read_text()[-3000:])
            continue
        rates[job] = throughput(metrics)
        print(f"probe {job}: {rates[job]:,.0f} bases/s with {len(jobs)} jobs sharing the GPU", flush=True)
    if not rates:
        sys.exit(1)

    train_seconds = deadline - time.time() - 60  # start-up, validation, checkpoints, packing
    runs = {}
    for job, rate in rates.items():
        batch = BATCH or JOBS[job][1]
        steps = max(10, int(0.85 * rate * train_seconds / (batch * 512)))
        print(f"{job}: {steps} steps of {batch} x 512 bases (~{steps * batch * 512 / 1e6:,.0f} M bases)", flush=True)
        runs[job] = pretrain_cmd(args.data, job, args.work / f"mergedna-{job}", steps,
                                 ["--log-every", "25", "--val-every", str(max(50, steps // 12)),
                                  "--checkpoint-every", str(max(50, steps // 6)),
                                  "--cache-dir", str(args.work / "cache" / job)])
    codes = run_all(runs, deadline - time.time() - 25, args.work)
    for job, code in codes.items():
        run_dir = args.work / f"mergedna-{job}"
        print(f"{job}: exit {code}", flush=True)
        print((args.work / f"{job}.out").read_text()[-1500:])
        if (run_dir / "model.safetensors").is_file():
            pack(run_dir, args.out / f"{job}.tar")
            metrics = run_dir / "metrics.jsonl"
            rows = metrics.read_text().splitlines() if metrics.is_file() else []
            print("\n".join(row for row in rows if "val_masked_ce" in row))
            print("last:", ([row for row in rows if "bases_per_s" in row] or ["none"])[-1], flush=True)
    shutil.copy(args.work / f"{jobs[0]}.out", args.out / "first_job.log")


if __name__ == "__main__":
    main()
