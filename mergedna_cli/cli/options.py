"""Option aliases shared by several commands."""

from pathlib import Path
from typing import Annotated, Optional, Union

import typer

from ..pipelines.choices import BackendChoice, StrandChoice  # (the commands import them from here)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or log output, errors only.")]


class DebugFlag:
    """--debug, wherever it was given: before the command (`mergedna --debug score ...`, the root
    option) or after it (`mergedna score ... --debug`, added to every command by cli/app.py).
    Both spellings set this one flag; cli/app.main reads it when a command fails."""

    on = False

    @classmethod
    def record(cls, value: bool) -> bool:
        if value:
            cls.on = True
        return value


DEBUG_HELP = "Show the full traceback on errors."
# is_eager: recorded before the other options are checked, so a bad value of a later option is
# reported with its traceback too
Debug = Annotated[bool, typer.Option("--debug", callback=DebugFlag.record, is_eager=True, help=DEBUG_HELP)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads (default: all).")]
Model = Annotated[Optional[str], typer.Option("--model", help="Model directory (default: the shipped model).")]


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


Strand = Annotated[StrandChoice, typer.Option(
    "--strand", help="both (average with the reverse complement) or forward.")]
Fasta = Annotated[Path, typer.Option("--fasta", help="Reference FASTA (plain or bgzip; .fai built if missing).")]
RegionsBed = Annotated[Optional[Path], typer.Option("--regions", help="BED of regions (0-based).")]
RegionStrings = Annotated[Optional[list[str]], typer.Option(
    "--region", help="chr:start-end (1-based, inclusive) or a contig; repeatable.")]
