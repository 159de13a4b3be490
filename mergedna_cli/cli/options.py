"""Option aliases shared by several commands."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional, Union

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or log output, errors only.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads (default: all).")]
Model = Annotated[Optional[str], typer.Option("--model", help="Model directory (default: the shipped model).")]


class BackendChoice(str, Enum):
    """--backend: a str subclass, so `backend == "torch"` and f-strings read the plain name."""

    auto = "auto"
    torch = "torch"
    onnx = "onnx"

    def __str__(self) -> str:  # Python >= 3.12 formats mixed-in enums with str(), not the value
        return self.value


Backend = Annotated[BackendChoice, typer.Option(
    "--backend", help="auto (ONNX Runtime on CPU, PyTorch on CUDA: the fastest that agrees), torch, "
                      "or onnx (ONNX Runtime).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Windows per batch.")]


def parse_batch_size(value: Union[str, int]) -> Union[str, int]:
    """'auto' (resolved once the device is known: engine/load.resolve_batch_size) or N >= 1.
    Defaults arrive here too, as given in the command's signature (an int or "auto")."""
    if isinstance(value, int) or value == "auto":
        if isinstance(value, int) and value < 1:
            raise typer.BadParameter(f"must be a positive integer or auto, got {value}")
        return value
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(f"must be a positive integer or auto, got '{value}'") from None
    if number < 1:
        raise typer.BadParameter(f"must be a positive integer or auto, got {number}")
    return number


# --batch-size N|auto. A command taking it must resolve "auto" with engine/load.resolve_batch_size
# before batching: 32 windows on CPU, up to 1024 on CUDA within the free GPU memory.
AutoBatchSize = Annotated[str, typer.Option(
    "--batch-size", parser=parse_batch_size, metavar="N|auto",
    help="Windows per batch; auto: 32 on CPU, up to 1024 on CUDA as free GPU memory allows.")]


class StrandChoice(str, Enum):
    """--strand of score, embed and tracks, listed as choices in --help."""

    both = "both"
    forward = "forward"

    def __str__(self) -> str:
        return self.value


Strand = Annotated[StrandChoice, typer.Option(
    "--strand", help="both (average with the reverse complement) or forward.")]
Fasta = Annotated[Path, typer.Option("--fasta", help="Reference FASTA (plain or bgzip; .fai built if missing).")]
RegionsBed = Annotated[Optional[Path], typer.Option("--regions", help="BED of regions (0-based).")]
RegionStrings = Annotated[Optional[list[str]], typer.Option(
    "--region", help="chr:start-end (1-based, inclusive) or a contig; repeatable.")]
