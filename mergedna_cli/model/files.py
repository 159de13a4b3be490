"""What a model directory holds, readable without torch: config.json and the weights' sha256.

The ONNX Runtime path needs only these, so it never imports torch (~1.5 s of start-up)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import ModelError
from .config import MergeDNAConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def load_config(directory: str | os.PathLike) -> MergeDNAConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"model directory '{directory}' has no {CONFIG_FILE}")
    try:
        return MergeDNAConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelError(f"{path} is not a valid MergeDNA config: {exc}") from None


def weights_sha256(directory: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(Path(directory) / WEIGHTS_FILE, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
