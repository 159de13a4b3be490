"""The choices of the commands' options, one Enum each, so that --help lists them and a value
outside them is a usage error (exit 2) before any work. The requests of pipelines/*.py carry them.

Each is a str subclass whose str() is its value: `backend == "torch"`, f-strings and JSON read the
plain name, and code below the pipelines (engine/load.py takes "auto", "torch" or "onnx") accepts
them unchanged. This module imports no torch: the commands' signatures need it at start-up."""

from dataclasses import dataclass
from enum import Enum

from ..model.config import PRESETS


class Choice(str, Enum):
    def __str__(self) -> str:  # Python >= 3.12 formats mixed-in enums with str(), not the value
        return self.value


class BackendChoice(Choice):
    """--backend of the inference commands."""

    auto = "auto"
    torch = "torch"
    onnx = "onnx"


class StrandChoice(Choice):
    """--strand of score, embed and tracks."""

    both = "both"
    forward = "forward"


@dataclass(frozen=True, kw_only=True)
class InferenceOptions:
    """The options of every command that runs a model on windows (score, embed, tracks): a base
    of their requests, given by keyword."""

    model: str | None = None            # --model: a directory or a shipped model's name
    backend: BackendChoice = BackendChoice.auto
    device: str = "auto"                # auto, cpu, cuda or cuda:N
    batch_size: int | str = "auto"      # windows per batch, or auto (engine/load.resolve_batch_size)
    strand: StrandChoice = StrandChoice.both
    threads: int | None = None


class GraphPart(Choice):
    """export-onnx --part: the inference graphs of engine/graph.py."""

    full = "full"
    embedding = "embedding"
    masked = "masked"
    tokens = "tokens"
    plan = "plan"


# pretrain
Preset = Choice("Preset", {name: name for name in PRESETS})
Preset.__doc__ = "pretrain --preset: the model sizes of model/config.py."


class Precision(Choice):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Sampler(Choice):
    auto = "auto"
    host = "host"
    device = "device"


class CompileScope(Choice):
    step = "step"
    blocks = "blocks"


# finetune
class Task(Choice):
    classification = "classification"
    regression = "regression"


class Balance(Choice):
    weights = "weights"
    sampling = "sampling"
    none = "none"
