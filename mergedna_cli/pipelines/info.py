"""`mergedna info`: the facts of a model directory (the model card's key numbers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..model.files import load_config, weights_sha256
from ..model_dirs import resolve_model_dir


@dataclass(frozen=True)
class InfoRequest:
    """`mergedna info`, as parsed by cli/info.py."""

    model: str | None = None


def run(request: InfoRequest) -> dict:
    """The model's facts, in the order `info` prints them."""
    return model_facts(request.model)


def model_facts(model: str | None) -> dict:
    directory = resolve_model_dir(model)
    config = load_config(directory)
    import torch

    from ..model import MergeDNA
    with torch.device("meta"):
        n_params = sum(p.numel() for p in MergeDNA(config).parameters())
    facts: dict = {
        "directory": str(directory), "name": directory.name, "preset": config.name,
        "parameters": n_params, "width": config.d_model,
        "blocks (local enc / latent enc / latent dec / local dec)":
            f"{config.n_local_encoder} / {config.n_latent_encoder} / {config.n_latent_decoder} / "
            f"{config.n_local_decoder}",
        "context (bases)": config.context, "inference compression": config.compression,
        "weights sha256": weights_sha256(directory),
    }
    training = directory / "training.json"
    if training.is_file():
        t = json.loads(training.read_text())
        facts["training data"] = ", ".join(
            f"{Path(s['path']).name} (x{s['weight']:g})" for s in t.get("sources", []))
        facts["training steps"] = t.get("step")
        facts["bases seen"] = t.get("bases_seen")
        facts["training hardware"] = t.get("hardware")
    evaluation = directory / "evaluation.json"
    if evaluation.is_file():
        for row in json.loads(evaluation.read_text()).get("rows", []):
            facts[f"held-out {row['model']}"] = (f"masked acc {row['accuracy']:.4f}, "
                                                 f"CE {row['cross_entropy']:.4f} nats")
    facts["backends"] = _backends()
    return facts


def _backends() -> str:
    import torch
    parts = ["torch: cpu" + (f", cuda x{torch.cuda.device_count()}" if torch.cuda.is_available() else "")]
    try:
        import onnxruntime
        parts.append("onnxruntime: " + ", ".join(p.replace("ExecutionProvider", "").lower()
                                                 for p in onnxruntime.get_available_providers()))
    except ImportError:
        parts.append("onnxruntime: not installed")
    return "; ".join(parts)
