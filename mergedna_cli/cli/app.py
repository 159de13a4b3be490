"""The `mergedna` command: one Typer app, one module per command, errors -> exit codes.

Exit codes: 0 success, 1 data or runtime error, 2 usage error. Errors are one line on stderr;
`--debug` shows the traceback instead. `--debug` is a root option (`mergedna --debug score ...`)
that every command also accepts after its name (`mergedna score ... --debug`): `_Root` gives each
command the root's option, and both set options.DebugFlag, which `main` reads.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from .. import __version__
from ..errors import MergeDNAError
from .options import DEBUG_HELP, DebugFlag


class _Root(TyperGroup):
    """The `mergedna` group: its `--debug` option is also an option of every command (one that
    declares its own `--debug` keeps it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        debug = next(param for param in self.params if param.name == "debug")
        for command in self.commands.values():
            if not any(param.name == "debug" for param in command.params):
                command.params.append(debug)


app = typer.Typer(
    cls=_Root,
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
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
          debug: Annotated[bool, typer.Option(
              "--debug", callback=DebugFlag.record, is_eager=True, expose_value=False, help=DEBUG_HELP)] = False,
          ) -> None:
    """MergeDNA on the command line."""


def _register() -> None:
    from . import (embed, evaluate, export_onnx, finetune, info, predict, pretrain,  # noqa: F401
                   score, tracks)  # (each module registers its command on `app`)


_register()


def _fail(message: str, code: int) -> None:
    print(f"mergedna: error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point: one-line errors and exit codes 0 / 1 (data, runtime) / 2 (usage)."""
    DebugFlag.on = False
    try:
        result = app(standalone_mode=False)
    except typer.Exit as exc:  # --version, --help
        sys.exit(exc.exit_code)
    except TyperException as exc:  # bad or missing options: exit 2, on one line
        if DebugFlag.on:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `mergedna`: the help was the message
            sys.exit(2)
        _fail(exc.format_message().replace("\n", " "), getattr(exc, "exit_code", 2))
    except typer.Abort:
        _fail("interrupted", 130)
    except MergeDNAError as exc:
        if DebugFlag.on:
            raise
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:  # an unwritable output folder, a full disk: name the file, no traceback
        if DebugFlag.on:
            raise
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), 1)
    if result == 130:  # typer turns Ctrl-C / SIGTERM inside a command into exit code 130
        _fail("interrupted", 130)
    sys.exit(result if isinstance(result, int) else 0)
