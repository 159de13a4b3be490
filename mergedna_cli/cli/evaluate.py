"""`mergedna evaluate`: metrics of a fine-tuned model on a labelled set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..atomic import atomic_write
from .app import app
from .threads import limit_threads
from .options import Backend, BackendChoice, BatchSize, Debug, Device, Quiet, Threads
from .paths import check_not_input, check_output


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
    debug: Debug = False,
) -> None:
    """Accuracy, MCC, F1 and AUROC (classification) or Pearson, Spearman, MSE and R^2 (regression)."""
    limit_threads(threads)
    from rich.console import Console
    from rich.table import Table

    from ..finetune.predictor import Predictor
    from ..pipelines.predict import read_input, run_evaluate
    from ..pipelines.progress import Logger

    if json_out is not None:
        check_output(json_out)
        check_not_input(json_out, input, "--input")
    log = Logger(quiet)
    predictor = Predictor(model, backend, device, threads, log=log.info)
    data = read_input(str(input), predictor, str(fasta) if fasta else None, need_labels=True,
                      sequence_column=sequence_column, label_column=label_column)
    with log.counter("sequences") as tick:
        metrics = run_evaluate(predictor, data, batch_size, on_batch=tick)
    table = Table(title=f"{model.name} on {input.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, "n/a" if value is None else (f"{value:,}" if isinstance(value, int) else f"{value:.4f}"))
    Console().print(table)
    if json_out is not None:
        record = {"model": str(model), "input": str(input), "task": predictor.task.kind, "metrics": metrics}
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(json_out, lambda tmp: tmp.write_text(text))
