"""VCF reading and writing that leaves every original field untouched.

Text VCF (plain or bgzip, file or stdin) is read as bytes, line by line, and decoded as UTF-8
with `surrogateescape`: a byte that is not UTF-8 (a Latin-1 `é` in INFO) survives as an escape
and is written back as the same byte, so a record is written back exactly as read plus the new
INFO keys. BCF (file or stdin) goes through pysam and is written as htslib renders it. POS is
1-based in the file and converted to 0-based once, here (`Variant.start`).

`regions` (bcftools `-r/-R` habits) reads only records overlapping them, through the file's
tabix/CSI index; each record is read once even when it overlaps several regions, and records
come in file order.
"""

from __future__ import annotations

import gzip
import importlib
import io
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pysam

from ..atomic import AtomicFile, publish, with_filename
from ..errors import InputError

ENCODING, ERRORS = "utf-8", "surrogateescape"  # bytes in, the same bytes out
FIXED_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
_CONTIG_ALIASES = {"chrM": "MT", "MT": "chrM", "chrMT": "M", "M": "chrMT"}


def decode(raw: bytes) -> str:
    return raw.decode(ENCODING, ERRORS)


def encode_text(text: str) -> bytes:
    return text.encode(ENCODING, ERRORS)


@dataclass
class Variant:
    index: int        # 0-based record number in the input (in the selected records with regions)
    fields: list[str]  # the 8+ tab-separated columns, as read

    @property
    def chrom(self) -> str:
        return self.fields[0]

    @property
    def start(self) -> int:
        """0-based position of REF's first base (-1 for POS 0, a telomere)."""
        return int(self.fields[1]) - 1

    @property
    def ref(self) -> str:
        return self.fields[3]

    @property
    def alts(self) -> list[str]:
        return self.fields[4].split(",")

    def with_info(self, additions: list[str]) -> str:
        fields = list(self.fields)
        info = fields[7].strip(";")  # 'DP=3;' is read as 'DP=3': no empty key before ours
        fields[7] = ";".join(additions) if info in (".", "") else info + ";" + ";".join(additions)
        return "\t".join(fields)


# -- regions (-r / -R) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class VcfRegion:
    chrom: str
    start: int | None = None  # 0-based; None: the whole contig
    end: int | None = None    # exclusive; None: to the contig end


_REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<beg>\d+)(?:-(?P<end>\d*))?)?$")


def parse_regions(text: str) -> list[VcfRegion]:
    """bcftools `-r`: comma-separated `chr`, `chr:beg`, `chr:beg-end` or `chr:beg-` (1-based,
    inclusive)."""
    regions = []
    for part in text.split(","):
        match = _REGION.match(part.strip())
        if not match:
            raise InputError(f"region '{part}' is not chr, chr:beg, chr:beg-end or chr:beg- (1-based)")
        if match["beg"] is None:
            regions.append(VcfRegion(match["chrom"]))
            continue
        beg = int(match["beg"])
        end = None if match["end"] == "" else int(match["end"] if match["end"] is not None else beg)
        if beg < 1 or (end is not None and end < beg):
            raise InputError(f"region '{part}': need 1 <= beg <= end (1-based, inclusive)")
        regions.append(VcfRegion(match["chrom"], beg - 1, end))
    return regions


def read_regions_file(path: str) -> list[VcfRegion]:
    """bcftools `-R`: tab-separated CHROM, POS or CHROM, BEG, END (1-based, inclusive); a file named
    .bed (or .bed.gz) is BED, 0-based half-open. `#` lines are skipped."""
    bed = re.search(r"\.bed(\.b?gz)?$", path) is not None
    try:
        with open(path, "rb") as raw:
            opener = gzip.open if raw.read(2) == b"\x1f\x8b" else open
        handle = opener(path, "rt", errors="replace")
    except IsADirectoryError:
        raise InputError(f"regions file '{path}' is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read regions file '{path}': {exc.strerror}") from None
    regions = []
    with handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\r\n").split("\t")
            try:
                if len(fields) == 2 and not bed:
                    pos = int(fields[1])
                    start, end = pos - 1, pos
                else:
                    start, end = int(fields[1]), int(fields[2])
                    start = start if bed else start - 1
            except (IndexError, ValueError):
                raise InputError(f"{path}:{line_no}: expected CHROM, POS or CHROM, BEG, END "
                                 f"(tab-separated), got {line.strip()[:60]!r}") from None
            if start < 0 or end < start:
                raise InputError(f"{path}:{line_no}: invalid interval {fields[1]}-{fields[2] if len(fields) > 2 else ''}")
            regions.append(VcfRegion(fields[0], start, end))
    return regions


def _plan(regions: list[VcfRegion], contigs: list[str], log) -> list[tuple[str, list[tuple]]]:
    """Regions per indexed contig, in index order, sorted and merged: [(contig, [(start, end)])]."""
    by_contig: dict[str, list[tuple]] = {}
    for region in regions:
        chrom = region.chrom
        if chrom not in contigs:
            hits = [c for c in ([chrom[3:]] if chrom.startswith("chr") else ["chr" + chrom])
                    + ([_CONTIG_ALIASES[chrom]] if chrom in _CONTIG_ALIASES else []) if c in contigs]
            if len(hits) != 1:
                log(f"region contig '{chrom}' has no records in the VCF index: no records from it")
                continue
            chrom = hits[0]
        start = 0 if region.start is None else region.start
        end = float("inf") if region.end is None else region.end
        by_contig.setdefault(chrom, []).append((start, end))
    plan = []
    for contig in contigs:
        if contig not in by_contig:
            continue
        merged: list[list] = []
        for start, end in sorted(by_contig[contig]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        plan.append((contig, [(s, None if e == float("inf") else e) for s, e in merged]))
    return plan


# -- format detection ----------------------------------------------------------------------------
def _inner_head(head: bytes) -> bytes:
    """The first decompressed bytes of a gzip/bgzip stream, or `head` itself."""
    if head[:2] != b"\x1f\x8b":
        return head
    try:
        return zlib.decompressobj(31).decompress(head, 64)
    except zlib.error:
        return b""


def _sniff(head: bytes) -> str:
    """'bcf', 'vcf', 'empty' or 'unknown' from a file's first bytes."""
    inner = _inner_head(head)
    if inner.startswith(b"BCF"):
        return "bcf"
    if not head:
        return "empty"
    if inner.startswith(b"#"):
        return "vcf"
    return "unknown"


class _Prefixed(io.RawIOBase):
    """A stream that yields `head` and then the rest of `rest`: stdin after its first bytes were
    read to tell VCF from BCF (a pipe cannot be rewound)."""

    def __init__(self, head: bytes, rest):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _read_head(stream, size: int = 65536) -> bytes:
    """Up to `size` bytes (fewer only at the end of the stream), however a pipe delivers them."""
    chunks, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _check_bgzf_end(path: str, head: bytes) -> None:
    """A bgzip file cut at a block boundary decompresses cleanly but lacks its end-of-file
    block: refuse it rather than lose its last records without a word."""
    if head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
        return  # plain gzip, or not compressed
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - len(BGZF_EOF)))
        tail = handle.read()
    if tail != BGZF_EOF:
        raise InputError(f"'{path}' is truncated: its bgzip end-of-file block is missing, so records "
                         "may be lost (was it copied or written completely?)")


def _describe(head: bytes) -> str:
    inner = _inner_head(head)[:20]
    return repr(inner.decode("latin-1"))


class VcfReader:
    """Header lines and records of a VCF/BCF; records stream in input order."""

    def __init__(self, path: str, regions: list[VcfRegion] | None = None, log=lambda m: None):
        self.path = str(path)
        self.regions = regions
        self._spool: str | None = None
        self._stdin = None
        if self.path != "-":
            if os.path.isdir(self.path):
                raise InputError(f"VCF '{self.path}' is a directory, not a VCF/BCF file")
            if not os.path.exists(self.path):
                raise InputError(f"VCF '{self.path}' does not exist")
        elif regions is not None:
            raise InputError("-r/-R need an indexed VCF/BCF file, not stdin")
        try:
            if self.path == "-":
                head = _read_head(sys.stdin.buffer)
                self._stdin = io.BufferedReader(_Prefixed(head, sys.stdin.buffer), 1 << 16)
            else:
                with open(self.path, "rb") as handle:
                    head = handle.read(65536)
            kind = _sniff(head)
            if kind == "unknown":
                raise InputError(f"'{self.path}' is not VCF/BCF (it starts with {_describe(head)})")
            if self.path != "-":
                _check_bgzf_end(self.path, head)
            self._bcf = kind == "bcf"
            if self._bcf:
                lines = self._open_bcf(log)
            elif regions is not None:
                lines = self._open_text_regions(log)
            else:
                lines = self._open_text()
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            self.close()
            raise InputError(f"cannot read VCF '{self.path}': {exc}") from None
        if not lines or not lines[-1].startswith("#CHROM"):
            self.close()
            raise InputError(f"{self.path}: not a VCF (no '#CHROM' header line)")
        self.meta_lines, self.column_line = lines[:-1], lines[-1]
        self._check_header()

    # -- opening -------------------------------------------------------------------------------
    def _open_bcf(self, log) -> list[str]:
        path = self.path
        if path == "-":  # htslib reads a file; pysam cannot be handed the bytes peeked from stdin
            fd, self._spool = tempfile.mkstemp(prefix="mergedna-stdin-", suffix=".bcf")
            with os.fdopen(fd, "wb") as spool:
                shutil.copyfileobj(self._stdin, spool, 1 << 20)
            path = self._spool
        quiet = pysam.set_verbosity(0)  # no htslib "index not found" lines on stderr
        try:
            self._vf = pysam.VariantFile(path)
        finally:
            pysam.set_verbosity(quiet)
        header = str(self._vf.header).rstrip("\n").split("\n")
        if self.regions is None:
            self._records = ((None, rec) for rec in self._vf)
        else:
            if self._vf.index is None:
                raise InputError(f"-r/-R need an index for '{self.path}': run `bcftools index {self.path}`")
            self._records = self._fetch(lambda c, s, e: self._vf.fetch(c, s, e),
                                        list(self._vf.index.keys()), log)
        self._lines = self._bcf_lines()
        return header

    def _bcf_lines(self) -> Iterator[str]:
        for _, rec in self._records:
            try:
                yield str(rec).rstrip("\n")
            except UnicodeDecodeError as exc:
                raise InputError(f"{self.path}: record at {rec.chrom}:{rec.pos} is not readable text: {exc}") from None

    def _open_text(self) -> list[str]:
        if self.path == "-":
            raw = self._stdin
            self._handle = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
        else:
            with open(self.path, "rb") as handle:
                magic = handle.read(2)
            self._handle = gzip.open(self.path, "rb") if magic == b"\x1f\x8b" else open(self.path, "rb")
        lines = self._read_header(self._handle)
        self._lines = (decode(line).rstrip("\r\n") for line in self._handle)
        return lines

    def _read_header(self, handle) -> list[str]:
        lines = []
        for raw in handle:
            line = decode(raw).rstrip("\r\n")
            if line.startswith("##"):
                lines.append(line)
                continue
            if not line.startswith("#CHROM"):
                where = f"{self.path}:{len(lines) + 1}"
                raise InputError(f"{where}: header has no '#CHROM' line before the records")
            lines.append(line)
            break
        return lines

    def _open_text_regions(self, log) -> list[str]:
        with open(self.path, "rb") as handle:
            magic = handle.read(2)
        with gzip.open(self.path, "rb") if magic == b"\x1f\x8b" else open(self.path, "rb") as handle:
            lines = self._read_header(handle)
        quiet = pysam.set_verbosity(0)
        try:
            # latin-1 maps every byte to one character, so the line's bytes come back exactly
            index = next((f"{self.path}{ext}" for ext in (".tbi", ".csi")
                          if os.path.isfile(f"{self.path}{ext}")), None)
            self._tabix = pysam.TabixFile(self.path, index=index, encoding="latin-1")
        except (OSError, ValueError):
            raise InputError(f"-r/-R need an indexed VCF: '{self.path}' has no tabix/CSI index "
                             f"(bgzip it and run `tabix -p vcf {self.path}` or `bcftools index`)") from None
        finally:
            pysam.set_verbosity(quiet)
        records = self._fetch(lambda c, s, e: self._tabix.fetch(c, s, e), list(self._tabix.contigs), log)
        self._lines = (decode(line.encode("latin-1")) for _, line in records)
        return lines

    def _fetch(self, fetch, contigs: list[str], log) -> Iterator[tuple[None, object]]:
        """Records overlapping the merged regions, each once: a record that starts before the
        previous region's end already came with that region."""
        for contig, spans in _plan(self.regions, contigs, log):
            previous_end = None
            for start, end in spans:
                for rec in fetch(contig, start, end):
                    if previous_end is not None and _record_start(rec) < previous_end:
                        continue
                    yield None, rec
                previous_end = end

    # -- checks --------------------------------------------------------------------------------
    def _check_header(self) -> None:
        first = self.meta_lines[0] if self.meta_lines else self.column_line
        if not first.startswith("##fileformat=VCF"):
            self.close()
            raise InputError(f"{self.path}:1: the first line must be '##fileformat=VCFv4.x' "
                             f"(found {first[:40]!r})")
        columns = self.column_line.split("\t")
        if tuple(columns[:8]) != FIXED_COLUMNS or len(columns) == 9:
            self.close()
            expected = "\\t".join(FIXED_COLUMNS)
            raise InputError(f"{self.path}:{len(self.meta_lines) + 1}: the '#CHROM' line must start "
                             f"with the 8 tab-separated columns {expected} (plus FORMAT and samples, "
                             f"if any); found {len(columns)} column(s): {self.column_line[:60]!r}")
        self.n_columns = len(columns)

    def __iter__(self) -> Iterator[Variant]:
        line_no = len(self.meta_lines) + 1
        index = 0
        where = self.path
        try:
            for line in self._lines:
                line_no += 1
                if self.regions is None:
                    where = f"{self.path}:{line_no}"
                else:
                    where = f"{self.path} (record {index + 1} in the regions)"
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 8:
                    raise InputError(f"{where}: a VCF record needs 8 tab-separated "
                                     f"columns, found {len(fields)}")
                if not fields[1].isdigit():
                    raise InputError(f"{where}: POS '{fields[1]}' is not a positive integer (or 0, for a telomere)")
                yield Variant(index, fields)
                index += 1
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"cannot read VCF '{self.path}' (line {line_no}): {exc}") from None
        finally:
            self.close()

    def close(self) -> None:
        for name in ("_handle", "_vf", "_tabix"):
            handle = getattr(self, name, None)
            if handle is not None and handle is not getattr(self, "_stdin", None):
                handle.close()
            setattr(self, name, None)
        if self._spool:
            Path(self._spool).unlink(missing_ok=True)
            self._spool = None


def count_indexed_records(path: str) -> int | None:
    """The number of records a VCF/BCF's tabix or CSI index records (read from the index, not
    the file), or None: no index, one older than the file, or one without the counts."""
    try:
        index = next((Path(f"{path}{ext}") for ext in (".tbi", ".csi") if Path(f"{path}{ext}").is_file()), None)
        if index is None or index.stat().st_mtime_ns < Path(path).stat().st_mtime_ns:
            return None
        quiet = pysam.set_verbosity(0)  # no htslib lines on stderr for an index it cannot use
        try:
            return int(importlib.import_module("pysam.bcftools").index("--nrecords", path).strip())
        finally:
            pysam.set_verbosity(quiet)
    except (pysam.SamtoolsError, OSError, ValueError):  # the reader then counts, and reports what is wrong
        return None


def _record_start(rec) -> int:
    if isinstance(rec, str):
        return int(rec.split("\t", 2)[1]) - 1
    return rec.start


# -- output ---------------------------------------------------------------------------------------
OUTPUT_TYPES = {"v": "plain VCF", "z": "bgzip VCF", "b": "BCF", "u": "uncompressed BCF"}


class StdoutHandle:
    """stdout as an output handle: close() flushes it and leaves it open."""

    def write(self, data: bytes) -> int:
        return sys.stdout.buffer.write(data)

    def close(self) -> None:
        sys.stdout.buffer.flush()


class VcfWriter(AtomicFile):
    """'-' (stdout) or a file, as plain VCF (`v`), bgzip VCF + tabix index (`z`), BCF + CSI index
    (`b`) or uncompressed BCF (`u`). Written under a temporary name and renamed on close, so a
    killed run never leaves a complete-looking file; write errors name the output. As a context
    manager it closes on success (indexed unless `sorted_input` was set False) and aborts on an
    exception."""

    def __init__(self, path: str, log=lambda msg: None, output_type: str | None = None):
        self.name, self.log = str(path), log
        if output_type is None:
            output_type = "z" if self.name.endswith((".vcf.gz", ".vcf.bgz")) else \
                "b" if self.name.endswith(".bcf") else "v"
        self.output_type = output_type
        self.compressed = output_type == "z"
        self.bcf = output_type in "bu"
        self.to_stdout = self.name == "-"
        self.sorted_input = True  # records sorted by position: the file can be indexed
        self._text: Path | None = None
        super().__init__(path)

    def _open(self, tmp: Path):
        if self.bcf or (self.to_stdout and self.compressed):
            # BCF is made from the finished text by htslib; stdout gets the finished file
            fd, text = tempfile.mkstemp(prefix=".mergedna-", suffix=".vcf",
                                        dir=None if self.to_stdout else str(self.path.resolve().parent))
            os.close(fd)
            self._text = Path(text)
            return open(self._text, "wb")
        if self.to_stdout:
            return StdoutHandle()
        return pysam.BGZFile(str(tmp), "wb") if self.compressed else open(tmp, "wb")

    def write(self, text: str) -> None:
        self._out.write(encode_text(text))

    def close(self, sorted_input: bool | None = None) -> None:
        if sorted_input is not None:
            self.sorted_input = sorted_input
        try:
            self._close()
        except OSError as exc:
            self.abort()
            raise with_filename(exc, self.name) from None

    def _close(self) -> None:
        self._out.close()  # stdout: flushed, left open
        if self.to_stdout and self._text is None:
            return
        if self._text is not None:
            target = self.tmp
            if self.to_stdout:
                fd, name = tempfile.mkstemp(prefix=".mergedna-", suffix=".out")
                os.close(fd)
                target = Path(name)
            try:
                self._convert(target)
                if self.to_stdout:
                    with open(target, "rb") as handle:
                        shutil.copyfileobj(handle, sys.stdout.buffer, 1 << 20)
                    sys.stdout.buffer.flush()
                    return
            finally:
                self._text.unlink(missing_ok=True)
                if self.to_stdout:
                    target.unlink(missing_ok=True)
        if self.compressed or self.output_type == "b":
            self._index(self.sorted_input)
        publish(self.tmp, self.path)

    def _convert(self, target: Path) -> None:
        mode = {"b": "wb", "u": "wb0", "z": "wz"}[self.output_type]  # u: BGZF blocks at level 0
        quiet = pysam.set_verbosity(0)
        try:
            with pysam.VariantFile(str(self._text)) as text, \
                    pysam.VariantFile(str(target), mode, header=text.header) as out:
                for record in text:
                    out.write(record)
        except ValueError as exc:
            raise InputError(f"cannot write {OUTPUT_TYPES[self.output_type]} '{self.name}': {exc}") from None
        finally:
            pysam.set_verbosity(quiet)

    def _index(self, sorted_input: bool) -> None:
        """Index the temporary file and move the index into place first: the final name never
        holds the new file without its index."""
        suffix = ".csi" if self.bcf else ".tbi"
        index, built = Path(f"{self.name}{suffix}"), None
        if sorted_input:
            try:
                if self.bcf:
                    importlib.import_module("pysam.bcftools").index("--csi", "-f", str(self.tmp), catch_stdout=False)
                    built = str(self.tmp) if Path(f"{self.tmp}.csi").is_file() else None
                else:
                    built = pysam.tabix_index(str(self.tmp), preset="vcf", force=True)
            except (OSError, ValueError, pysam.SamtoolsError):  # a contig's records are not contiguous
                Path(f"{self.tmp}{suffix}").unlink(missing_ok=True)
        if built:
            os.replace(f"{built}{suffix}", index)
        else:
            index.unlink(missing_ok=True)
            self.log(f"input is not sorted by position: {self.name} is written but not indexed")

    def abort(self) -> None:
        try:
            if not (self.to_stdout and self._text is None):  # what went to stdout stays there
                self._out.close()
        except OSError:
            pass
        finally:
            for leftover in (None if self.to_stdout else self.tmp, self._text):
                if leftover is not None:
                    Path(leftover).unlink(missing_ok=True)
