"""Sequence sets for fine-tuning and prediction: a TSV/CSV table, a BED + reference, or a FASTA.

Every reader returns a `SequenceSet`: one sequence per input row, the row's own columns (kept for
the prediction table) and its label when the file has one. Problems are reported with the file
and row they come from: a missing column, an empty sequence, a character other than A/C/G/T/N, a
row without a label. Tables are small (benchmark sets are thousands of rows), so they are read
whole.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .regions import BedWording, parse_bed

_INVALID_BASE = re.compile(r"[^ACGTNacgtn]")
_FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")


@dataclass
class SequenceSet:
    source: str
    sequences: list[str]
    columns: list[str]  # names of the kept input columns, in file order
    rows: list[list[str]]  # the kept columns of every row
    labels: list[str] | None = None  # one per row when the input has a label column
    row_numbers: list[int] = field(default_factory=list)  # 1-based line numbers, for messages

    def __len__(self) -> int:
        return len(self.sequences)

    def where(self, index: int) -> str:
        return f"{self.source} line {self.row_numbers[index]}" if self.row_numbers else self.source


def _stem(path: str) -> str:
    name = Path(path).name.lower()
    return name[:-3] if name.endswith(".gz") else name


def input_kind(path: str) -> str:
    """'table' (.tsv/.csv/.txt), 'bed' or 'fasta', from the file name."""
    stem = _stem(path)
    if stem.endswith(".bed"):
        return "bed"
    if stem.endswith(_FASTA_SUFFIXES):
        return "fasta"
    return "table"


def _open_text(path: str):
    if not Path(path).is_file():
        raise InputError(f"input '{path}' does not exist")
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", newline="") if gzipped else open(path, newline="")


def check_sequence(seq: str, where: str) -> str:
    if not seq:
        raise InputError(f"{where}: empty sequence")
    bad = _INVALID_BASE.search(seq)
    if bad:
        raise InputError(f"{where}: sequence has the character '{bad.group()}' at position "
                         f"{bad.start() + 1}; only A, C, G, T and N are accepted")
    return seq.upper()


def _check_labels(labels: list[str], data: SequenceSet) -> None:
    for i, label in enumerate(labels):
        if label == "":
            raise InputError(f"{data.where(i)}: empty label")


def read_table(path: str, sequence_column: str = "sequence", label_column: str | None = "label",
               require_label: bool = False) -> SequenceSet:
    """TSV (tab) or CSV (comma, from a .csv name) with a header row."""
    csv.field_size_limit(sys.maxsize)
    delimiter = "," if _stem(path).endswith(".csv") else "\t"
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: empty file (expected a header row with a "
                             f"'{sequence_column}' column)")
        header = [h.strip() for h in header]
        if sequence_column not in header:
            raise InputError(f"{path}: no '{sequence_column}' column (columns: {', '.join(header)})")
        has_label = label_column is not None and label_column in header
        if require_label and not has_label:
            raise InputError(f"{path}: no '{label_column}' column (columns: {', '.join(header)})")
        s_col = header.index(sequence_column)
        l_col = header.index(label_column) if has_label else None
        data = SequenceSet(path, [], header, [], [] if has_label else None)
        for line, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise InputError(f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
            data.row_numbers.append(line)
            data.sequences.append(check_sequence(row[s_col].strip(), f"{path} line {line}"))
            data.rows.append(row)
            if l_col is not None:
                data.labels.append(row[l_col].strip())
    if not data.sequences:
        raise InputError(f"{path}: no rows after the header")
    if data.labels is not None:
        _check_labels(data.labels, data)
    return data


def _bed_label_index(label_column: str | None, header: list[str] | None, n_fields: int) -> int | None:
    """A 1-based number, a name from a '#' header line, or the default 'label' -> column 4."""
    if label_column is None:
        return None
    if label_column.isdigit():
        index = int(label_column) - 1
    elif header and label_column in header:
        index = header.index(label_column)
    elif label_column == "label":
        index = 3
    else:
        raise InputError(f"BED has no column named '{label_column}'; give its number (1-based)")
    if index < 3 or index >= n_fields:
        return None
    return index


_BED_WORDING = BedWording(where="{path} line {line_no}", columns="{where}: a BED line needs chrom, start and end",
                          integers="{where}: start and end must be integers",
                          interval="{where}: need 0 <= start < end, got {start}-{end}")


def read_bed(path: str, fasta: str | os.PathLike, label_column: str | None = "label",
             require_label: bool = False) -> SequenceSet:
    """BED intervals, sequences fetched from the reference; a '-' in column 6 reverse-complements."""
    from ..alphabet import decode, reverse_complement
    from .reference import Reference

    reference = Reference(fasta)
    header, data, index = None, None, None

    def read_header(line: str) -> None:
        nonlocal header
        header = line.lstrip("#").strip().split("\t")

    def choose_columns(fields: list[str]) -> None:
        nonlocal data, index
        index = _bed_label_index(label_column, header, len(fields))
        if require_label and index is None:
            raise InputError(f"{path}: no label column (give --label-column N, 1-based; "
                             f"the first line has {len(fields)} columns)")
        columns = header if header and len(header) == len(fields) else (
            ["chrom", "start", "end"] + [f"col{i + 1}" for i in range(3, len(fields))])
        data = SequenceSet(path, [], columns, [], [] if index is not None else None)

    with _open_text(path) as handle:
        for bed in parse_bed(handle, path, _BED_WORDING, empty=False, header=read_header,
                             first=choose_columns):
            fields, start, end, line_no = bed.fields, bed.start, bed.end, bed.line_no
            where = f"{path} line {line_no}"
            contig = reference.require(fields[0])
            if end > reference.lengths[contig]:
                raise InputError(f"{where}: {fields[0]}:{start}-{end} runs past the end of the contig "
                                 f"({reference.lengths[contig]:,} bases)")
            ids = reference.fetch_ids(contig, start, end)
            if len(fields) > 5 and fields[5] == "-":
                ids = reverse_complement(ids)
            data.row_numbers.append(line_no)
            data.sequences.append(decode(ids))
            data.rows.append(fields)
            if index is not None:
                if index >= len(fields):
                    raise InputError(f"{where}: no column {index + 1} for the label")
                data.labels.append(fields[index].strip())
    reference.close()
    if data is None:
        raise InputError(f"{path}: no BED intervals")
    if data.labels is not None:
        _check_labels(data.labels, data)
    return data


def read_fasta(path: str) -> SequenceSet:
    from .fasta_records import iter_fasta_records

    if not Path(path).is_file():
        raise InputError(f"input '{path}' does not exist")
    data = SequenceSet(path, [], ["id"], [])
    for number, (name, seq) in enumerate(iter_fasta_records(path), start=1):
        data.sequences.append(check_sequence(seq, f"{path} record {number} ('{name}')"))
        data.rows.append([name])
    if not data.sequences:
        raise InputError(f"{path}: no FASTA records")
    return data


def read_sequences(path: str, fasta: str | os.PathLike | None = None,
                   sequence_column: str = "sequence", label_column: str | None = "label",
                   require_label: bool = False) -> SequenceSet:
    """Any supported input, chosen by its file name."""
    kind = input_kind(str(path))
    if kind == "bed":
        if fasta is None:
            raise InputError(f"{path} is a BED file: give the reference with --fasta")
        return read_bed(str(path), fasta, label_column, require_label)
    if kind == "fasta":
        if require_label:
            raise InputError(f"{path} is a FASTA file, which has no labels: give a TSV/CSV with "
                             f"'{sequence_column}' and '{label_column}' columns or a BED with a label column")
        return read_fasta(str(path))
    return read_table(str(path), sequence_column, label_column, require_label)
