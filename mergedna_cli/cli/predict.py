"""`mergedna predict`: apply a fine-tuned model to sequences, one output row per input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import Backend, BackendChoice, BatchSize, Device, Quiet, Threads
from .threads import limit_threads


@app.command()
def predict(
    model: Annotated[Path, typer.Option("--model", help="Fine-tuned model directory (from `mergedna finetune`).")],
    input: Annotated[Path, typer.Option("--input", help="TSV/CSV with a sequence column, BED (+ --fasta) or FASTA.")],
    out: Annotated[str, typer.Option("-o", "--out", help="Predictions TSV (.tsv or .tsv.gz): input columns + predicted class and probabilities.")],
    fasta: Annotated[Optional[Path], typer.Option("--fasta", help="Reference for a BED input.")] = None,
    sequence_column: Annotated[Optional[str], typer.Option("--sequence-column", help="Column with the sequences (TSV/CSV; default: the one the model was fine-tuned with).")] = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", help="Column with the labels: a name, or for a BED a 1-based number (default: the one the model was fine-tuned with).")] = None,
    backend: Backend = BackendChoice.auto,
    device: Device = "auto",
    batch_size: BatchSize = 64,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Class probabilities (or the regression value) for every input sequence."""
    limit_threads(threads)
    from ..pipelines.predict import PredictRequest, run
    from ..pipelines.progress import Logger

    run(PredictRequest(model=str(model), input=str(input), out=out, fasta=str(fasta) if fasta else None,
                       sequence_column=sequence_column, label_column=label_column, backend=backend,
                       device=device, batch_size=batch_size, threads=threads), Logger(quiet))
