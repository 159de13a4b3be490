#!/usr/bin/env python3
"""Training-step throughput and model FLOP utilisation, eager vs compiled, per preset.

    python benchmarks/gpu_train_speed.py --presets base,large --modes eager,blocks,step --json speed.json
    python benchmarks/gpu_train_speed.py --device cpu --presets tiny --batch 2 --steps 2 --peak-tflops 1

One step is what `mergedna pretrain` runs: the three passes under bf16 autocast (where the
hardware has it), backward, gradient clipping, AdamW (fused on CUDA). Windows are random A/C/G/T
ids made on the device, so the numbers leave data loading out (the device sampler costs about
one gather per step). Modes: eager; `blocks` and `step`, the two compile scopes of
`training/loop.py` (compile time is reported separately and not in the rate). Every mode runs at
the fixed compression 0.5 (training with the step scope compiles three such graphs).

Model FLOPs per base: torch.utils.flop_counter.FlopCounterMode over one training step (forward +
backward) on the benchmark's device, with attention forced onto the math SDPA kernel so that its
matmuls are counted on every device; only matmuls and attention count (not elementwise work,
merging or the optimizer). Utilisation = FLOPs per base x bases/s / peak (`--peak-tflops`; default
790 on CUDA, the bf16 dense matmul rate measured on an H200 here, and required on CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mergedna_cli.model import MergeDNA, MergeDNAConfig, pretraining_losses  # noqa: E402
from mergedna_cli.training.loop import (PretrainObjective, PretrainSettings, compile_objective,  # noqa: E402
                                        fit_batch, make_optimizer, use_bf16)

H200_BF16_TFLOPS = 790.0  # 8192^3 bf16 matmul on random data, measured on a lent H200 (device notes)


def random_ids(batch: int, context: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 4, (batch, context), device=device, generator=generator)


def flops_per_base(model: MergeDNA, context: int, device: torch.device, batch: int) -> float:
    """Matmul + attention FLOPs of one forward + backward of the three passes, per base."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ids = random_ids(batch, context, device, torch.Generator(device).manual_seed(0))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        pretraining_losses(model, ids, 0.5).total.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / (batch * context)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, mode: str, args, device: torch.device) -> dict:
    cfg = MergeDNAConfig.preset(preset, **({"context": args.context} if args.context else {}))
    torch.manual_seed(0)
    model = MergeDNA(cfg).to(device).train()
    settings = PretrainSettings(precision=args.precision)
    optimizer = make_optimizer(model, settings)
    batch = args.batch or fit_batch(model, device, use_bf16(settings, device))
    row = {"preset": preset, "mode": mode, "params": sum(p.numel() for p in model.parameters()),
           "context": cfg.context, "batch": batch, "device": str(device),
           "bf16": use_bf16(settings, device)}
    row["flops_per_base"] = flops_per_base(model, cfg.context, device, min(batch, args.flop_batch))
    objective = PretrainObjective(model)
    if mode != "eager":
        objective = compile_objective(objective, model, mode)
    gen = torch.Generator(device).manual_seed(1)

    def step() -> torch.Tensor:
        ids = random_ids(batch, cfg.context, device, gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=row["bf16"]):
            losses = objective(ids, 0.5, None)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        return losses.total.detach()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):  # compiles (compiled modes) and settles the allocator
        step()
    sync(device)
    row["warmup_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - t0
    row["loss"] = round(float(loss), 4)
    row["step_seconds"] = round(seconds / args.steps, 5)
    row["bases_per_s"] = round(args.steps * batch * cfg.context / seconds, 1)
    row["model_tflops"] = round(row["flops_per_base"] * row["bases_per_s"] / 1e12, 3)
    row["utilisation"] = round(row["model_tflops"] / args.peak_tflops, 5)
    if device.type == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="tiny,small,base,large")
    ap.add_argument("--modes", default="eager,blocks,step", help="eager, blocks, step (compile scopes)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, help="windows per step (default on CUDA: training.loop.fit_batch, "
                    "the largest power of two whose activations fill 45%% of the memory, at most 512 k bases; 2 on CPU)")
    ap.add_argument("--runs", help="PRESET:MODE pairs in this order (instead of presets x modes)")
    ap.add_argument("--context", type=int, help="override every preset's context")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiles)")
    ap.add_argument("--flop-batch", type=int, default=4, help="windows in the FLOP-counting step")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--peak-tflops", type=float, help="the chip's peak (default 790 on CUDA, the H200's bf16)")
    ap.add_argument("--max-seconds", type=float, default=0, help="skip the remaining runs after this long")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    if args.peak_tflops is None:
        if device.type != "cuda":
            ap.error("--peak-tflops is required off CUDA")
        args.peak_tflops = H200_BF16_TFLOPS
    started = time.perf_counter()
    rows: list[dict] = []
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "peak_tflops": args.peak_tflops, "steps": args.steps,
            "warmup": args.warmup}
    print(f"{'preset':<7}{'mode':<7}{'params':>9}{'batch':>6}{'MFLOP/base':>11}{'warm-up s':>10}"
          f"{'bases/s':>13}{'TFLOP/s':>9}{'util':>7}", flush=True)
    runs = ([tuple(r.split(":")) for r in args.runs.split(",")] if args.runs else
            [(p, m) for p in args.presets.split(",") for m in args.modes.split(",")])
    for preset, mode in runs:
        if args.max_seconds and time.perf_counter() - started > args.max_seconds:
            rows.append({"preset": preset, "mode": mode, "skipped": "out of --max-seconds"})
            print(f"{preset:<7}{mode:<7} skipped (--max-seconds)", flush=True)
            continue
        try:
            row = measure(preset, mode, args, device)
        except torch.cuda.OutOfMemoryError as exc:
            row = {"preset": preset, "mode": mode, "error": f"out of memory: {str(exc)[:200]}"}
            torch.cuda.empty_cache()
        except Exception as exc:  # a failing mode (e.g. a compiler error) must not hide the others
            row = {"preset": preset, "mode": mode, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        if "error" in row:
            print(f"{preset:<7}{mode:<7} {row['error']}", flush=True)
        else:
            print(f"{preset:<7}{mode:<7}{row['params'] / 1e6:>8.2f}M{row['batch']:>6}"
                  f"{row['flops_per_base'] / 1e6:>11.1f}{row['warmup_seconds']:>10.1f}"
                  f"{row['bases_per_s']:>13,.0f}{row['model_tflops']:>9.2f}{row['utilisation']:>7.1%}",
                  flush=True)
        rows.append(row)
        if args.json_out:  # after every run: a run killed at a time cap keeps the rows before it
            Path(args.json_out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(json.dumps(meta))
    return rows


if __name__ == "__main__":
    main()
