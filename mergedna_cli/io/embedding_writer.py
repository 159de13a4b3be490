"""Streaming writers for region embeddings: parquet, TSV or .npz, chosen by extension.

Parquet and TSV are written in row batches (flat memory); .npz is assembled in memory at the end.
The writer is an `AtomicFile`: it writes to a temporary name and renames on `close()`; `abort()`
(or leaving a `with` block on an exception) removes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import AtomicFile
from ..errors import UsageError

FORMATS = {".parquet": "parquet", ".tsv": "tsv", ".npz": "npz"}


def format_for(path: str) -> str:
    for suffix, fmt in FORMATS.items():
        if str(path).endswith(suffix):
            return fmt
    raise UsageError(f"output '{path}': choose an extension among {', '.join(FORMATS)}")


class _Sink:
    """The handle behind a parquet or .npz output: `close()` writes what is still buffered and
    closes the file; after `discard()` it only closes what is open (an aborted output)."""

    def __init__(self, writer: EmbeddingWriter):
        self.writer, self.discarded = writer, False

    def discard(self) -> None:
        self.discarded = True

    def close(self) -> None:
        self.writer._finish(self.discarded)


class EmbeddingWriter(AtomicFile):
    def __init__(self, path: str, dim: int, per_token: bool, batch_rows: int = 512):
        self.dim, self.per_token = dim, per_token
        self.format = format_for(path)
        if per_token and self.format == "tsv":
            raise UsageError("--per-token needs a .parquet or .npz output (token lists do not fit a TSV row)")
        self.rows: list[dict] = []
        self.batch_rows = batch_rows
        self._writer = None
        self._npz: list[dict] = []
        super().__init__(path)
        if self.format == "tsv":
            self._out.write("\t".join(["chrom", "start", "end", "name"] +
                                      [f"emb_{i}" for i in range(dim)]) + "\n")

    def _open(self, tmp: Path):
        return open(tmp, "w") if self.format == "tsv" else _Sink(self)

    def add(self, item) -> None:
        r = item.region
        row = {"chrom": r.chrom, "start": r.start, "end": r.end, "name": r.name,
               "embedding": item.embedding}
        if self.per_token:
            row.update(token_starts=item.token_starts, token_ends=item.token_ends,
                       token_vectors=item.token_vectors)
        if self.format == "tsv":
            self._out.write(f"{r.chrom}\t{r.start}\t{r.end}\t{r.name}\t" +
                            "\t".join(f"{v:.6g}" for v in item.embedding) + "\n")
            return
        (self._npz if self.format == "npz" else self.rows).append(row)
        if len(self.rows) >= self.batch_rows:
            self._flush_parquet()

    def _schema(self):
        import pyarrow as pa
        fields = [("chrom", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("name", pa.string()),
                  ("embedding", pa.list_(pa.float32(), self.dim))]
        if self.per_token:
            fields += [("token_starts", pa.list_(pa.int64())), ("token_ends", pa.list_(pa.int64())),
                       ("token_vectors", pa.list_(pa.list_(pa.float32(), self.dim)))]
        return pa.schema(fields)

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        columns = {
            "chrom": pa.array([r["chrom"] for r in self.rows], pa.string()),
            "start": pa.array([r["start"] for r in self.rows], pa.int64()),
            "end": pa.array([r["end"] for r in self.rows], pa.int64()),
            "name": pa.array([r["name"] for r in self.rows], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(np.concatenate([r["embedding"] for r in self.rows]), pa.float32()), self.dim),
        }
        if self.per_token:
            columns["token_starts"] = pa.array([r["token_starts"] for r in self.rows], pa.list_(pa.int64()))
            columns["token_ends"] = pa.array([r["token_ends"] for r in self.rows], pa.list_(pa.int64()))
            columns["token_vectors"] = pa.array([list(r["token_vectors"]) for r in self.rows],
                                                pa.list_(pa.list_(pa.float32(), self.dim)))
        table = pa.table(columns, schema=self._schema())
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema)
        self._writer.write_table(table)
        self.rows.clear()

    def _finish(self, discarded: bool) -> None:
        """Write what is buffered and close the parquet or .npz file (AtomicFile.close renames
        it into place); an aborted output only closes what is open."""
        if discarded:
            if self._writer is not None:
                self._writer.close()
        elif self.format == "parquet":
            self._flush_parquet()
            if self._writer is None:  # no rows at all: an empty file with the full schema
                import pyarrow.parquet as pq
                pq.write_table(self._schema().empty_table(), self.tmp)
            else:
                self._writer.close()
        else:
            arrays = {
                "chrom": np.array([r["chrom"] for r in self._npz], dtype=str),
                "start": np.array([r["start"] for r in self._npz], dtype=np.int64),
                "end": np.array([r["end"] for r in self._npz], dtype=np.int64),
                "name": np.array([r["name"] for r in self._npz], dtype=str),
                "embedding": np.stack([r["embedding"] for r in self._npz]) if self._npz
                else np.zeros((0, self.dim), np.float32),
            }
            if self.per_token:
                counts = np.array([len(r["token_starts"]) for r in self._npz], dtype=np.int64)
                empty_vectors = [np.zeros((0, self.dim), np.float32)]
                arrays.update(
                    token_offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
                    token_starts=np.concatenate([r["token_starts"] for r in self._npz] + [np.zeros(0, np.int64)]),
                    token_ends=np.concatenate([r["token_ends"] for r in self._npz] + [np.zeros(0, np.int64)]),
                    token_vectors=np.concatenate([r["token_vectors"] for r in self._npz] + empty_vectors))
            with open(self.tmp, "wb") as handle:
                np.savez(handle, **arrays)

    def abort(self) -> None:
        if self.format != "tsv":
            self._out.discard()
        super().abort()
