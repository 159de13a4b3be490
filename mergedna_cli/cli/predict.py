"""`mergedna predict`: apply a fine-tuned model to sequences, one output row per input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .threads import limit_threads
from .options import Backend, BackendChoice, BatchSize, Debug, Device, Quiet, Threads
from .paths import check_not_input, check_output


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
    debug: Debug = False,
) -> None:
    """Class probabilities (or the regression value) for every input sequence."""
    limit_threads(threads)
    from ..finetune.predictor import Predictor
    from ..pipelines.predict import read_input, run_predict
    from ..pipelines.progress import Logger

    check_output(out)
    check_not_input(out, input, "--input")
    log = Logger(quiet)
    predictor = Predictor(model, backend, device, threads, log=log.info)
    data = read_input(str(input), predictor, str(fasta) if fasta else None, need_labels=False,
                      sequence_column=sequence_column, label_column=label_column)
    with log.counter("sequences") as tick:
        n = run_predict(predictor, data, out, batch_size, on_batch=tick)
    log.info(f"wrote {n:,} predictions to {out}")
