"""The MergeDNA network (torch), its config, and saving and loading model directories.

Names are imported on first use, so that `mergedna_cli.model.config` and `.files` (config.json and
the weights' sha256: all the ONNX Runtime path needs) load without torch."""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, spelled out for type checkers and editors
    from .config import PRESETS, MergeDNAConfig
    from .files import load_config, weights_sha256
    from .losses import PretrainLosses, pretraining_losses
    from .network import InferenceOutput, LocalTokens, MergeDNA
    from .serialization import load_model, save_model

_HOME = {
    "PRESETS": "config", "MergeDNAConfig": "config",
    "MergeDNA": "network", "InferenceOutput": "network", "LocalTokens": "network",
    "PretrainLosses": "losses", "pretraining_losses": "losses",
    "load_model": "serialization", "save_model": "serialization",
    "load_config": "files", "weights_sha256": "files",
}
__all__ = [  # = the keys of _HOME, written out so that linters see them
    "PRESETS", "MergeDNAConfig", "MergeDNA", "InferenceOutput", "LocalTokens", "PretrainLosses",
    "pretraining_losses", "load_model", "save_model", "load_config", "weights_sha256",
]


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
