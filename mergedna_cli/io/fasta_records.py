"""Whole-record FASTA streaming (plain, gzip or bgzip) for building training corpora."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pysam

from ..errors import InputError


def iter_fasta_records(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield (name, sequence) for every record of a FASTA file; raises InputError if unreadable."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(f"FASTA file '{path}' does not exist")
    n = 0
    try:
        with pysam.FastxFile(path) as handle:
            for record in handle:
                if record.sequence is None or record.quality is not None:
                    raise InputError(f"'{path}' is not a FASTA file (record '{record.name}')")
                n += 1
                yield record.name, record.sequence
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read FASTA '{path}': {exc}") from None
    if n == 0:
        raise InputError(f"FASTA file '{path}' has no records")
