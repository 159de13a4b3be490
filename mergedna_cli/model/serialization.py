"""Save and load a model as a directory: config.json + weights in safetensors (never pickle).

Weights are one model.safetensors, or shards model-00001-of-0000K.safetensors plus
model.safetensors.index.json when `max_shard_bytes` is given (files.py defines both layouts and
the sha256 of each). They may be stored in bf16 (`dtype`); loading casts them to the model's
fp32 parameters.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write
from ..errors import ModelError
from .files import CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX, load_config, weight_files
from .network import MergeDNA


def _shards(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Tensors in state_dict order, cut into groups of at most max_bytes (a larger tensor alone)."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = tensor
        size += nbytes
    return groups


def save_model(model: MergeDNA, directory: str | os.PathLike, metadata: dict | None = None,
               dtype: torch.dtype | None = None, max_shard_bytes: int | None = None) -> Path:
    """Write config.json and the weights into `directory` (created if needed), atomically.

    dtype: store floating-point tensors in this dtype (e.g. torch.bfloat16); default as trained.
    max_shard_bytes: write shards of at most this many bytes of tensor data plus an index (a
    shard's header adds a few kB); without it, one model.safetensors. Weights of the other layout
    left in the directory are removed, so it never holds both."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    old = [p for p in out.glob("model-*-of-*.safetensors")] + [out / WEIGHTS_INDEX, out / WEIGHTS_FILE]
    if max_shard_bytes is None:
        atomic_write(out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata=meta))
        written = {out / WEIGHTS_FILE}
    else:
        groups = _shards(state, max_shard_bytes)
        names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
        for name, group in zip(names, groups):
            atomic_write(out / name, lambda p, g=group: save_file(g, str(p), metadata=meta))
        index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
                 "weight_map": {k: name for name, group in zip(names, groups) for k in group}}
        text = json.dumps(index, indent=2) + "\n"
        atomic_write(out / WEIGHTS_INDEX, lambda p: p.write_text(text))
        written = {out / name for name in names} | {out / WEIGHTS_INDEX}
    for path in old:
        if path not in written and path.is_file():
            path.unlink()
    text = json.dumps(model.config.to_dict(), indent=2) + "\n"
    atomic_write(out / CONFIG_FILE, lambda p: p.write_text(text))
    return out


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu",
               compression: float | None = None) -> MergeDNA:
    """Build the network from config.json and load its weights (one file or shards; strict;
    bf16 weights are cast to the model's dtype), in eval mode. compression: the inference
    tokenizer's tokens per base, instead of the one in config.json."""
    config = load_config(directory)
    if compression is not None:
        config = dataclasses.replace(config, compression=compression)
    state: dict[str, torch.Tensor] = {}
    for weights in weight_files(directory):
        try:
            part = load_file(str(weights), device=str(device))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"cannot read weights {weights}: {exc}") from None
        state.update(part)
    model = MergeDNA(config)
    reference = model.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference and v.is_floating_point() else v
             for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise ModelError(f"weights in '{directory}' do not fit its config.json: {first}") from None
    return model.to(device).eval()
