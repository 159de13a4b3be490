"""Save and load a model as a directory: config.json + model.safetensors (never pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write
from ..errors import ModelError
from .files import CONFIG_FILE, WEIGHTS_FILE, load_config, weights_sha256  # noqa: F401  (re-exported)
from .network import MergeDNA


def save_model(model: MergeDNA, directory: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write config.json and model.safetensors into `directory` (created if needed), atomically."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    atomic_write(out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata=meta))
    text = json.dumps(model.config.to_dict(), indent=2) + "\n"
    atomic_write(out / CONFIG_FILE, lambda p: p.write_text(text))
    return out


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> MergeDNA:
    """Build the network from config.json and load model.safetensors (strict), in eval mode."""
    config = load_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"model directory '{directory}' has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read weights {weights}: {exc}") from None
    model = MergeDNA(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise ModelError(f"weights {weights} do not fit its config.json: {first}") from None
    return model.to(device).eval()
