"""Self-describing, pickle-free training checkpoints.

A checkpoint is a directory `step-0001234/` holding a model directory (model/files.py: config.json
and the weights, written by save_model), the optimizer tensors (optimizer.safetensors) and
everything else as JSON (trainer.json): step, bases seen, optimizer hyperparameters, sampler and
torch RNG states. The file `latest` names the newest complete checkpoint and is replaced
atomically, so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write
from ..errors import ModelError
from ..model import MergeDNA, load_model, save_model

LATEST = "latest"                       # names the newest complete checkpoint
OPTIMIZER_FILE = "optimizer.safetensors"  # the optimizer's tensors (and the torch RNG state)
TRAINER_FILE = "trainer.json"             # step, bases seen, optimizer scalars, sampler state


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(root: str | os.PathLike, step: int, model: MergeDNA,
                    optimizer: torch.optim.Optimizer, trainer_state: dict, keep: int = 2) -> Path:
    root = Path(root)
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    tensors, optimizer_json = _optimizer_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    # through atomic_write for its file mode (umask-respecting, as every other output), not 0600
    atomic_write(tmp / OPTIMIZER_FILE, lambda path: save_file(tensors, str(path)))
    (tmp / TRAINER_FILE).write_text(json.dumps(
        {**trainer_state, "step": step, "optimizer": optimizer_json}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = root / f".{LATEST}.tmp{os.getpid()}"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / LATEST)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text().strip()
    if not path.is_dir():
        raise ModelError(f"checkpoint pointer {pointer} names '{path.name}', which does not exist")
    return path


def load_checkpoint(path: str | os.PathLike, optimizer_factory, device: str | torch.device = "cpu"
                    ) -> tuple[MergeDNA, torch.optim.Optimizer, dict]:
    """Model, optimizer (built by optimizer_factory(model)) and trainer state from a checkpoint."""
    path = Path(path)
    model = load_model(path, device=device).train()
    try:
        trainer = json.loads((path / TRAINER_FILE).read_text())
        tensors = load_file(str(path / OPTIMIZER_FILE))
    except (OSError, json.JSONDecodeError, SafetensorError, ValueError) as exc:
        raise ModelError(f"checkpoint {path} is corrupt or incomplete: {exc}") from None
    optimizer = optimizer_factory(model)
    opt_json = trainer.pop("optimizer")
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value.to(device)
    for key, value in opt_json["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": opt_json["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise ModelError(f"checkpoint {path}: optimizer state does not fit the model: {exc}") from None
    torch.set_rng_state(tensors["rng.torch"])
    return model, optimizer, trainer
