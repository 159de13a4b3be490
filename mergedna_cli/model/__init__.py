"""The MergeDNA network, its config and save/load. Imports torch only: no files, no CLI."""

from .config import PRESETS, MergeDNAConfig
from .network import MergeDNA, InferenceOutput, LocalTokens
from .losses import PretrainLosses, pretraining_losses
from .serialization import load_model, save_model, weights_sha256

__all__ = [
    "PRESETS", "MergeDNAConfig", "MergeDNA", "InferenceOutput", "LocalTokens",
    "PretrainLosses", "pretraining_losses", "load_model", "save_model", "weights_sha256",
]
