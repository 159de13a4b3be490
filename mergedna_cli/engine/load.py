"""Build the backend an inference command asked for (`--model`, `--backend`, `--device`, `--threads`),
and choose what `--backend auto`, `--device auto` and `--batch-size auto` mean on this machine."""

from __future__ import annotations

import glob
from importlib import resources
from pathlib import Path

import numpy as np

from ..alphabet import encode
from ..errors import MergeDNAError, UsageError
from ..io.fasta_records import iter_fasta_records
from ..model.files import load_config
from ..model_dirs import resolve_model_dir

# `--backend auto`: the backend run on each kind of device, the fastest one that agrees with
# PyTorch (every ONNX graph passes its parity check against PyTorch before it is used,
# engine/onnx_export.py). Change an entry here when a measurement says otherwise.
#   cpu:  ONNX Runtime. Measured on a 2-core CPU machine it scored 1.5-2.0x as many SNVs/s as
#         PyTorch (BRCA1 SGE, both strands, batch 32; benchmarks/score_speed.py,
#         docs/benchmarks.md) and embedded 1.5-2.6x as fast. Both make the same merges
#         (engine/merge_plan.py); values agree within 1e-4.
#   cuda: PyTorch, until benchmarks/gpu_inference.py has measured ONNX Runtime's CUDA provider on
#         a GPU; the GPU machine lent to this project has no onnxruntime-gpu installed.
AUTO_BACKEND = {"cpu": "onnx", "cuda": "torch"}

# `--batch-size auto`, windows per batch.
#   cpu:  32, the default `score` has had; slices of a batch go to the threads
#         (engine/parallel.py), so a batch needs a few windows per thread, and ONNX Runtime
#         runs 8 rows per call anyway (engine/backends.py, ONNX_MAX_ROWS).
#   cuda: as many as fit in CUDA_MEMORY_FRACTION of the free GPU memory (both strands double the
#         rows of a batch), at most CUDA_BATCH_MAX: large batches are what keeps a GPU busy with
#         windows this small (512 bases, widths 64-128). gpu_inference.py reports peak memory
#         and speed per batch size for this choice.
AUTO_BATCH_CPU = 32
CUDA_BATCH_MAX = 1024
CUDA_MEMORY_FRACTION = 0.5
ONNX_CUDA_BATCH = 512  # ONNX Runtime's CUDA memory is not visible to torch's counters: not probed
PROBE_ROWS = 16        # rows of the one batch run to measure GPU memory per row

# Device files of a GPU that CUDA (NVIDIA; WSL2's /dev/dxg) or ROCm (/dev/kfd) can use: without
# one, `--device auto` is the CPU without importing torch (~1.5 s of start-up per pipeline job).
# An explicit --device cuda always asks torch.
_GPU_DEVICE_FILES = ("/dev/nvidia*", "/dev/dxg", "/dev/kfd")


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


def make_backend(model: str | None, backend: str = "auto", device: str = "auto",
                 threads: int | None = None, log=lambda msg: None, part: str = "full",
                 compression: float | None = None):
    """part: an inference graph of engine/graph.py ("full", "embedding", "masked", "tokens").
    backend: auto, torch or onnx. compression: the inference tokenizer's tokens-per-base ratio
    (default: the model's); the ONNX graphs are exported at the model's, so it requires torch
    (auto then means torch), whose model is built at that compression.
    On CPU, batches run as one slice per thread, each with one intra-op thread (engine/parallel.py).
    The object returned has `.name` ("torch" or "onnx") and `.device` ("cpu", "cuda:0", ...)."""
    from .parallel import SlicedBackend, cpu_workers

    if compression is not None:
        check_compression(compression, backend)
    explicit, asked = str(backend) != "auto", str(device)
    backend, device = choose(backend, device, "torch" if compression is not None else None)
    workers = cpu_workers(threads) if device == "cpu" else 1

    def build(name: str):
        # --backend onnx --device auto: ONNX Runtime falls back to the CPU if its CUDA provider
        # cannot start (with --backend auto the device is already decided)
        where = "auto" if explicit and name == "onnx" and asked == "auto" else device
        single = _single_backend(model, name, where, threads if workers == 1 else 1, log, part, compression)
        return single if workers == 1 else SlicedBackend(single, workers)

    if backend == "onnx" and not explicit:
        try:
            return build("onnx")
        except MergeDNAError as exc:  # e.g. an export whose parity check failed: the graph disagrees
            log(f"--backend auto: ONNX Runtime is not usable for this model ({exc}); using PyTorch")
            return build("torch")
        except OSError as exc:  # an unwritable export cache
            log(f"--backend auto: cannot export the ONNX graph ({exc}); using PyTorch")
            return build("torch")
    return build(backend)


def check_compression(compression: float, backend: str = "auto") -> None:
    """--compression: a tokens-per-base ratio in [0.05, 1] for the PyTorch tokenizer (the ONNX
    graphs are exported at the model's own)."""
    if not 0.05 <= compression <= 1.0:
        raise UsageError(f"--compression must be in [0.05, 1], got {compression}")
    if str(backend) == "onnx":
        raise UsageError("--compression needs --backend torch: the ONNX graphs are exported at the model's compression")


def same_model_backend(backend, part: str):
    """A PyTorch backend running another graph (`part`) of `backend`'s loaded model, sliced the
    same way, so that a command needing two graphs reads the weights once; None for ONNX
    Runtime, whose graphs are separate files."""
    from .backends import TorchBackend
    from .parallel import SlicedBackend

    inner = backend.inner if isinstance(backend, SlicedBackend) else backend
    if not isinstance(inner, TorchBackend):
        return None
    twin = inner.for_part(part)
    return SlicedBackend(twin, backend.workers) if inner is not backend else twin


def choose(backend: str, device: str, require: str | None = None) -> tuple[str, str]:
    """(backend, device) that `--backend` and `--device` resolve to on this machine: backend
    torch or onnx; device cpu, cuda or cuda:N. A CUDA device that is asked for and missing is a
    usage error (exit 2) naming what is missing."""
    backend, device = str(backend), str(device)
    if backend not in ("auto", "torch", "onnx"):
        raise UsageError(f"--backend must be auto, torch or onnx, got '{backend}'")
    if device != "auto" and device != "cpu" and not _is_cuda(device):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got '{device}'")
    if require is not None and backend not in ("auto", require):
        raise UsageError(f"this command's options need --backend {require}, got --backend {backend}")
    if backend == "auto" and require is not None:
        backend = require
    if device == "auto":
        if backend == "onnx":  # as ONNX Runtime decides, without importing torch
            device = "cuda" if _onnx_cuda() else "cpu"
        else:
            device = "cuda" if _torch_cuda_count(files_first=True) else "cpu"
    if device == "cpu":
        if backend == "auto":
            backend = AUTO_BACKEND["cpu"] if _onnx_importable() else "torch"
        return backend, device
    if backend == "auto":
        preferred = AUTO_BACKEND["cuda"]
        for name in (preferred, "onnx" if preferred == "torch" else "torch"):
            if (_torch_cuda_count() if name == "torch" else _onnx_cuda()):
                backend = name
                break
        else:
            raise UsageError(f"--device {device}: no CUDA device is available (PyTorch: {_torch_cuda_reason()}; "
                             f"ONNX Runtime: {_onnx_cuda_reason()})")
    if backend == "torch":
        count = _torch_cuda_count()
        if not count:
            raise UsageError(f"--device {device}: no CUDA device is available to PyTorch ({_torch_cuda_reason()})")
        if _cuda_index(device) >= count:
            raise UsageError(f"--device {device}: PyTorch sees {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    elif not _onnx_cuda():
        raise UsageError(f"--device {device} with --backend onnx needs onnxruntime-gpu in place of onnxruntime "
                         f"(ONNX Runtime: {_onnx_cuda_reason()})")
    return backend, device


def resolve_batch_size(batch_size: int | str, *backends, log=lambda msg: None) -> int:
    """--batch-size N, or for "auto" the size for the device the backends run on (AUTO_BATCH_CPU,
    or on CUDA the smallest that the backends' memory allows). None entries are skipped."""
    if str(batch_size) != "auto":
        return int(batch_size)
    backends = [b for b in backends if b is not None]
    on_gpu = [b for b in backends if str(getattr(b, "device", "cpu")).startswith("cuda")]
    if not on_gpu:
        return AUTO_BATCH_CPU
    size = min(cuda_batch_size(b) for b in on_gpu)
    log(f"--batch-size auto: {size} windows per batch on {on_gpu[0].device}")
    return size


def cuda_batch_size(backend) -> int:
    """Windows per batch that fit in CUDA_MEMORY_FRACTION of the free GPU memory with both
    strands (2 rows per window), at most CUDA_BATCH_MAX, a power of two. PyTorch's memory per row
    is measured with one batch of PROBE_ROWS rows (shapes do not depend on the sequence)."""
    if getattr(backend, "name", None) != "torch":
        return ONNX_CUDA_BATCH
    import torch

    device = torch.device(backend.device)
    context = backend.config.context
    ids = np.random.default_rng(0).integers(0, 4, (PROBE_ROWS, context))
    query = np.tile(np.arange(0, context, 8), (PROBE_ROWS, 1)) if backend.part == "masked" else None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    backend.run(ids, query)
    torch.cuda.synchronize(device)
    per_row = max(torch.cuda.max_memory_allocated(device) - base, 1) / PROBE_ROWS
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # torch's cache
    windows = int(CUDA_MEMORY_FRACTION * free / (2 * per_row))
    windows = min(CUDA_BATCH_MAX, max(1, windows))
    return 1 << (windows.bit_length() - 1)


def _is_cuda(device: str) -> bool:
    return device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())


def _cuda_index(device: str) -> int:
    return int(device[5:]) if device.startswith("cuda:") else 0


def _gpu_device_files() -> bool:
    return any(glob.glob(pattern) for pattern in _GPU_DEVICE_FILES)


def _torch_cuda_count(files_first: bool = False) -> int:
    """CUDA devices PyTorch can use. files_first (for --device auto): 0 without importing torch
    where no GPU device file exists."""
    if files_first and not _gpu_device_files():
        return 0
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _torch_cuda_reason() -> str:
    import torch
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return f"torch {torch.__version__} finds no usable GPU" + ("" if _gpu_device_files() else " (no GPU device file in /dev)")


def _onnx_importable() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _onnx_cuda() -> bool:
    if not _onnx_importable():
        return False
    import onnxruntime as ort
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _onnx_cuda_reason() -> str:
    if not _onnx_importable():
        return "onnxruntime is not installed"
    import onnxruntime as ort
    return f"onnxruntime {ort.__version__} has providers {', '.join(ort.get_available_providers())}"


def _single_backend(model: str | None, backend: str, device: str, threads: int | None, log, part: str,
                    compression: float | None = None):
    model_dir = resolve_model_dir(model)
    if backend == "torch":
        from .backends import TorchBackend
        return TorchBackend(model_dir, device=device, threads=threads, part=part, compression=compression)
    if backend == "onnx":
        from .backends import OnnxBackend
        from .onnx_export import cached_onnx_path, export_onnx
        config = load_config(model_dir)
        path = cached_onnx_path(model_dir, part)
        if not path.is_file():
            log(f"exporting {model_dir.name} to ONNX (first use) at {path}")
            export_onnx(model_dir, path, parity_sequences(config.context), part=part)
        return OnnxBackend(path, config, device=device, threads=threads)
    raise UsageError(f"--backend must be auto, torch or onnx, got '{backend}'")
