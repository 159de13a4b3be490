"""`mergedna info`: model card facts."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .app import app
from .options import Debug


@app.command()
def info(
    model: Annotated[Optional[str], typer.Option("--model", help="Model directory (default: the shipped model).")] = None,
    debug: Debug = False,
) -> None:
    """Print a model's size, training data, held-out results and weights sha256."""
    from ..pipelines.info import model_facts

    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in model_facts(model).items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
