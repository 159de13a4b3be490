#!/usr/bin/env python3
"""One lent-GPU command: speed benchmark, a `large` pre-training run that fits its wall-clock
budget, held-out chr20 evaluation, zero-shot (when the harness is there), bf16 sharded weights.

    python models/recipes/fill_gpudata.py                      # here, once: data -> .gpudata/
    # on the device (carry [".gpudata"]):
    PYTHONUNBUFFERED=1 python models/recipes/gpu_sprint_large.py --data .gpudata --link-shared --out "$OUT" --budget 500

Order and time (budget B seconds from the script's start): (1) benchmarks/gpu_train_speed.py on
`base` and the trained preset, capped at --bench-seconds; (2) `mergedna pretrain` with
--time-budget, so the loop measures its step time during warm-up and sets the step count that
finishes the cosine schedule before the time left minus what evaluation and packing need;
`timeout -s INT` is the safety net (pretrain checkpoints and saves on SIGINT); (3) held-out
masked-base accuracy / CE on human chr20 (the protocol of benchmarks/pretrain_eval.py: all
windows, spacing 32, 4 phases, margin 16, forward and both strands); (4) benchmarks/zero_shot.py
--model DIR --json, if present (failures are logged, not fatal); (5) $OUT gets at most 8 files:
the weights as bf16 safetensors shards < 16 MiB (model-0000i-of-0000K.safetensors) and run.tar
(config.json, model.safetensors.index.json, training.json, metrics.jsonl, evaluation and speed
JSON, logs). Shards + index + config.json form a model directory that `load_model` reads
(into fp32) and that a later lease continues with `mergedna pretrain --init-from DIR`.

The AdamW state (2 x 55 MB in fp32) does not fit what a lease returns, so --init-from (a new
optimizer and schedule) is how the model continues.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

# the layout of ../shared/data (and of .gpudata)
TRAIN = ["pretrain_corpus/arabidopsis_TAIR10_chr1.fa.gz", "pretrain_corpus/celegans_first1pct_each_chromosome.fa.gz",
         "pretrain_corpus/drosophila_dm6_chr4.fa.gz", "pretrain_corpus/ecoli_K12_MG1655.fa.gz",
         "pretrain_corpus/yeast_R64_chrI.fa.gz", "pretrain_corpus/human_GRCh38_chr17_42425000-43600000.fa.gz",
         "pretrain_human_extra/human_GRCh38_chr2_1-2333275.fa.gz",
         "pretrain_human_extra/human_GRCh38_chr22_20000001-21000000.fa.gz",
         # GRCh37 pieces of chr1, chr14, chr19, chr21 and a chicken piece: neither chr20 nor chr17
         # (headers and 32-mer overlap checked by models/recipes/check_training_overlap.py)
         "pretrain_human_more/human_GRCh37_chr1_1-1499950.fa.gz",
         "pretrain_human_more/human_GRCh37_chr14_22000000-23110000_TCRA.fa.gz",
         "pretrain_human_more/human_GRCh37_chr19_1-3119000.fa.gz",
         "pretrain_human_more/human_GRCh37_chr21_10000001-10200000.fa.gz",
         "pretrain_vertebrate_extra/chicken_Galgal4_chr1_48849500-49020500.fa.gz"]
HELD_OUT = "pretrain_corpus/human_GRCh37_chr20_1Mb_vg1kgp.fa.gz"
SHARD_BYTES = 15 << 20
# fractions of --budget kept for what follows training, and for pretrain's start (imports, corpus)
RESERVE = {"eval": 0.09, "zero_shot": 0.1, "pack": 0.03, "startup": 0.08}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pretrain_cmd(args, run_dir: Path, time_budget: float) -> list[str]:
    cmd = [sys.executable, "-m", "mergedna_cli", "pretrain", "--device", args.device, "--precision", "auto",
           "--weight", "human_*=10", "--exclude", str(HERE / "exclude_brca1_locus.bed"),
           "--val-fasta", str(args.data / HELD_OUT), "--val-windows", "64",
           "--batch-size", str(args.batch), "--lr", str(args.lr), "--warmup", str(args.warmup),
           "--steps", "1000000", "--time-budget", f"{time_budget:.0f}",
           "--repeat-weight", str(args.repeat_weight), "--seed", str(args.seed),
           "--log-every", str(args.log_every), "--val-every", str(args.val_every),
           "--checkpoint-every", str(args.val_every * 4), "--cache-dir", str(args.work / "cache"),
           "-o", str(run_dir), "--quiet"]
    cmd += ["--compile", "--compile-scope", args.compile_scope] if args.compile_scope != "off" else ["--no-compile"]
    cmd += ["--init-from", str(args.init_from)] if args.init_from else ["--preset", args.preset]
    if args.context:
        cmd += ["--context", str(args.context)]
    for name in TRAIN:
        cmd += ["--fasta", str(args.data / name)]
    return cmd


def held_out_eval(model_dir: Path, data: Path, device: str, max_windows: int) -> dict:
    """benchmarks/pretrain_eval.py's model half (same functions and defaults), without pysam."""
    import numpy as np

    from mergedna_cli.alphabet import encode
    from mergedna_cli.model import load_model
    from mergedna_cli.training.corpus import fasta_records
    from mergedna_cli.training.evaluation import held_out_windows, masked_base_eval

    model = load_model(model_dir, device=device)
    ids = np.concatenate([encode(seq) for _, seq in fasta_records(data / HELD_OUT)])
    windows = held_out_windows(ids, model.config.context, max_windows)
    result = {"heldout": HELD_OUT, "context": model.config.context, "windows": int(len(windows)),
              "spacing": 32, "phases": 4, "margin": 16}
    for mode in ("forward", "both"):
        t0 = time.time()
        ev = masked_base_eval(model, windows, 32, 4, 16, batch_size=128, both_strands=mode == "both")
        result["model" if mode == "forward" else "model_both_strands"] = {
            "accuracy": ev.accuracy, "cross_entropy": ev.cross_entropy, "bases": ev.n_bases,
            "seconds": round(time.time() - t0, 1)}
        log(f"held-out chr20 ({mode}): accuracy {ev.accuracy:.4f}, CE {ev.cross_entropy:.4f} nats "
            f"over {ev.n_bases:,} bases")
    return result


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def choose_scope(speed_json: Path, preset: str, seconds_left: float) -> str:
    """The compile scope that trains the most bases in the time left, by the benchmark's rows for
    `preset` (rate x (time left - compile time); the step scope compiles three graphs): blocks
    when the benchmark measured nothing for it."""
    try:
        rows = json.loads(speed_json.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return "blocks"
    best, best_bases = None, 0.0
    for row in rows:
        if row.get("preset") != preset or "bases_per_s" not in row:
            continue
        compile_seconds = row["warmup_seconds"] * (3 if row["mode"] == "step" else 1)
        bases = row["bases_per_s"] * max(0.0, 0.6 * seconds_left - compile_seconds)
        if bases > best_bases:
            best, best_bases = row["mode"], bases
    return {"eager": "off", None: "blocks"}.get(best, best)


def auto_batch(args) -> int:
    import torch

    from mergedna_cli.model import MergeDNA, MergeDNAConfig, load_model
    from mergedna_cli.training.loop import fit_batch

    device = torch.device(args.device)
    if args.init_from:
        model = load_model(args.init_from, device=device)
    else:
        model = MergeDNA(MergeDNAConfig.preset(args.preset, **({"context": args.context} if args.context else {})))
    model = model.to(device).train()
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    batch = fit_batch(model, device, bf16)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return batch


def export_bf16(run_dir: Path, export_dir: Path) -> list[Path]:
    from mergedna_cli.model import load_model
    from mergedna_cli.model.files import weight_files, weights_sha256
    from mergedna_cli.model.serialization import save_model

    model = load_model(run_dir)
    save_model(model, export_dir, dtype=__import__("torch").bfloat16, max_shard_bytes=SHARD_BYTES)
    shards = weight_files(export_dir)
    log(f"bf16 weights: {len(shards)} shards, sha256 {weights_sha256(export_dir)}")
    return shards


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder in the layout of shared/data (.gpudata)")
    ap.add_argument("--out", type=Path, required=True, help="$OUT: at most 8 files come back")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sprint"))
    ap.add_argument("--budget", type=float, required=True, help="wall seconds for the whole script")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="large")
    ap.add_argument("--init-from", type=Path, help="continue this model directory (a new stage)")
    ap.add_argument("--context", type=int)
    ap.add_argument("--batch", type=int, help="windows per step (default: training.loop.fit_batch on the "
                    "device: 128 x 1024 bases for large on an H200 by the CPU estimate of its activations)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat-weight", type=float, default=1.0)
    ap.add_argument("--compile-scope", default="auto", choices=["auto", "blocks", "step", "off"],
                    help="auto: by the speed benchmark's rows for --preset (blocks without them)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--val-every", type=int, default=150)
    ap.add_argument("--bench-seconds", type=float, default=100, help="0: no speed benchmark")
    ap.add_argument("--bench-args", default="--runs large:blocks,base:blocks,large:eager,base:eager,base:step,large:step "
                    "--steps 8 --warmup 2",
                    help="arguments of benchmarks/gpu_train_speed.py")
    ap.add_argument("--eval-windows", type=int, default=100000, help="held-out windows (default: all)")
    ap.add_argument("--skip-zero-shot", action="store_true")
    ap.add_argument("--link-shared", action="store_true",
                    help="link ../shared/data to --data where it does not exist (the device machine)")
    args = ap.parse_args(argv)
    deadline = time.time() + args.budget
    args.data, args.work = args.data.resolve(), args.work.resolve()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    shared = REPO.parent / "shared" / "data"  # the benchmarks' default paths, on a machine without ../shared
    if args.link_shared and not shared.exists():
        shared.parent.mkdir(parents=True, exist_ok=True)
        shared.symlink_to(args.data)
    summary: dict = {"argv": sys.argv[1:], "budget": args.budget}
    reserve = {k: v * args.budget for k, v in RESERVE.items()}
    zero_shot = REPO / "benchmarks" / "zero_shot.py"
    if not args.skip_zero_shot and (not zero_shot.is_file() or not importable("pysam")):
        log("zero-shot skipped: benchmarks/zero_shot.py reads VCFs through pysam, which this machine "
            "lacks (or the harness is absent); run it on the returned weights elsewhere")
        args.skip_zero_shot = True
    if args.batch is None:
        args.batch = auto_batch(args)
    log(f"batch {args.batch} windows per step")

    # 1. speed benchmark (subprocess, killed at its cap)
    if args.bench_seconds > 0:
        t0 = time.time()
        cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_train_speed.py"), "--device", args.device,
               "--max-seconds", str(0.6 * args.bench_seconds), "--json", str(args.work / "speed.json"),
               *args.bench_args.split()]
        with open(args.work / "speed.log", "w") as handle:
            try:
                code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                                      timeout=args.bench_seconds).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        summary["speed"] = {"exit": code, "seconds": round(time.time() - t0, 1)}
        log(f"speed benchmark: exit {code} in {time.time() - t0:.0f} s\n" + (args.work / "speed.log").read_text()[-3000:])

    if args.compile_scope == "auto":
        args.compile_scope = choose_scope(args.work / "speed.json", args.preset, deadline - time.time())
        log(f"compile scope: {args.compile_scope}")

    # 2. training inside the time left
    after = reserve["eval"] + reserve["pack"] + (0 if args.skip_zero_shot else reserve["zero_shot"])
    train_seconds = deadline - time.time() - after - reserve["startup"]
    run_dir = args.work / f"mergedna-{args.preset}"
    cmd = pretrain_cmd(args, run_dir, max(10.0, train_seconds))
    limit = max(30, int(deadline - time.time() - after))
    log(f"pretrain: time budget {train_seconds:.0f} s for the steps, hard limit {limit} s\n  {' '.join(cmd)}")
    t0 = time.time()
    with open(args.work / "pretrain.log", "w") as handle:
        code = subprocess.run(["timeout", "-s", "INT", "-k", "20", str(limit), *cmd],
                              stdout=handle, stderr=subprocess.STDOUT, cwd=REPO).returncode
    summary["pretrain"] = {"exit": code, "seconds": round(time.time() - t0, 1), "compile_scope": args.compile_scope}
    log(f"pretrain: exit {code} in {time.time() - t0:.0f} s\n" + (args.work / "pretrain.log").read_text()[-2000:])
    fallback_seconds = deadline - time.time() - after - reserve["startup"]
    if not (run_dir / "config.json").is_file() and args.compile_scope != "off" and fallback_seconds > 60:
        log(f"pretrain wrote no model; again without compile, {fallback_seconds:.0f} s for the steps")
        args.compile_scope = "off"
        shutil.move(args.work / "pretrain.log", args.work / "pretrain-failed.log")
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = pretrain_cmd(args, run_dir, fallback_seconds)
        limit = max(30, int(deadline - time.time() - after))
        with open(args.work / "pretrain.log", "w") as handle:
            code = subprocess.run(["timeout", "-s", "INT", "-k", "20", str(limit), *cmd],
                                  stdout=handle, stderr=subprocess.STDOUT, cwd=REPO).returncode
        summary["pretrain_fallback"] = {"exit": code, "compile_scope": "off"}
        log(f"pretrain (no compile): exit {code}\n" + (args.work / "pretrain.log").read_text()[-2000:])
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        for row in rows:
            if "val_masked_ce" in row:
                log(f"  validation {row}")
        train_rows = [r for r in rows if "bases_per_s" in r]
        if train_rows:
            log(f"  last: {train_rows[-1]}")
            steady = train_rows[1:] or train_rows
            summary["train_bases_per_s"] = round(sum(r["bases_per_s"] for r in steady) / len(steady))
    if not (run_dir / "config.json").is_file():
        log("no model was written")
        shutil.copy(args.work / "pretrain.log", args.out / "pretrain.log")
        return 1
    if (run_dir / "training.json").is_file():
        summary["training"] = json.loads((run_dir / "training.json").read_text())

    # 3. held-out chr20
    try:
        summary["evaluation"] = held_out_eval(run_dir, args.data, args.device, args.eval_windows)
        (args.work / "evaluation.json").write_text(json.dumps(summary["evaluation"], indent=1) + "\n")
    except Exception as exc:  # a failed evaluation must not lose the weights
        log(f"held-out evaluation failed: {exc!r}")

    # 4. zero-shot harness, when present and time allows
    left = deadline - time.time() - reserve["pack"]
    if not args.skip_zero_shot and zero_shot.is_file() and left > 20:
        cmd = [sys.executable, str(zero_shot), "--model", str(run_dir), "--json",
               str(args.work / "zero_shot.json"), "--skip-kmer", "--device", args.device]
        t0 = time.time()
        with open(args.work / "zero_shot.log", "w") as handle:
            try:
                code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                                      timeout=left).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        summary["zero_shot"] = {"exit": code, "seconds": round(time.time() - t0, 1)}
        log(f"zero-shot: exit {code}\n" + (args.work / "zero_shot.log").read_text()[-1500:])

    # 5. pack: shards as files, everything else in run.tar
    export = args.work / "export"
    shards = export_bf16(run_dir, export)
    summary["weights_sha256_bf16"] = __import__("mergedna_cli.model.files", fromlist=["x"]).weights_sha256(export)
    (args.work / "sprint.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    for shard in shards:
        shutil.copy(shard, args.out / shard.name)
    with tarfile.open(args.out / "run.tar", "w") as tar:
        for path in [export / "config.json", export / "model.safetensors.index.json",
                     run_dir / "training.json", run_dir / "metrics.jsonl", args.work / "sprint.json",
                     *[args.work / n for n in ("evaluation.json", "speed.json", "zero_shot.json",
                                               "speed.log", "pretrain.log", "zero_shot.log")]]:
            if path.is_file():
                tar.add(path, arcname=path.name)
    sizes = {p.name: p.stat().st_size for p in args.out.iterdir()}
    log(f"$OUT: {sizes}")
    too_big = [n for n, s in sizes.items() if s >= 16 << 20]
    if too_big or len(sizes) > 7:
        log(f"warning: {too_big or 'too many files'} will not come back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
