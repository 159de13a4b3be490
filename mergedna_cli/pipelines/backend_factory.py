"""Build the backend an inference command asked for (`--model`, `--backend`, `--device`, `--threads`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from ..alphabet import encode
from ..errors import UsageError
from ..io.fasta_records import iter_fasta_records
from ..model.files import load_config
from ..model_dirs import resolve_model_dir


def parity_sequences(context: int) -> list[np.ndarray]:
    """Real human sequence (shipped with the package) shaped as a few batches for parity checks,
    plus a homopolymer run, where merge scores tie everywhere."""
    path = Path(str(resources.files("mergedna_cli") / "data" / "parity_check.fa"))
    ids = np.concatenate([encode(seq) for _, seq in iter_fasta_records(path)]).astype(np.int64)
    n = len(ids) // context
    windows = ids[: n * context].reshape(n, context)
    short = windows[:2, : context - 37]
    homopolymer = np.zeros((1, context), dtype=np.int64)
    homopolymer[0, context // 2:] = 3
    return [windows[:1], windows[: min(4, n)], short, homopolymer]


def make_backend(model: str | None, backend: str = "torch", device: str = "auto",
                 threads: int | None = None, log=lambda msg: None, part: str = "full"):
    """part: an inference graph of engine/graph.py ("full", "embedding", "masked", "tokens").
    On CPU, batches run as one slice per thread, each with one intra-op thread (engine/parallel.py)."""
    from ..engine.parallel import SlicedBackend, cpu_workers

    workers = cpu_workers(threads) if _on_cpu(device, backend) else 1
    if workers == 1:
        return _single_backend(model, backend, device, threads, log, part)
    return SlicedBackend(_single_backend(model, backend, device, 1, log, part), workers)


def _on_cpu(device: str, backend: str) -> bool:
    if device == "cpu":
        return True
    if device.startswith("cuda"):
        return False
    if backend == "onnx":  # "auto": as OnnxBackend decides, without importing torch
        import onnxruntime as ort
        return "CUDAExecutionProvider" not in ort.get_available_providers()
    import torch  # "auto": CUDA when torch sees a GPU
    return not torch.cuda.is_available()


def _single_backend(model: str | None, backend: str, device: str, threads: int | None, log, part: str):
    model_dir = resolve_model_dir(model)
    if backend == "torch":
        from ..engine.backends import TorchBackend
        return TorchBackend(model_dir, device=device, threads=threads, part=part)
    if backend == "onnx":
        from ..engine.backends import OnnxBackend
        from ..engine.onnx_export import cached_onnx_path, export_onnx
        config = load_config(model_dir)
        path = cached_onnx_path(model_dir, part)
        if not path.is_file():
            log(f"exporting {model_dir.name} to ONNX (first use) at {path}")
            export_onnx(model_dir, path, parity_sequences(config.context), part=part)
        return OnnxBackend(path, config, device=device, threads=threads)
    raise UsageError(f"--backend must be torch or onnx, got '{backend}'")
