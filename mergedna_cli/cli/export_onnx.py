"""`mergedna export-onnx`: the inference graph as ONNX, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..pipelines.choices import GraphPart
from .app import app
from .options import Model, Quiet


@app.command("export-onnx")
def export_onnx_command(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .onnx file, or a directory (writes model.onnx in it).")],
    model: Model = None,
    tolerance: Annotated[float, typer.Option(help="Largest allowed |difference| of log-probabilities and vectors.")] = 1e-4,
    part: Annotated[GraphPart, typer.Option(help="full (per-base log-probabilities too), embedding (token vectors only, what embed and predict use), masked (log-probabilities at query positions, what score uses) tokens (the tokenizer alone, what boundary tracks use) or plan (the float64 tokenizer that settles near-tied merges; exported beside every other part).")] = GraphPart.full,
    quiet: Quiet = False,
) -> None:
    """Export with dynamic batch and length axes; refuse to write a graph that disagrees with PyTorch."""
    from ..pipelines.export_onnx import ExportOnnxRequest, run
    from ..pipelines.progress import Logger

    run(ExportOnnxRequest(out=str(out), model=model, tolerance=tolerance, part=part), Logger(quiet))
