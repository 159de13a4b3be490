"""VCF reading and writing that leaves every original field untouched.

Text VCF (plain or bgzip, file or stdin) is handled line by line, so a record is written back
exactly as read plus the new INFO keys; BCF goes through pysam and is written as htslib renders
it. POS is 1-based in the file and converted to 0-based once, here (`Variant.start`).
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pysam

from ..atomic import temp_path
from ..errors import InputError


@dataclass
class Variant:
    index: int        # 0-based record number in the input
    fields: list[str]  # the 8+ tab-separated columns, as read

    @property
    def chrom(self) -> str:
        return self.fields[0]

    @property
    def start(self) -> int:
        """0-based position of REF's first base."""
        return int(self.fields[1]) - 1

    @property
    def ref(self) -> str:
        return self.fields[3]

    @property
    def alts(self) -> list[str]:
        return self.fields[4].split(",")

    def with_info(self, additions: list[str]) -> str:
        fields = list(self.fields)
        info = fields[7]
        fields[7] = ";".join(additions) if info in (".", "") else info + ";" + ";".join(additions)
        return "\t".join(fields)


def _open_text(path: str):
    if path == "-":
        raw = sys.stdin.buffer
        peek = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
        if peek[:2] == b"\x1f\x8b":
            return io.TextIOWrapper(gzip.GzipFile(fileobj=raw))
        return io.TextIOWrapper(raw)
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt")
    return open(path)


def _is_bcf(path: str) -> bool:
    if path == "-":
        return False
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as handle:
        return handle.read(3) == b"BCF"


class VcfReader:
    """Header lines and records of a VCF/BCF; records stream in input order."""

    def __init__(self, path: str):
        self.path = str(path)
        if self.path != "-" and not os.path.isfile(self.path):
            raise InputError(f"VCF '{self.path}' does not exist")
        try:
            self._bcf = _is_bcf(self.path)
            if self._bcf:
                quiet = pysam.set_verbosity(0)  # no htslib "index not found" lines on stderr
                try:
                    self._vf = pysam.VariantFile(self.path)
                finally:
                    pysam.set_verbosity(quiet)
                lines = str(self._vf.header).rstrip("\n").split("\n")
                self._lines = (str(rec).rstrip("\n") for rec in self._vf)
            else:
                self._handle = _open_text(self.path)
                lines = []
                for line in self._handle:
                    line = line.rstrip("\r\n")
                    if line.startswith("##"):
                        lines.append(line)
                        continue
                    if not line.startswith("#CHROM"):
                        raise InputError(f"{self.path}: header has no '#CHROM' line before the records")
                    lines.append(line)
                    break
                self._lines = (line.rstrip("\r\n") for line in self._handle)
        except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read VCF '{self.path}': {exc}") from None
        if not lines or not lines[-1].startswith("#CHROM"):
            raise InputError(f"{self.path}: not a VCF (no '#CHROM' header line)")
        self.meta_lines, self.column_line = lines[:-1], lines[-1]

    def __iter__(self) -> Iterator[Variant]:
        line_no = len(self.meta_lines) + 1
        index = 0
        try:
            for line in self._lines:
                line_no += 1
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 8:
                    raise InputError(f"{self.path}:{line_no}: a VCF record needs 8 tab-separated "
                                     f"columns, found {len(fields)}")
                if not fields[1].isdigit() or int(fields[1]) < 1:
                    raise InputError(f"{self.path}:{line_no}: POS '{fields[1]}' is not a positive integer")
                yield Variant(index, fields)
                index += 1
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read VCF '{self.path}' (line {line_no}): {exc}") from None


class VcfWriter:
    """'-' (stdout), .vcf, or .vcf.gz (bgzip + tabix index). Written under a temporary name and
    renamed on close, so a killed run never leaves a complete-looking file."""

    def __init__(self, path: str, log=lambda msg: None):
        self.path, self.log = path, log
        self.compressed = path.endswith((".vcf.gz", ".vcf.bgz"))
        if path == "-":
            self._out = sys.stdout
            self.tmp = None
        else:
            target = Path(path)
            self.tmp = temp_path(target)
            self._out = (pysam.BGZFile(str(self.tmp), "wb") if self.compressed
                         else open(self.tmp, "w"))

    def write(self, text: str) -> None:
        if self.compressed:
            self._out.write(text.encode())
        else:
            self._out.write(text)

    def close(self, sorted_input: bool = True) -> None:
        if self.tmp is None:
            self._out.flush()
            return
        self._out.close()
        if self.compressed:
            # Index the temporary file and move the index into place first: the final name never
            # holds the new file without its index.
            index, built = Path(f"{self.path}.tbi"), None
            if sorted_input:
                try:
                    built = pysam.tabix_index(str(self.tmp), preset="vcf", force=True)
                except (OSError, ValueError):  # a contig's records are not contiguous
                    Path(f"{self.tmp}.tbi").unlink(missing_ok=True)
            if built:
                os.replace(f"{built}.tbi", index)
            else:
                index.unlink(missing_ok=True)
                self.log(f"input is not sorted by position: {self.path} is bgzipped but not indexed")
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.tmp is not None:
            self._out.close()
            self.tmp.unlink(missing_ok=True)
