"""Option aliases shared by several commands."""

from pathlib import Path
from typing import Annotated, Optional

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or log output, errors only.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads (default: all).")]
Model = Annotated[Optional[str], typer.Option("--model", help="Model directory (default: the shipped model).")]
Backend = Annotated[str, typer.Option("--backend", help="torch or onnx (ONNX Runtime).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Windows per batch.")]
Strand = Annotated[str, typer.Option("--strand", help="both (average with the reverse complement) or forward.")]
Fasta = Annotated[Path, typer.Option("--fasta", help="Reference FASTA (plain or bgzip; .fai built if missing).")]
RegionsBed = Annotated[Optional[Path], typer.Option("--regions", help="BED of regions (0-based).")]
RegionStrings = Annotated[Optional[list[str]], typer.Option(
    "--region", help="chr:start-end (1-based, inclusive) or a contig; repeatable.")]
