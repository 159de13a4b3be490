"""`mergedna finetune`: labelled sequences + a pretrained model -> a fine-tuned model directory."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, UsageError
from ..finetune.batching import encode_all
from ..finetune.checkpoint import INFO_FILE, read_info, save_finetuned, write_info
from ..finetune.head import Head, SequenceModel
from ..finetune.loop import BALANCE, FinetuneSettings, Split, run_finetune
from ..finetune.task import encode_targets, make_task
from ..io.labelled import SequenceSet, read_sequences
from ..model import load_model, weights_sha256
from ..model.files import files_sha256
from ..model_dirs import resolve_model_dir
from ..training.distributed import finish_distributed, hardware_name, init_distributed
from .choices import Task

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class FinetuneRequest:
    """`mergedna finetune`, as parsed by cli/finetune.py."""

    train: str
    val: str
    out: str                          # the fine-tuned model directory to create
    settings: FinetuneSettings
    model: str | None = None          # the pretrained base model (default: the shipped one)
    task: Task = Task.classification
    fasta: str | None = None
    sequence_column: str = "sequence"
    label_column: str = "label"
    hidden: int = 128
    dropout: float = 0.1
    device: str = "auto"
    threads: int | None = None


def file_sha256(path: str) -> str:
    return files_sha256([path])


def _read(path: str, request: FinetuneRequest) -> SequenceSet:
    return read_sequences(path, request.fasta, request.sequence_column, request.label_column,
                          require_label=True)


def _check_lengths(data: SequenceSet, context: int, log) -> None:
    longest = max(len(s) for s in data.sequences)
    if longest > context:
        log(f"note: {data.source} has sequences up to {longest:,} bases; the model was pre-trained "
            f"on {context}-base windows")


def _check_leak(request: FinetuneRequest, train_set, val_set, warn) -> None:
    """--val that is --train (or shares sequences with it) makes validation measure training fit:
    model selection and early stopping would be meaningless. Warned, not refused (a smoke test
    may want it)."""
    same = os.path.abspath(request.train) == os.path.abspath(request.val)
    try:
        same = same or os.path.samefile(request.train, request.val)
    except OSError:
        pass
    if same:
        warn(f"--val '{request.val}' is the same file as --train: validation metrics, early stopping "
             "and the choice of the best epoch will reflect training fit, not generalisation")
        return
    seen = set(train_set.sequences)
    shared = sum(1 for seq in val_set.sequences if seq in seen)
    if shared:
        warn(f"{shared:,} of {len(val_set):,} sequences of --val '{request.val}' also appear in --train "
             f"'{request.train}': validation metrics will be optimistic")


def run(request: FinetuneRequest, log=lambda msg: None, on_step=lambda done, total, loss: None,
        warn=None) -> dict:
    settings = request.settings
    warn = log if warn is None else warn
    if settings.balance not in BALANCE:
        raise UsageError(f"--balance must be one of {', '.join(BALANCE)}, got '{settings.balance}'")
    out = Path(request.out)
    if (out / INFO_FILE).exists():
        raise UsageError(f"'{out}' already holds a fine-tuned model; choose a new -o or remove it")
    base_dir = resolve_model_dir(request.model)
    train_set, val_set = _read(request.train, request), _read(request.val, request)
    _check_leak(request, train_set, val_set, warn)
    task = make_task(Task(request.task).value, train_set.labels, request.train)
    train = Split(encode_all(train_set.sequences), encode_targets(task, train_set.labels, request.train, train_set.where))
    val = Split(encode_all(val_set.sequences), encode_targets(task, val_set.labels, request.val, val_set.where))
    if task.kind == "classification" and len(set(val_set.labels)) < 2:
        raise InputError(f"{request.val}: the validation set has only the class '{val_set.labels[0]}'; "
                         f"model selection needs every class")

    device, rank, world = init_distributed(request.device)
    if request.threads and world == 1:
        torch.set_num_threads(request.threads)
    backbone = load_model(base_dir, device=device)
    _check_lengths(train_set, backbone.config.context, log if rank == 0 else (lambda m: None))
    torch.manual_seed(settings.seed)
    head = Head(backbone.config.d_model, task.n_outputs, request.hidden, request.dropout)
    model = SequenceModel(backbone, head).to(device)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)
        log(f"fine-tuning {base_dir.name} ({'head only' if settings.freeze_encoder else 'encoder + head'}) "
            f"on {len(train.ids):,} sequences, validating on {len(val.ids):,}; {task.kind}"
            + (f", classes {', '.join(task.label_names)}" if task.label_names else ""))

    base_info = {"name": base_dir.name, "path": str(base_dir), "sha256": weights_sha256(base_dir)}
    data_info = {name: {"path": os.path.abspath(s.source), "sequences": len(s), "bases": split.bases,
                        "sha256": file_sha256(s.source)}
                 for name, s, split in (("train", train_set, train), ("val", val_set, val))}
    started = time.time()

    def save(record: dict) -> None:
        save_finetuned(model, out, task, {
            "base_model": base_info, "mode": "freeze-encoder" if settings.freeze_encoder else "full",
            "strand": "both" if settings.rc_augment else "forward",
            "data": data_info, "input": {"sequence_column": request.sequence_column,
                                         "label_column": request.label_column},
            "settings": vars(settings) | {"hidden": request.hidden, "dropout": request.dropout},
            **record})

    summary = run_finetune(model, task, train, val, settings, device, save,
                           out / METRICS_FILE if rank == 0 else None, log if rank == 0 else (lambda m: None),
                           on_step if rank == 0 else (lambda *a: None))
    if rank == 0:
        info = read_info(out)  # the best epoch's record, written by `save`
        info["training"] = {k: summary[k] for k in ("epochs_run", "train_seconds", "embed_seconds", "world_size")} | {
            "wall_seconds": round(time.time() - started, 1), "device": str(device),
            "hardware": hardware_name(device), "torch": torch.__version__}
        write_info(out, info)
    if world > 1:
        finish_distributed()
    return summary
