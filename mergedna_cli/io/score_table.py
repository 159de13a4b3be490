"""Variant scores as a table (TSV, optionally bgzip-compressed, or parquet): one row per ALT
allele, in input order; and the `--skipped` list of unscored alleles.

Columns: chrom, pos, id, ref, alt, score (the LLR for SNVs/MNVs, cosine - 1 for indels: lower =
more damaging), status, method, then llr and embdist (the same values on one scale per column, as
the VCF's MDNA_LLR and MDNA_EMBDIST), llr_calibrated with `--calibrate` (MDNA_LLR_CAL), and
ref_logp, alt_logp with `--logprobs`."""

from __future__ import annotations

from pathlib import Path

from ..atomic import AtomicFile, AtomicTextFile
from ..io.vcf import StdoutHandle, encode_text

LLR_METHODS = ("snv_llr", "mnv_llr_sum")
PARQUET_ROW_GROUP = 65536  # rows buffered before they are written as one row group


def _fmt(value: float | None) -> str:
    return "." if value is None else f"{value:.4f}"


def columns(logprobs: bool = False, calibrated: bool = False) -> tuple[str, ...]:
    return (ScoreTableWriter.COLUMNS + (ScoreTableWriter.CALIBRATED_COLUMNS if calibrated else ())
            + (ScoreTableWriter.LOGPROB_COLUMNS if logprobs else ()))


class _TableRenderer:
    """A record's rows: TSV text, or parquet row tuples (Arrow strings are UTF-8: a byte that is
    not becomes U+FFFD there)."""

    def __init__(self, fmt: str, logprobs: bool, calibrated: bool):
        self.format, self.logprobs, self.calibrated = fmt, logprobs, calibrated

    def __call__(self, variant, results) -> str | list[tuple]:
        rows: list[tuple] = []
        text = []
        for alt, job in zip(variant.alts, results):
            llr = job.score if job.method in LLR_METHODS else None
            embdist = None
            if job.method == "indel_embedding_cosine" and job.score is not None:
                embdist = max(0.0, -job.score)
            row = (variant.chrom, variant.start + 1, variant.fields[2], variant.ref, alt,
                   job.score, job.status, job.method, llr, embdist)
            if self.calibrated:
                row += (job.calibrated,)
            if self.logprobs:
                row += (job.ref_logp, job.alt_logp)
            if self.format == "tsv":
                score = _fmt(job.score)
                extra = [_fmt(llr), "." if embdist is None else f"{embdist:.4g}"]
                if self.calibrated:
                    extra.append(_fmt(job.calibrated))
                if self.logprobs:
                    extra += [_fmt(job.ref_logp), _fmt(job.alt_logp)]
                text.append("\t".join(map(str, row[:5])) + f"\t{score}\t{job.status}\t{job.method}\t"
                            + "\t".join(extra) + "\n")
            else:
                rows.append(tuple(encode_text(v).decode("utf-8", "replace") if isinstance(v, str) else v
                                  for v in row))
        return "".join(text) if self.format == "tsv" else rows


class _ParquetRows:
    """Rows to a parquet file, PARQUET_ROW_GROUP at a time; the file is created with the first
    row group (an empty table still gets one, with the schema)."""

    def __init__(self, path: Path, names: tuple[str, ...]):
        self.path, self.names = path, names
        self.rows: list = []
        self._writer = None

    def write(self, rows) -> None:
        for row in rows:
            self.rows.append(row)
            if len(self.rows) >= PARQUET_ROW_GROUP:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        columns = list(zip(*self.rows)) if self.rows else [[] for _ in self.names]
        types = [pa.string(), pa.int64(), pa.string(), pa.string(), pa.string(), pa.float64(),
                 pa.string(), pa.string()] + [pa.float64()] * (len(self.names) - 8)
        table = pa.table({name: pa.array(list(col), t) for name, col, t in zip(self.names, columns, types)})
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)
        self.rows.clear()

    def close(self) -> None:
        if self.rows or self._writer is None:
            self._flush()
        self._writer.close()

    def discard(self) -> None:
        self.rows.clear()
        if self._writer is not None:
            self._writer.close()


class ScoreTableWriter(AtomicFile):
    """The table, written under a temporary name and renamed on close() ('-': TSV to stdout).
    add(variant, results) writes a record's rows; write() takes rows already rendered
    (renderer(): TSV text, or parquet row tuples)."""

    COLUMNS = ("chrom", "pos", "id", "ref", "alt", "score", "status", "method", "llr", "embdist")
    LOGPROB_COLUMNS = ("ref_logp", "alt_logp")
    CALIBRATED_COLUMNS = ("llr_calibrated",)

    def __init__(self, path: str, fmt: str, compress: bool = False, logprobs: bool = False,
                 calibrated: bool = False):
        if path == "-" and fmt == "parquet":
            from ..errors import UsageError
            raise UsageError("parquet output needs a file name, not '-'")
        self.format, self.compress, self.logprobs, self.calibrated = fmt, compress, logprobs, calibrated
        self.to_stdout = path == "-"
        self.columns = columns(logprobs, calibrated)
        self._render = self.renderer(fmt, logprobs, calibrated)
        super().__init__(path)
        if fmt == "tsv":
            self.write("\t".join(self.columns) + "\n")

    @staticmethod
    def renderer(fmt: str, logprobs: bool = False, calibrated: bool = False) -> _TableRenderer:
        return _TableRenderer(fmt, logprobs, calibrated)

    def _open(self, tmp: Path):
        if self.to_stdout:
            return StdoutHandle()
        if self.format == "parquet":
            return _ParquetRows(tmp, self.columns)
        if self.compress:
            import pysam  # bgzip: gzip-compatible, and tabix can index it
            return pysam.BGZFile(str(tmp), "wb")
        return open(tmp, "wb")

    def add(self, variant, results) -> None:
        self.write(self._render(variant, results))

    def write(self, rows: str | list) -> None:
        """TSV text, or parquet row tuples."""
        self._out.write(encode_text(rows) if isinstance(rows, str) else rows)

    def close(self) -> None:
        if self.to_stdout:
            self._out.close()
            return
        super().close()

    def abort(self) -> None:
        if self.to_stdout:
            return  # what was written is on stdout already
        if self.format == "parquet":
            try:
                self._out.discard()  # rows still buffered are not written on the way out
            except Exception:  # noqa: BLE001 - the error being handled is the one that matters
                pass
            finally:
                self.tmp.unlink(missing_ok=True)
            return
        super().abort()


def skipped_line(variant, alt: str, reason: str) -> str:
    """A --skipped line: the allele and why it was not scored."""
    return f"{variant.chrom}\t{variant.start + 1}\t{variant.fields[2]}\t{variant.ref}\t{alt}\t{reason}\n"


class SkippedWriter(AtomicTextFile):
    """`--skipped FILE`: every unscored allele and why, renamed into place on success."""

    def __init__(self, path: str):
        super().__init__(path, "#chrom\tpos\tid\tref\talt\treason\n")

    def _open(self, tmp: Path):
        return open(tmp, "w", encoding="utf-8", errors="surrogateescape")

    def add(self, variant, alt: str, reason: str) -> None:
        self.write(skipped_line(variant, alt, reason))

    def write(self, text: str) -> None:
        self._out.write(text)
