"""`mergedna evaluate`: the metrics of a fine-tuned model on a labelled set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write
from ..finetune.batching import encode_all
from ..finetune.metrics import task_metrics
from ..finetune.predictor import Predictor
from ..finetune.task import encode_targets
from ..io.labelled import SequenceSet
from .paths import check_not_input, check_output
from .predict import FineTunedInput
from .progress import Logger


@dataclass(frozen=True, kw_only=True)
class EvaluateRequest(FineTunedInput):
    """`mergedna evaluate`, as parsed by cli/evaluate.py."""

    json_out: str | None = None         # --json: also write the metrics there


def run(request: EvaluateRequest, log: Logger | None = None) -> dict:
    """The metrics by name (None where undefined); with json_out also written as JSON."""
    log = log or Logger()
    if request.json_out is not None:
        check_output(request.json_out)
        check_not_input(request.json_out, request.input, "--input")
    predictor, data = request.load(log, need_labels=True)
    with log.counter("sequences") as tick:
        metrics = run_evaluate(predictor, data, request.batch_size, on_batch=tick)
    if request.json_out is not None:
        record = {"model": request.model, "input": request.input, "task": predictor.task.kind, "metrics": metrics}
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(Path(request.json_out), lambda tmp: tmp.write_text(text))
    return metrics


def run_evaluate(predictor: Predictor, data: SequenceSet, batch_size: int, on_batch=lambda n: None) -> dict:
    truth = encode_targets(predictor.task, data.labels, data.source, data.where)
    outputs = predictor.outputs(encode_all(data.sequences), batch_size, on_batch)
    return task_metrics(predictor.task, truth, outputs)
