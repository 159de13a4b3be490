"""`mergedna pretrain`: train a MergeDNA model on FASTA genomes (single process or torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..pipelines.choices import CompileScope, Precision, Preset, Sampler
from .app import app
from .options import Device, Quiet, Threads


@app.command()
def pretrain(
    fasta: Annotated[list[Path], typer.Option("--fasta", help="Training FASTA (plain, gzip or bgzip); repeat for more.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Model directory to write (weights, checkpoints, metrics).")],
    preset: Annotated[Optional[Preset], typer.Option(help="Model size: tiny, small (default), base, large or paper. With --resume the checkpoint's model is used; a different one is an error.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Model config JSON (overrides --preset).")] = None,
    context: Annotated[Optional[int], typer.Option(min=64, help="Window length in bases (default: the preset's).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per step (per process).")] = 16,
    steps: Annotated[int, typer.Option(min=1, help="Total optimizer steps (with --resume: the new total).")] = 10_000,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1.5e-3,
    warmup: Annotated[int, typer.Option(min=0, help="Linear warm-up steps, then cosine decay.")] = 300,
    min_lr_ratio: Annotated[float, typer.Option(help="Final lr as a fraction of the peak.")] = 0.1,
    weight_decay: Annotated[float, typer.Option()] = 0.01,
    seed: Annotated[int, typer.Option()] = 0,
    weight: Annotated[Optional[list[str]], typer.Option(help="Sampling weight per file name, GLOB=W (e.g. 'human_*=10').")] = None,
    val_fasta: Annotated[Optional[Path], typer.Option(help="Held-out FASTA for validation.")] = None,
    val_bed: Annotated[Optional[Path], typer.Option(help="Held-out regions of the training FASTA (excluded from training).")] = None,
    val_windows: Annotated[int, typer.Option(min=1, help="Validation windows.")] = 64,
    val_every: Annotated[int, typer.Option(min=1)] = 250,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = 250,
    log_every: Annotated[int, typer.Option(min=1, help="Steps per metrics row.")] = 10,
    exclude: Annotated[Optional[list[Path]], typer.Option(help="BED of regions never trained on; repeatable.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in -o.")] = False,
    init_from: Annotated[Optional[Path], typer.Option(help="Start from this model directory's weights and config (a new optimizer and schedule; e.g. continued pre-training on a GPU).")] = None,
    precision: Annotated[Precision, typer.Option(help="auto, fp32 or bf16.")] = Precision.auto,
    repeat_weight: Annotated[float, typer.Option(min=0.0, help="Loss weight of lower-case (soft-masked repeat) bases in all three losses; 1 = no down-weighting (GPN uses 0.1).")] = 1.0,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the training step (default: on for CUDA, off on CPU).")] = None,
    compile_scope: Annotated[CompileScope, typer.Option(help="With --compile: step (the whole three-pass step, one graph per compression) or blocks (each transformer block; faster to compile).")] = CompileScope.step,
    sampler: Annotated[Sampler, typer.Option(help="Where windows are drawn: auto (device on CUDA), host or device.")] = Sampler.auto,
    time_budget: Annotated[float, typer.Option(min=0.0, help="Wall seconds for the training steps: the step time measured during warm-up sets --steps so the cosine schedule completes (0: off).")] = 0.0,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where the encoded corpus is cached (default: OUT/corpus_cache).")] = None,
    device: Device = "auto",
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Pre-train MergeDNA (MTR + latent MTR + AMTM). Runs under `torchrun` for several processes."""
    from ..pipelines.pretrain import PretrainRequest, run
    from ..training.loop import PretrainSettings

    settings = PretrainSettings(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup,
                                min_lr_ratio=min_lr_ratio, weight_decay=weight_decay, seed=seed,
                                val_every=val_every, checkpoint_every=checkpoint_every, log_every=log_every,
                                precision=Precision(precision).value, repeat_weight=repeat_weight,
                                compile=compile, compile_scope=CompileScope(compile_scope).value,
                                sampler=Sampler(sampler).value, time_budget=time_budget)
    run(PretrainRequest(
        fasta=tuple(str(p) for p in fasta), out=str(out), settings=settings, preset=preset,
        config=str(config) if config is not None else None, context=context, weights=tuple(weight or ()),
        val_fasta=str(val_fasta) if val_fasta else None, val_bed=str(val_bed) if val_bed else None,
        val_windows=val_windows, exclude_bed=tuple(str(p) for p in exclude or ()), resume=resume,
        init_from=str(init_from) if init_from else None, cache_dir=str(cache_dir) if cache_dir else None,
        device=device, threads=threads, quiet=quiet))
