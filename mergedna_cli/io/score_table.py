"""Variant scores as a table (TSV or parquet): one row per ALT allele, in input order; and the
`--skipped` list of unscored alleles."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..atomic import AtomicTextFile, temp_path


class ScoreTableWriter:
    COLUMNS = ("chrom", "pos", "id", "ref", "alt", "score", "status", "method")

    def __init__(self, path: str, fmt: str):
        self.path, self.format = path, fmt
        self.rows: list[tuple] = []
        if path == "-":
            if fmt == "parquet":
                from ..errors import UsageError
                raise UsageError("parquet output needs a file name, not '-'")
            self.tmp, self._out = None, sys.stdout
        else:
            target = Path(path)
            self.tmp = temp_path(target)
            self._out = open(self.tmp, "w") if fmt == "tsv" else None
        if fmt == "tsv":
            self._out.write("\t".join(self.COLUMNS) + "\n")
        self._writer = None

    def add(self, variant, jobs) -> None:
        for alt, job in zip(variant.alts, jobs):
            row = (variant.chrom, variant.start + 1, variant.fields[2], variant.ref, alt,
                   job.score, job.status, job.method)
            if self.format == "tsv":
                score = "." if job.score is None else f"{job.score:.4f}"
                self._out.write("\t".join(map(str, row[:5])) + f"\t{score}\t{job.status}\t{job.method}\n")
            else:
                self.rows.append(row)
                if len(self.rows) >= 65536:
                    self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        columns = list(zip(*self.rows)) if self.rows else [[] for _ in self.COLUMNS]
        types = [pa.string(), pa.int64(), pa.string(), pa.string(), pa.string(), pa.float64(),
                 pa.string(), pa.string()]
        table = pa.table({name: pa.array(list(col), t) for name, col, t in zip(self.COLUMNS, columns, types)})
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema)
        self._writer.write_table(table)
        self.rows.clear()

    def close(self) -> None:
        if self.format == "parquet":
            if self.rows or self._writer is None:
                self._flush()
            self._writer.close()
        elif self.tmp is None:
            self._out.flush()
            return
        else:
            self._out.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.tmp is not None:
            if self._out is not None:
                self._out.close()
            if self._writer is not None:
                self._writer.close()
            self.tmp.unlink(missing_ok=True)


class SkippedWriter(AtomicTextFile):
    """`--skipped FILE`: every unscored allele and why, renamed into place on success."""

    def __init__(self, path: str):
        super().__init__(path, "#chrom\tpos\tid\tref\talt\treason\n")

    def add(self, variant, alt: str, reason: str) -> None:
        self._out.write(f"{variant.chrom}\t{variant.start + 1}\t{variant.fields[2]}\t{variant.ref}\t{alt}\t{reason}\n")
