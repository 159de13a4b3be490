"""`mergedna finetune`: train a classification or regression head (and the encoder) on labelled sequences."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..pipelines.choices import Balance, Task
from .app import app
from .options import Device, Model, Quiet, Threads
from .threads import limit_threads


class _EpochBar:
    """A rich bar over one epoch's steps when stderr is a terminal; nothing otherwise."""

    def __init__(self, quiet: bool):
        self.progress = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from ..pipelines.progress import stderr_console
            self.progress = Progress(TextColumn("finetune"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                                     console=stderr_console(), transient=True)
            self.task = self.progress.add_task("epoch", total=1, loss=0.0)

    def __call__(self, done: int, total: int, loss: float) -> None:
        if self.progress is not None:
            if done == 1:
                self.progress.reset(self.task, total=total)
                self.progress.start()
            self.progress.update(self.task, completed=done, loss=loss)
            if done == total:
                self.progress.stop()


@app.command()
def finetune(
    train: Annotated[Path, typer.Option("--train", help="Training set: TSV/CSV with sequence and label columns, or BED (+ --fasta).")],
    val: Annotated[Path, typer.Option("--val", help="Validation set (same layout); used for early stopping and model selection only.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Fine-tuned model directory to create.")],
    model: Model = None,
    task: Annotated[Task, typer.Option(help="classification or regression.")] = Task.classification,
    fasta: Annotated[Optional[Path], typer.Option("--fasta", help="Reference for BED inputs.")] = None,
    sequence_column: Annotated[str, typer.Option(help="Column with the sequences (TSV/CSV).")] = "sequence",
    label_column: Annotated[str, typer.Option(help="Column with the labels: a name, or for a BED a 1-based number (default: column 4).")] = "label",
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = 10,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 5e-4,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per step (per process).")] = 32,
    warmup: Annotated[float, typer.Option(min=0.0, max=1.0, help="Warm-up as a fraction of all steps, then cosine decay.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.01,
    patience: Annotated[int, typer.Option(min=1, help="Stop after this many epochs without a better validation score.")] = 3,
    freeze_encoder: Annotated[bool, typer.Option("--freeze-encoder/--full", help="Train the head only (embeddings computed once), or the encoder too (default).")] = False,
    balance: Annotated[Balance, typer.Option(help="Skewed classes: weights (loss weights), sampling (balanced batches) or none.")] = Balance.weights,
    rc_augment: Annotated[bool, typer.Option("--rc-augment", help="Labels do not depend on strand (e.g. enhancers): train on a random strand per sequence; validation and predict average both strands.")] = False,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden units of the head.")] = 128,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Dropout in the head.")] = 0.1,
    seed: Annotated[int, typer.Option()] = 0,
    device: Device = "auto",
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Fine-tune a pretrained MergeDNA on labelled sequences; the best validation epoch is kept."""
    limit_threads(threads)
    from ..finetune.loop import FinetuneSettings
    from ..pipelines.finetune import FinetuneRequest, run
    from ..pipelines.progress import Logger

    log = Logger(quiet)
    settings = FinetuneSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                warmup=warmup, patience=patience, freeze_encoder=freeze_encoder,
                                balance=Balance(balance).value, seed=seed, rc_augment=rc_augment)
    summary = run(FinetuneRequest(
        train=str(train), val=str(val), out=str(out), settings=settings, model=model, task=task,
        fasta=str(fasta) if fasta else None, sequence_column=sequence_column, label_column=label_column,
        hidden=hidden, dropout=dropout, device=device, threads=threads), log=log.info, on_step=_EpochBar(quiet),
        warn=log.warning)
    best = summary["best"]
    shown = ", ".join(f"{k[4:]} {v:.4f}" for k, v in best.items()
                      if k.startswith("val_") and isinstance(v, float))
    log.info(f"best epoch {best['epoch']} of {summary['epochs_run']}: {shown}; "
             f"{summary['train_seconds']:.1f} s training; model in {out}")
