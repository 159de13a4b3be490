"""Variant scores as a table (TSV, optionally bgzip-compressed, or parquet): one row per ALT
allele, in input order; and the `--skipped` list of unscored alleles.

Columns: chrom, pos, id, ref, alt, score (the LLR for SNVs/MNVs, cosine - 1 for indels: lower =
more damaging), status, method, then llr and embdist (the same values on one scale per column, as
the VCF's MDNA_LLR and MDNA_EMBDIST), llr_calibrated with `--calibrate` (MDNA_LLR_CAL), and
ref_logp, alt_logp with `--logprobs`."""

from __future__ import annotations

import sys
from pathlib import Path

from ..atomic import AtomicTextFile, publish, temp_path, with_filename
from ..io.vcf import encode_text

LLR_METHODS = ("snv_llr", "mnv_llr_sum")


def _fmt(value: float | None) -> str:
    return "." if value is None else f"{value:.4f}"


class ScoreTableWriter:
    COLUMNS = ("chrom", "pos", "id", "ref", "alt", "score", "status", "method", "llr", "embdist")
    LOGPROB_COLUMNS = ("ref_logp", "alt_logp")
    CALIBRATED_COLUMNS = ("llr_calibrated",)

    def __init__(self, path: str, fmt: str, compress: bool = False, logprobs: bool = False,
                 calibrated: bool = False):
        self.path, self.format, self.logprobs, self.calibrated = path, fmt, logprobs, calibrated
        self.columns = (self.COLUMNS + (self.CALIBRATED_COLUMNS if calibrated else ())
                        + (self.LOGPROB_COLUMNS if logprobs else ()))
        self.rows: list[tuple] = []
        self._writer = None
        if path == "-":
            if fmt == "parquet":
                from ..errors import UsageError
                raise UsageError("parquet output needs a file name, not '-'")
            self.tmp, self._out = None, sys.stdout.buffer
        else:
            self.tmp = temp_path(Path(path))
            self._out = None
            if fmt == "tsv":
                if compress:
                    import pysam  # bgzip: gzip-compatible, and tabix can index it
                    self._out = pysam.BGZFile(str(self.tmp), "wb")
                else:
                    self._out = open(self.tmp, "wb")
        if fmt == "tsv":
            self._write("\t".join(self.columns) + "\n")

    def _write(self, text: str) -> None:
        try:
            self._out.write(encode_text(text))
        except OSError as exc:
            raise with_filename(exc, self.path) from None

    def add(self, variant, jobs) -> None:
        for alt, job in zip(variant.alts, jobs):
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
                self._write("\t".join(map(str, row[:5])) + f"\t{score}\t{job.status}\t{job.method}\t"
                            + "\t".join(extra) + "\n")
            else:  # Arrow strings are UTF-8: a stray byte becomes U+FFFD there
                self.rows.append(tuple(encode_text(v).decode("utf-8", "replace") if isinstance(v, str) else v
                                       for v in row))
                if len(self.rows) >= 65536:
                    self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        columns = list(zip(*self.rows)) if self.rows else [[] for _ in self.columns]
        types = [pa.string(), pa.int64(), pa.string(), pa.string(), pa.string(), pa.float64(),
                 pa.string(), pa.string()] + [pa.float64()] * (len(self.columns) - 8)
        table = pa.table({name: pa.array(list(col), t) for name, col, t in zip(self.columns, columns, types)})
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema)
        self._writer.write_table(table)
        self.rows.clear()

    def close(self) -> None:
        try:
            if self.format == "parquet":
                if self.rows or self._writer is None:
                    self._flush()
                self._writer.close()
            elif self.tmp is None:
                self._out.flush()
                return
            else:
                self._out.close()
        except OSError as exc:
            self.abort()
            raise with_filename(exc, self.path) from None
        publish(self.tmp, self.path)

    def abort(self) -> None:
        if self.tmp is None:
            return
        try:
            if self._out is not None:
                self._out.close()
            if self._writer is not None:
                self._writer.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


class SkippedWriter(AtomicTextFile):
    """`--skipped FILE`: every unscored allele and why, renamed into place on success."""

    def __init__(self, path: str):
        super().__init__(path, "#chrom\tpos\tid\tref\talt\treason\n")

    def _open(self, tmp: Path):
        return open(tmp, "w", encoding="utf-8", errors="surrogateescape")

    def add(self, variant, alt: str, reason: str) -> None:
        try:
            self._out.write(f"{variant.chrom}\t{variant.start + 1}\t{variant.fields[2]}\t{variant.ref}\t{alt}\t{reason}\n")
        except OSError as exc:
            raise with_filename(exc, self.path) from None
