"""The MergeDNA network, its config and save/load. Imports torch only: no files, no CLI.

Names are imported on first use, so that `mergedna_cli.model.config` and `.files` (what the ONNX
Runtime path needs) load without torch."""

from importlib import import_module

_HOME = {
    "PRESETS": "config", "MergeDNAConfig": "config",
    "MergeDNA": "network", "InferenceOutput": "network", "LocalTokens": "network",
    "PretrainLosses": "losses", "pretraining_losses": "losses",
    "load_model": "serialization", "save_model": "serialization",
    "load_config": "files", "weights_sha256": "files",
}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
