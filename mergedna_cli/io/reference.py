"""Indexed reference FASTA access with contig-name matching and padding past contig ends.

Coordinates are 0-based half-open (as pysam and BED). Plain or bgzip FASTA; the .fai index is
built when missing and the folder is writable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pysam

from ..alphabet import N, encode
from ..errors import InputError

_ALIASES = {"chrM": "MT", "MT": "chrM", "chrMT": "M", "M": "chrMT"}


def _candidates(name: str) -> list[str]:
    names = [name[3:]] if name.startswith("chr") else ["chr" + name]
    if name in _ALIASES:
        names.append(_ALIASES[name])
    return names


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


class Reference:
    """A FASTA reference. `fetch_ids` returns encoded ids, N-padded outside the contig."""

    def __init__(self, path: str | os.PathLike, fai: str | os.PathLike | None = None):
        self.path = str(path)
        if os.path.isdir(self.path):
            raise InputError(f"reference FASTA '{self.path}' is a directory, not a FASTA file")
        if not os.path.isfile(self.path):
            raise InputError(f"reference FASTA '{self.path}' does not exist")
        fai = Path(fai) if fai is not None else Path(self.path + ".fai")
        gzi = Path(self.path + ".gzi")
        if not fai.is_file() and not os.access(fai.resolve().parent, os.W_OK):
            raise InputError(f"reference '{self.path}' has no .fai index and its folder is not "
                             f"writable; pass --fai DIR/NAME.fai (built there if missing), run "
                             f"`samtools faidx {self.path}` where you can write, or symlink the "
                             f"FASTA into a writable folder")
        quiet = pysam.set_verbosity(0)  # our one-line error replaces htslib's own stderr lines
        try:
            extra = {}
            if str(fai) != self.path + ".fai":  # --fai: an index kept elsewhere, built if missing
                extra["filepath_index"] = str(fai)
                compressed = _is_gzip(self.path)
                if compressed:
                    extra["filepath_index_compressed"] = str(gzi if gzi.is_file() else fai.with_suffix(".gzi"))
                if not fai.is_file():
                    args = ["--fai-idx", str(fai)]
                    if compressed:
                        args += ["--gzi-idx", extra["filepath_index_compressed"]]
                    pysam.faidx(self.path, *args)
            self._fasta = pysam.FastaFile(self.path, **extra)
        except (OSError, ValueError, pysam.SamtoolsError) as exc:
            hint = ""
            if self.path.endswith(".gz"):
                hint = " (gzip FASTA must be bgzip-compressed: `zcat F.fa.gz | bgzip > F.bgz.fa.gz`)"
            raise InputError(f"cannot open reference '{self.path}': {exc}{hint}") from None
        finally:
            pysam.set_verbosity(quiet)
        self.lengths = dict(zip(self._fasta.references, self._fasta.lengths))
        self._renamed: dict[str, str | None] = {}
        self.renames: dict[str, str] = {}  # user name -> reference name, for logging once

    @property
    def contigs(self) -> list[str]:
        return list(self.lengths)

    def resolve(self, name: str) -> str | None:
        """Reference contig for a user contig name (chr1 <-> 1, chrM <-> MT), None if absent."""
        if name in self.lengths:
            return name
        if name not in self._renamed:
            hits = [c for c in _candidates(name) if c in self.lengths]
            self._renamed[name] = hits[0] if len(hits) == 1 else None
            if self._renamed[name]:
                self.renames[name] = self._renamed[name]
        return self._renamed[name]

    def require(self, name: str) -> str:
        contig = self.resolve(name)
        if contig is None:
            shown = ", ".join(self.contigs[:10]) + (", ..." if len(self.contigs) > 10 else "")
            raise InputError(f"contig '{name}' not in reference {self.path}; it has: {shown}")
        return contig

    def fetch_ids(self, contig: str, start: int, end: int) -> np.ndarray:
        """Ids of contig[start:end] (uint8); positions outside [0, length) read as N."""
        length = self.lengths[contig]
        out = np.full(end - start, N, dtype=np.uint8)
        lo, hi = max(start, 0), min(end, length)
        if hi > lo:
            out[lo - start:hi - start] = encode(self._fasta.fetch(contig, lo, hi))
        return out

    def fetch_text(self, contig: str, start: int, end: int) -> str:
        lo, hi = max(start, 0), min(end, self.lengths[contig])
        return self._fasta.fetch(contig, lo, hi).upper() if hi > lo else ""

    def close(self) -> None:
        self._fasta.close()
