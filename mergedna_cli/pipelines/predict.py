"""`mergedna predict`: a fine-tuned model applied to sequences (evaluate.py scores it on labels)."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..finetune.batching import encode_all
from ..finetune.predictor import Predictor
from ..finetune.task import decode_regression
from ..io.labelled import SequenceSet, read_sequences
from .choices import BackendChoice
from .paths import check_not_input, check_output
from .progress import Logger


@dataclass(frozen=True, kw_only=True)
class FineTunedInput:
    """What predict and evaluate share: a fine-tuned model applied to a sequence set."""

    model: str                          # a fine-tuned model directory
    input: str                          # TSV/CSV, BED (+ fasta) or FASTA (evaluate: with labels)
    fasta: str | None = None
    sequence_column: str | None = None  # None: the one the model was fine-tuned with
    label_column: str | None = None
    backend: BackendChoice = BackendChoice.auto
    device: str = "auto"
    batch_size: int = 64
    threads: int | None = None

    def load(self, log: Logger, need_labels: bool) -> tuple[Predictor, SequenceSet]:
        """The model's predictor and the input read with the columns it was trained with,
        unless --sequence-column / --label-column say otherwise."""
        predictor = Predictor(self.model, self.backend, self.device, self.threads, log=log.info)
        columns = predictor.info.get("input", {})
        data = read_sequences(self.input, self.fasta, self.sequence_column or columns.get("sequence_column", "sequence"),
                              self.label_column or columns.get("label_column", "label"), require_label=need_labels)
        return predictor, data


@dataclass(frozen=True, kw_only=True)
class PredictRequest(FineTunedInput):
    """`mergedna predict`, as parsed by cli/predict.py."""

    out: str                            # predictions TSV (.tsv or .tsv.gz)


def run(request: PredictRequest, log: Logger | None = None) -> int:
    """Write one row per input sequence: its columns plus the prediction; returns the rows."""
    log = log or Logger()
    check_output(request.out)
    check_not_input(request.out, request.input, "--input")
    predictor, data = request.load(log, need_labels=False)
    with log.counter("sequences") as tick:
        n = run_predict(predictor, data, request.out, request.batch_size, on_batch=tick)
    log.info(f"wrote {n:,} predictions to {request.out}")
    return n


def prediction_columns(predictor: Predictor, outputs: np.ndarray) -> tuple[list[str], list[list[str]]]:
    task = predictor.task
    if task.kind == "regression":
        values = decode_regression(task, outputs.astype(np.float64))
        return ["predicted"], [[f"{v:.6g}"] for v in values]
    names = list(task.label_names)
    predicted = outputs.argmax(1)
    rows = [[names[p]] + [f"{x:.6f}" for x in probs] for p, probs in zip(predicted, outputs)]
    return ["predicted"] + [f"prob_{name}" for name in names], rows


def write_table(path: str, header: list[str], rows) -> None:
    """TSV (gzip if the name ends in .gz), written to a temporary name and renamed when complete."""
    opener = gzip.open if str(path).endswith(".gz") else open

    def write(tmp: Path) -> None:
        with opener(tmp, "wt", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)

    atomic_write(Path(path), write)


def run_predict(predictor: Predictor, data: SequenceSet, out: str, batch_size: int,
                on_batch=lambda n: None) -> int:
    outputs = predictor.outputs(encode_all(data.sequences), batch_size, on_batch)
    added, values = prediction_columns(predictor, outputs)
    write_table(out, data.columns + added, (row + extra for row, extra in zip(data.rows, values)))
    return len(data)
