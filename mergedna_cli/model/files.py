"""What a model directory holds, readable without torch: the file names, config.json, the weight
files and their sha256. Every other module (model_dirs.py finding a model, serialization.py
writing one, the checkpoint and fine-tuned directories built on it) takes them from here.

The ONNX Runtime path needs only these, so it never imports torch (~1.5 s of start-up).

Weights are either one file, model.safetensors, or shards model-00001-of-0000K.safetensors named
by model.safetensors.index.json (the Hugging Face layout: each file stays small, e.g. under the
16 MiB per file that the GPU machines used for training send back).
The sha256 of sharded weights is the sha256 of the shards' bytes concatenated in shard order,
i.e. of what `cat model-*-of-*.safetensors` prints."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from ..errors import ModelError
from .config import MergeDNAConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def load_config(directory: str | os.PathLike) -> MergeDNAConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"model directory '{directory}' has no {CONFIG_FILE}")
    try:
        return MergeDNAConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelError(f"{path} is not a valid MergeDNA config: {exc}") from None


def weight_files(directory: str | os.PathLike) -> list[Path]:
    """The weights of a model directory: [model.safetensors], or its shards in order."""
    directory = Path(directory)
    if (directory / WEIGHTS_FILE).is_file():
        return [directory / WEIGHTS_FILE]
    index = directory / WEIGHTS_INDEX
    if not index.is_file():
        raise ModelError(f"model directory '{directory}' has no {WEIGHTS_FILE} (nor {WEIGHTS_INDEX})")
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
        raise ModelError(f"{index} is not a valid weights index: {exc}") from None
    missing = [name for name in names if not (directory / name).is_file()]
    if missing or not names:
        raise ModelError(f"{index} names weight shards that are missing: {missing or 'none listed'}")
    return [directory / name for name in names]


def is_model_dir(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a model (its config.json; the weights are checked on loading)."""
    return (Path(directory) / CONFIG_FILE).is_file()


def files_sha256(paths) -> str:
    """sha256 of the files' bytes concatenated in order, read in 1 MiB chunks (the weights of a
    model; fine-tuning also records its training data's)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(directory: str | os.PathLike) -> str:
    """sha256 of model.safetensors, or of the shards concatenated in order. Computed once per
    process for the same files (path, size and modification time): a command asks for it for
    each graph it loads and for its output headers."""
    stamps = []
    for path in weight_files(directory):
        stat = Path(path).stat()
        stamps.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    return _sha256_of(tuple(stamps))


@functools.lru_cache(maxsize=64)
def _sha256_of(stamps: tuple[tuple[str, int, int], ...]) -> str:
    return files_sha256([path for path, _, _ in stamps])
