"""The `mergedna` command: one Typer app, one module per command, errors -> exit codes.

Exit codes: 0 success, 1 data or runtime error, 2 usage error. Errors are one line on stderr;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .. import __version__
from ..errors import MergeDNAError

app = typer.Typer(
    name="mergedna",
    help="MergeDNA DNA language model: variant scores, embeddings, learned-token tracks, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None
          ) -> None:
    """MergeDNA on the command line."""


def _register() -> None:
    from . import embed, export_onnx, info, pretrain, score  # noqa: F401  (commands register on `app`)


_register()


def main() -> None:
    try:
        app()
    except MergeDNAError as exc:
        if "--debug" in sys.argv:
            raise
        print(f"mergedna: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("mergedna: interrupted", file=sys.stderr)
        sys.exit(130)
