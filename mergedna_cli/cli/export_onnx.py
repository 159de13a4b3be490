"""`mergedna export-onnx`: the inference graph as ONNX, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .app import app
from .options import Debug, Model, Quiet


@app.command("export-onnx")
def export_onnx_command(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .onnx file, or a directory (writes model.onnx in it).")],
    model: Model = None,
    tolerance: Annotated[float, typer.Option(help="Largest allowed |difference| of log-probabilities and vectors.")] = 1e-4,
    part: Annotated[str, typer.Option(help="full (per-base log-probabilities too) or embedding (token vectors only, what embed uses).")] = "full",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Export with dynamic batch and length axes; refuse to write a graph that disagrees with PyTorch."""
    from ..engine.onnx_export import export_onnx
    from ..model.serialization import load_config
    from ..model_dirs import resolve_model_dir
    from ..pipelines.backend_factory import parity_sequences
    from ..pipelines.progress import Logger

    model_dir = resolve_model_dir(model)
    path = out / "model.onnx" if out.is_dir() or not out.suffix else out  # folders are created
    if part not in ("full", "embedding"):
        raise UsageError(f"--part must be full or embedding, got '{part}'")
    report = export_onnx(model_dir, path, parity_sequences(load_config(model_dir).context), tolerance, part)
    Logger(quiet).info(
        f"wrote {path}: ONNX Runtime vs PyTorch on {report.cases} real-sequence batches, max |log p| "
        f"diff {report.max_abs_log_prob:.1e}, max |vector| diff {report.max_abs_vector:.1e}, "
        f"token maps identical")
