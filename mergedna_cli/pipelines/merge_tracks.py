"""`mergedna merge-tracks`: one set of tracks from several `mergedna tracks` outputs.

The gather step of a pipeline that runs `tracks` per contig: parts are put in reference order by
their first token, BED files are concatenated byte for byte, bigWigs are rewritten block by block
(bigWig has no cheap concatenation), counts in the JSON are summed. Parts must come from the same
model and settings and must not overlap; every output is written under a temporary name.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyBigWig

from ..atomic import atomic_write
from ..errors import InputError, UsageError
from ..io.reference import Reference
from ..io.tracks_writer import BigWigWriter, track_files
from .progress import Logger
from .tracks import META_FILE, check_prefix

BLOCK = 1 << 20  # bases read from a part's bigWig at a time
SETTINGS = ("model", "weights_sha256", "compression", "context", "flank", "signals")
COUNTS = ("regions", "bases", "tokens", "windows")


def _bed_lines(path: Path) -> tuple[str | None, list[str], list[str]]:
    """(track line or None, first token fields, last token fields) of a part's BED; empty lists
    for a part without tokens."""
    with open(path, "rb") as handle:
        head = handle.readline().decode()
        track = head.rstrip("\n") if head.startswith("track") else None
        first = handle.readline().decode() if track else head
        handle.seek(max(0, path.stat().st_size - 4096))
        tail = handle.read().decode(errors="replace").rstrip("\n").split("\n")[-1]
    if not first.strip():
        return track, [], []
    return track, first.rstrip("\n").split("\t"), tail.split("\t")


@dataclass(frozen=True)
class MergeTracksRequest:
    """`mergedna merge-tracks`, as parsed by cli/tracks.py."""

    parts: tuple[str, ...]  # output prefixes of `mergedna tracks` runs, in any order
    fasta: str
    out: str                # output prefix


def run(request: MergeTracksRequest, log: Logger | None = None) -> dict:
    log = log or Logger()
    check_prefix(request.out)
    if request.out in request.parts:
        raise UsageError(f"-o {request.out} is one of the parts; choose another prefix")
    meta = merge_tracks(Reference(request.fasta), list(request.parts), request.out, log=log.info)
    log.info(f"wrote {request.out}.tokens.bed and bigWigs: {meta['tokens']:,} tokens over {meta['bases']:,} bases "
             f"from {len(request.parts)} parts")
    return meta


def merge_tracks(reference: Reference, parts: list[str], prefix: str, log=lambda m: None) -> dict:
    metas = []
    for part in parts:
        path = Path(f"{part}.{META_FILE}")
        if not path.is_file():
            raise InputError(f"'{part}' is not a `mergedna tracks` output: {path} does not exist")
        metas.append(json.loads(path.read_text()))
    for part, meta in zip(parts[1:], metas[1:]):
        differ = [key for key in SETTINGS if meta.get(key) != metas[0].get(key)]
        if differ:
            raise InputError(f"'{part}' was made with other settings than '{parts[0]}': {', '.join(differ)} differ")
    names = track_files(bool(metas[0].get("signals")))
    for part in parts:
        for name in names:
            if not os.path.isfile(f"{part}.{name}"):
                raise InputError(f"'{part}.{name}' does not exist")

    order = {name: i for i, name in enumerate(reference.contigs)}
    beds = {part: _bed_lines(Path(f"{part}.tokens.bed")) for part in parts}
    for part, (_, first, _) in beds.items():
        if first and first[0] not in order:
            raise InputError(f"'{part}.tokens.bed': contig '{first[0]}' is not in {reference.path}")
    filled = sorted((p for p in parts if beds[p][1]), key=lambda p: (order[beds[p][1][0]], int(beds[p][1][1])))
    for before, after in itertools.pairwise(filled):
        last, first = beds[before][2], beds[after][1]
        if (order[first[0]], int(first[1])) < (order[last[0]], int(last[2])):
            raise InputError(f"'{after}' overlaps '{before}' at {first[0]}:{int(first[1]) + 1}")
    log(f"merging {len(filled)} parts ({len(parts) - len(filled)} without tokens)")

    _concatenate_beds(filled, beds, Path(f"{prefix}.tokens.bed"), track=next(
        (beds[p][0] for p in parts if beds[p][0]), None))
    chrom_sizes = [(c, reference.lengths[c]) for c in reference.contigs]
    for name in names[1:]:
        _merge_bigwigs(filled, beds, name, f"{prefix}.{name}", chrom_sizes, order)

    merged = {**metas[0], **{key: sum(m.get(key, 0) for m in metas) for key in COUNTS}}
    merged["mean_token_length"] = merged["bases"] / max(merged["tokens"], 1)
    merged["merged_from"] = len(parts)
    atomic_write(f"{prefix}.{META_FILE}", lambda tmp: tmp.write_text(json.dumps(merged, indent=2)), durable=True)
    return merged


def _concatenate_beds(parts: list[str], beds: dict, out: Path, track: str | None) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as sink:
            if track:
                sink.write((track + "\n").encode())
            for part in parts:
                with open(f"{part}.tokens.bed", "rb") as source:
                    if beds[part][0]:
                        source.readline()  # the part's own track line
                    shutil.copyfileobj(source, sink)

    atomic_write(out, write)


def _merge_bigwigs(parts: list[str], beds: dict, name: str, out: str, chrom_sizes, order) -> None:
    """Every part's values, read between its first and last token, in reference order."""
    contigs = [c for c, _ in chrom_sizes]
    with BigWigWriter(out, chrom_sizes) as writer:
        for part in parts:
            source = pyBigWig.open(f"{part}.{name}")
            try:
                if source.chroms() != dict(chrom_sizes):
                    raise InputError(f"'{part}.{name}' was made on a different reference (contig sizes differ)")
                first, last = beds[part][1], beds[part][2]
                for index in range(order[first[0]], order[last[0]] + 1):
                    contig = contigs[index]
                    lo = int(first[1]) if index == order[first[0]] else 0
                    hi = int(last[2]) if index == order[last[0]] else source.chroms()[contig]
                    for start in range(lo, hi, BLOCK):
                        end = min(start + BLOCK, hi)
                        values = np.asarray(source.values(contig, start, end, numpy=True), dtype=np.float64)
                        if not np.isnan(values).all():
                            writer.write(contig, start, values)
            finally:
                source.close()
