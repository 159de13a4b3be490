"""The project's exception classes.

The library raises these with messages that name the offending value and what was expected; only
the CLI turns them into a one-line message on stderr and an exit code (see cli/app.py).
"""


class MergeDNAError(Exception):
    """Base class: a problem with the user's data or the run (exit code 1)."""

    exit_code = 1


class InputError(MergeDNAError):
    """An input file or value is malformed, missing or inconsistent."""


class ModelError(MergeDNAError):
    """A model directory or checkpoint is missing, corrupt or incompatible."""


class UsageError(MergeDNAError):
    """Options that cannot work together (exit code 2, like a command-line usage error)."""

    exit_code = 2
