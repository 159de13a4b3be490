"""Checks on output paths, done before any work so a bad path fails in a second, not an hour."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def check_output(path: str | os.PathLike) -> None:
    """The folder of an output file must exist and be writable ('-' is stdout)."""
    if str(path) == "-":
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"output '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"output '{path}': folder '{folder}' is not writable")
