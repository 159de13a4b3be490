"""`mergedna export-onnx`: one inference graph as ONNX, written only if it agrees with PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.backends import onnx_file_name
from ..engine.load import parity_sequences
from ..engine.onnx_export import export_onnx
from ..model.files import load_config
from ..model_dirs import resolve_model_dir
from .choices import GraphPart
from .progress import Logger


@dataclass(frozen=True)
class ExportOnnxRequest:
    """`mergedna export-onnx`, as parsed by cli/export_onnx.py."""

    out: str                  # a .onnx file, or a folder (gets the name `--backend onnx` looks for)
    model: str | None = None
    tolerance: float = 1e-4   # largest |difference| of log-probabilities and vectors
    part: GraphPart = GraphPart.full


def run(request: ExportOnnxRequest, log: Logger | None = None) -> Path:
    """Export, check against PyTorch on real sequence, write; returns the path written."""
    log = log or Logger()
    model_dir = resolve_model_dir(request.model)
    part = GraphPart(request.part).value
    out = Path(request.out)
    # a folder gets the name `--backend onnx` looks for next to shipped weights
    path = out / onnx_file_name(part) if out.is_dir() or not out.suffix else out  # folders are created
    report = export_onnx(model_dir, path, parity_sequences(load_config(model_dir).context), request.tolerance, part)
    checked = ("max |log p| diff at masked query positions "
               f"{report.max_abs_log_prob:.1e}" if part == "masked" else "token maps identical" if part == "tokens" else
               "merge plans identical to PyTorch's float64 tokenizer" if part == "plan" else
               f"max |log p| diff {report.max_abs_log_prob:.1e}, max |vector| diff "
               f"{report.max_abs_vector:.1e}, token maps identical")
    log.info(f"wrote {path}: ONNX Runtime vs PyTorch on {report.cases} real-sequence batches, {checked}")
    return path
