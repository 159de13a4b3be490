"""The fine-tuned model directory, shared by `finetune`, `predict` and `evaluate`.

    MODEL_DIR/config.json, model.safetensors   the (fine-tuned) MergeDNA encoder: a normal model
                                               directory, so `embed`, `score` and ONNX export use it
    MODEL_DIR/head.safetensors                 the head's weights
    MODEL_DIR/finetune.json                    task, label names, head shape, base model name and
                                               sha256, validation metrics, training settings

Everything is safetensors or JSON; nothing is unpickled. Files are replaced atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write
from ..errors import ModelError
from ..model import save_model
from .head import Head, SequenceModel
from .task import TaskSpec

HEAD_FILE = "head.safetensors"
INFO_FILE = "finetune.json"
FORMAT = "mergedna-finetune"


def save_finetuned(model: SequenceModel, directory: str | os.PathLike, task: TaskSpec, info: dict) -> Path:
    out = Path(directory)
    save_model(model.backbone, out)
    state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    atomic_write(out / HEAD_FILE, lambda p: save_file(state, str(p)))
    write_info(out, {"format": FORMAT, "format_version": 1, "task": task.to_dict(),
                     "head": model.head.shape, **info})
    return out


def write_info(directory: str | os.PathLike, info: dict) -> None:
    text = json.dumps(info, indent=2) + "\n"
    atomic_write(Path(directory) / INFO_FILE, lambda p: p.write_text(text))


def read_info(directory: str | os.PathLike) -> dict:
    path = Path(directory) / INFO_FILE
    if not path.is_file():
        raise ModelError(f"'{directory}' is not a fine-tuned model (no {INFO_FILE}); "
                         f"make one with `mergedna finetune`")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None
    if info.get("format") != FORMAT:
        raise ModelError(f"{path} is not a {FORMAT} record")
    return info


def load_head(directory: str | os.PathLike, info: dict, device: str | torch.device = "cpu") -> Head:
    path = Path(directory) / HEAD_FILE
    if not path.is_file():
        raise ModelError(f"fine-tuned model '{directory}' has no {HEAD_FILE}")
    head = Head(**info["head"])
    try:
        head.load_state_dict(load_file(str(path), device=str(device)), strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        first = (str(exc).splitlines() or ["unreadable"])[0]
        raise ModelError(f"cannot load {path}: {first}") from None
    return head.to(device).eval()


def task_of(info: dict) -> TaskSpec:
    return TaskSpec.from_dict(info["task"])
