"""`mergedna evaluate`: metrics of a fine-tuned model on a labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import Backend, BackendChoice, BatchSize, Device, Quiet, Threads
from .threads import limit_threads


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Fine-tuned model directory (from `mergedna finetune`).")],
    input: Annotated[Path, typer.Option("--input", help="Labelled TSV/CSV, or BED with a label column (+ --fasta).")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON.")] = None,
    fasta: Annotated[Optional[Path], typer.Option("--fasta", help="Reference for a BED input.")] = None,
    sequence_column: Annotated[Optional[str], typer.Option("--sequence-column", help="Column with the sequences (TSV/CSV; default: the one the model was fine-tuned with).")] = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", help="Column with the labels: a name, or for a BED a 1-based number (default: the one the model was fine-tuned with).")] = None,
    backend: Backend = BackendChoice.auto,
    device: Device = "auto",
    batch_size: BatchSize = 64,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Accuracy, MCC, F1 and AUROC (classification) or Pearson, Spearman, MSE and R^2 (regression)."""
    limit_threads(threads)
    from rich.console import Console
    from rich.table import Table

    from ..pipelines.evaluate import EvaluateRequest, run
    from ..pipelines.progress import Logger

    metrics = run(EvaluateRequest(
        model=str(model), input=str(input), json_out=str(json_out) if json_out is not None else None,
        fasta=str(fasta) if fasta else None, sequence_column=sequence_column, label_column=label_column,
        backend=backend, device=device, batch_size=batch_size, threads=threads), Logger(quiet))
    table = Table(title=f"{model.name} on {input.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, "n/a" if value is None else (f"{value:,}" if isinstance(value, int) else f"{value:.4f}"))
    Console().print(table)
