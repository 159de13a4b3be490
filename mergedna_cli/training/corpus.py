"""A pre-training corpus encoded once into a uint8 memmap, and the random-window sampler.

The cache holds the ids of every record back to back (corpus.bin) plus an index (corpus.json).
It is keyed by the files' paths, sizes and mtimes and the excluded regions, so it is rebuilt
only when an input changes; the training loop then slices windows straight out of the memmap.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..alphabet import N, encode, reverse_complement
from ..errors import InputError
from ..io.fasta_records import iter_fasta_records


@dataclass(frozen=True)
class CorpusSource:
    path: str
    weight: float = 1.0  # sampling weight per base, relative to other files


@dataclass
class Record:
    file: int
    name: str
    offset: int
    length: int


def read_bed_intervals(bed_path: str, regions: dict | None = None) -> dict[str, list[tuple[int, int]]]:
    """BED (0-based half-open, names as in the FASTA headers) -> {record: [(start, end)]}."""
    regions = {} if regions is None else regions
    if not os.path.isfile(bed_path):
        raise InputError(f"BED file '{bed_path}' does not exist")
    with open(bed_path) as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                start, end = int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise InputError(f"{bed_path}:{line_no}: expected 'chrom<TAB>start<TAB>end', "
                                 f"got {line.strip()!r}") from None
            if start < 0 or end < start:
                raise InputError(f"{bed_path}:{line_no}: invalid interval {start}-{end}")
            regions.setdefault(fields[0], []).append((start, end))
    return regions


def _cache_key(sources: list[CorpusSource], exclude_beds: list[str]) -> str:
    parts = []
    for src in sources + [CorpusSource(bed) for bed in exclude_beds]:
        st = os.stat(src.path)
        parts.append(f"{os.path.abspath(src.path)}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Corpus:
    """Encoded sequence of several FASTA files with per-file sampling weights."""

    def __init__(self, ids: np.ndarray, records: list[Record], sources: list[CorpusSource]):
        self.ids, self.records, self.sources = ids, records, sources

    @classmethod
    def build(cls, sources: list[CorpusSource], cache_dir: str | os.PathLike,
              exclude_beds: list[str] = (), log=lambda msg: None) -> "Corpus":
        """Encode (or reuse the cached encoding of) the sources; bases inside `exclude_beds`
        intervals become N, so no training window can be mostly made of them."""
        exclude_beds = list(exclude_beds)
        cache = Path(cache_dir) / f"corpus-{_cache_key(sources, exclude_beds)}"
        index_path, data_path = cache / "corpus.json", cache / "corpus.bin"
        if not index_path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            exclusions: dict = {}
            for bed in exclude_beds:
                read_bed_intervals(bed, exclusions)
            records, offset = [], 0
            tmp = data_path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as out:
                for file_idx, src in enumerate(sources):
                    for name, seq in iter_fasta_records(src.path):
                        ids = encode(seq)
                        for start, end in exclusions.get(name, []):
                            ids[max(0, start):max(0, end)] = N  # excluded bases read as N
                        out.write(ids.tobytes())
                        records.append(Record(file_idx, name, offset, len(ids)))
                        offset += len(ids)
                    log(f"encoded {src.path}")
            os.replace(tmp, data_path)
            index = {"records": [vars(r) for r in records]}
            tmp_index = index_path.with_suffix(f".tmp{os.getpid()}")
            tmp_index.write_text(json.dumps(index))
            os.replace(tmp_index, index_path)
        index = json.loads(index_path.read_text())
        records = [Record(**r) for r in index["records"]]
        ids = np.memmap(data_path, dtype=np.uint8, mode="r")
        return cls(ids, records, sources)

    def file_lengths(self) -> np.ndarray:
        lengths = np.zeros(len(self.sources), dtype=np.int64)
        for r in self.records:
            lengths[r.file] += r.length
        return lengths


class WindowSampler:
    """Random training windows: files by weight x length, positions uniform inside records.

    Windows with more than `max_n_fraction` N are redrawn; half of the windows are reverse
    complemented. Each DDP rank passes its own seed, so ranks see different windows.
    """

    def __init__(self, corpus: Corpus, context: int, seed: int, max_n_fraction: float = 0.1,
                 reverse_complement_prob: float = 0.5):
        self.corpus, self.context = corpus, context
        self.max_n_fraction, self.rc_prob = max_n_fraction, reverse_complement_prob
        self.rng = np.random.default_rng(seed)
        usable = [r for r in corpus.records if r.length >= context]
        if not usable:
            raise InputError(f"no FASTA record is at least {context} bases long")
        self.starts = np.array([r.offset for r in usable], dtype=np.int64)
        spans = np.array([r.length - context + 1 for r in usable], dtype=np.float64)
        weight = np.array([corpus.sources[r.file].weight for r in usable]) * spans
        self.record_p = weight / weight.sum()
        self.spans = spans.astype(np.int64)
        self._arange = np.arange(context, dtype=np.int64)

    def sample(self, batch_size: int) -> np.ndarray:
        """(batch_size, context) uint8 ids."""
        chosen: list[np.ndarray] = []
        have = 0
        for _ in range(100):
            draw = 2 * batch_size
            rec = self.rng.choice(len(self.starts), size=draw, p=self.record_p)
            begin = self.starts[rec] + (self.rng.random(draw) * self.spans[rec]).astype(np.int64)
            windows = self.corpus.ids[begin[:, None] + self._arange]  # (draw, context)
            ok = (windows == N).mean(1) <= self.max_n_fraction
            chosen.append(windows[ok])
            have += int(ok.sum())
            if have >= batch_size:
                break
        else:
            raise InputError("almost every training window is mostly N; check the FASTA inputs")
        batch = np.concatenate(chosen)[:batch_size]
        flip = self.rng.random(batch_size) < self.rc_prob
        batch[flip] = reverse_complement(batch[flip])
        return batch

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
