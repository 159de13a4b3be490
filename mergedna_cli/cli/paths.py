"""The output-path checks live with the pipelines that run them (pipelines/paths.py); this name
stays for the commands that import it from here."""

from ..pipelines.paths import check_not_input, check_output  # noqa: F401
