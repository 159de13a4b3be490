"""Checks on output paths, done before any work so a bad path fails in a second, not an hour."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, UsageError


def check_output(path: str | os.PathLike) -> None:
    """The folder of an output file must exist and be writable ('-' is stdout)."""
    if str(path) == "-":
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"output '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"output '{path}': folder '{folder}' is not writable")


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    if str(a) == "-" or str(b) == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # the output does not exist yet: compare the resolved names
        return Path(a).resolve() == Path(b).resolve()


def check_not_input(path: str | os.PathLike, *named, **inputs) -> None:
    """An output must not be one of the inputs: writing it would destroy the input.
    `named` is (path, option) pairs flattened; `inputs` maps option names to paths."""
    pairs = list(zip(named[::2], named[1::2])) + [(p, f"--{k.replace('_', '-')}") for k, p in inputs.items()]
    for source, option in pairs:
        if source is not None and _same(path, source):
            raise UsageError(f"output '{path}' is the file given to {option}; "
                             "choose another output name (it would be overwritten)")
