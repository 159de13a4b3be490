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
    part: Annotated[str, typer.Option(help="full (per-base log-probabilities too), embedding (token vectors only, what embed and predict use) masked (log-probabilities at query positions, what score uses) or tokens (the tokenizer alone, what boundary tracks use).")] = "full",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Export with dynamic batch and length axes; refuse to write a graph that disagrees with PyTorch."""
    from ..engine.backends import OUTPUTS
    from ..engine.onnx_export import export_onnx, onnx_file_name
    from ..model.files import load_config
    from ..model_dirs import resolve_model_dir
    from ..engine.load import parity_sequences
    from ..pipelines.progress import Logger

    model_dir = resolve_model_dir(model)
    if part not in OUTPUTS:
        raise UsageError(f"--part must be one of {', '.join(OUTPUTS)}, got '{part}'")
    # a folder gets the name `--backend onnx` looks for next to shipped weights
    path = out / onnx_file_name(part) if out.is_dir() or not out.suffix else out  # folders are created
    report = export_onnx(model_dir, path, parity_sequences(load_config(model_dir).context), tolerance, part)
    checked = ("max |log p| diff at masked query positions "
               f"{report.max_abs_log_prob:.1e}" if part == "masked" else "token maps identical" if part == "tokens" else
               f"max |log p| diff {report.max_abs_log_prob:.1e}, max |vector| diff "
               f"{report.max_abs_vector:.1e}, token maps identical")
    Logger(quiet).info(f"wrote {path}: ONNX Runtime vs PyTorch on {report.cases} real-sequence batches, {checked}")
