"""`mergedna info`: model card facts."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .app import app


@app.command()
def info(
    model: Annotated[Optional[str], typer.Option("--model", help="Model directory (default: the shipped model).")] = None,
) -> None:
    """Print a model's size, training data, held-out results and weights sha256."""
    from ..pipelines.info import InfoRequest, run

    facts = {k: f"{v:,}" if isinstance(v, int) else str(v) for k, v in run(InfoRequest(model=model)).items()}
    if not sys.stdout.isatty():  # pipes and files get one "key<TAB>value" line per fact
        print("\n".join(f"{k}\t{v}" for k, v in facts.items()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in facts.items():
        table.add_row(key, value)
    Console().print(table)
