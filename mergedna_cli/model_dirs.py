"""Where models live: the shipped default and user-given directories (no torch import). What a
model directory holds is model/files.py's."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import ModelError
from .model.files import CONFIG_FILE, WEIGHTS_FILE, is_model_dir

DEFAULT_MODEL = "mergedna-small"


def shipped_models_root() -> Path | None:
    """The installed `models/` folder (package mergedna_cli.shipped_models), or the source tree's."""
    try:
        root = Path(str(resources.files("mergedna_cli.shipped_models")))
        if root.is_dir():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    source_tree = Path(__file__).resolve().parents[1] / "models"
    return source_tree if source_tree.is_dir() else None


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """--model value -> model directory. None means the shipped default; a bare name is looked up
    among the shipped models."""
    if model is None or (not Path(model).exists() and "/" not in str(model)):
        name = DEFAULT_MODEL if model is None else str(model)
        root = shipped_models_root()
        candidate = root / name if root else None
        if candidate is None or not is_model_dir(candidate):
            raise ModelError(f"shipped model '{name}' is not installed; pass --model DIR")
        return candidate
    path = Path(model)
    if not is_model_dir(path):
        raise ModelError(f"'{path}' is not a model directory (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    return path
