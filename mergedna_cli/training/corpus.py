"""A pre-training corpus encoded once into uint8 memmaps, and the random-window samplers.

The cache holds the ids of every record back to back (corpus.bin), the FASTA's case as one byte
per base (soft.bin: 1 = lower case, i.e. a soft-masked repeat) and an index (corpus.json). It is
keyed by the files' paths, sizes and mtimes, the excluded regions and the cache format, so it is
rebuilt only when an input changes; the training loop then slices windows straight out of it.

Two samplers draw the same kind of windows: `WindowSampler` on the host (numpy), and
`DeviceWindowSampler`, which uploads the corpus to the training device once and gathers,
N-filters and reverse-complements windows there, so a GPU step never waits for the host.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..alphabet import COMPLEMENT, N, encode, reverse_complement
from ..errors import InputError
from ..io.regions import BedWording, parse_bed

try:
    from ..io.fasta_records import iter_fasta_records as _pysam_records
except ImportError:  # pysam is missing on the lent GPU machines' image; the plain reader below serves
    _pysam_records = None

# Part of the cache key: a cache written by an older layout (no soft.bin) is rebuilt, not misread.
CACHE_FORMAT = "ids+soft-v2"


def _plain_fasta_records(path: str) -> Iterator[tuple[str, str]]:
    """(name, sequence) of a plain or gzip/bgzip FASTA without pysam; the name is the header up to
    the first whitespace, as pysam gives it."""
    if not os.path.isfile(path):
        raise InputError(f"FASTA file '{path}' does not exist")
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    n, name, parts = 0, None, []
    try:
        with (gzip.open(path, "rt") if gz else open(path)) as handle:
            for line in handle:
                if line.startswith(">"):
                    if name is not None:
                        n += 1
                        yield name, "".join(parts)
                    header = line[1:].split()
                    name, parts = (header[0] if header else ""), []
                elif name is not None:
                    parts.append(line.strip())
                elif line.strip():
                    raise InputError(f"'{path}' is not a FASTA file (no '>' header first)")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"cannot read FASTA '{path}': {exc}") from None
    if name is not None:
        n += 1
        yield name, "".join(parts)
    if n == 0:
        raise InputError(f"FASTA file '{path}' has no records")


def fasta_records(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Every record of a FASTA file: through pysam where it is installed, else the plain reader."""
    if _pysam_records is not None:
        return _pysam_records(path)
    return _plain_fasta_records(str(path))


def soft_masked(seq: str) -> np.ndarray:
    """1 for every lower-case base (a soft-masked repeat), 0 otherwise; uint8, one per base."""
    raw = np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)
    return (raw >= ord("a")).view(np.uint8)


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


_BED_WORDING = BedWording(columns="{where}: expected 'chrom<TAB>start<TAB>end', got {text!r}",
                          integers="{where}: expected 'chrom<TAB>start<TAB>end', got {text!r}",
                          interval="{where}: invalid interval {start}-{end}", text_limit=None)


def read_bed_intervals(bed_path: str, regions: dict | None = None) -> dict[str, list[tuple[int, int]]]:
    """BED (0-based half-open, names as in the FASTA headers) -> {record: [(start, end)]}."""
    regions = {} if regions is None else regions
    if not os.path.isfile(bed_path):
        raise InputError(f"BED file '{bed_path}' does not exist")
    with open(bed_path) as handle:
        for bed in parse_bed(handle, bed_path, _BED_WORDING):
            regions.setdefault(bed.fields[0], []).append((bed.start, bed.end))
    return regions


def _cache_key(sources: list[CorpusSource], exclude_beds: list[str]) -> str:
    parts = []
    for src in sources + [CorpusSource(bed) for bed in exclude_beds]:
        st = os.stat(src.path)
        parts.append(f"{os.path.abspath(src.path)}:{st.st_size}:{int(st.st_mtime)}")
    parts.append(CACHE_FORMAT)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Corpus:
    """Encoded sequence of several FASTA files with per-file sampling weights.

    ids: uint8 ids of every record back to back; soft: 1 where the FASTA had lower case."""

    def __init__(self, ids: np.ndarray, records: list[Record], sources: list[CorpusSource],
                 soft: np.ndarray | None = None):
        self.ids, self.records, self.sources = ids, records, sources
        self.soft = np.zeros(len(ids), dtype=np.uint8) if soft is None else soft

    @classmethod
    def build(cls, sources: list[CorpusSource], cache_dir: str | os.PathLike,
              exclude_beds: list[str] = (), log=lambda msg: None) -> "Corpus":
        """Encode (or reuse the cached encoding of) the sources; bases inside `exclude_beds`
        intervals become N, so no training window can be mostly made of them."""
        exclude_beds = list(exclude_beds)
        cache = Path(cache_dir) / f"corpus-{_cache_key(sources, exclude_beds)}"
        index_path, data_path, soft_path = cache / "corpus.json", cache / "corpus.bin", cache / "soft.bin"
        if not index_path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            exclusions: dict = {}
            for bed in exclude_beds:
                read_bed_intervals(bed, exclusions)
            records, offset = [], 0
            tmp = data_path.with_suffix(f".tmp{os.getpid()}")
            tmp_soft = soft_path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as out, open(tmp_soft, "wb") as out_soft:
                for file_idx, src in enumerate(sources):
                    for name, seq in fasta_records(src.path):
                        ids = encode(seq)
                        for start, end in exclusions.get(name, []):
                            ids[max(0, start):max(0, end)] = N  # excluded bases read as N
                        out.write(ids.tobytes())
                        out_soft.write(soft_masked(seq).tobytes())
                        records.append(Record(file_idx, name, offset, len(ids)))
                        offset += len(ids)
                    log(f"encoded {src.path}")
            os.replace(tmp_soft, soft_path)
            os.replace(tmp, data_path)
            index = {"records": [vars(r) for r in records]}
            tmp_index = index_path.with_suffix(f".tmp{os.getpid()}")
            tmp_index.write_text(json.dumps(index))
            os.replace(tmp_index, index_path)
        index = json.loads(index_path.read_text())
        records = [Record(**r) for r in index["records"]]
        ids = np.memmap(data_path, dtype=np.uint8, mode="r")
        soft = np.memmap(soft_path, dtype=np.uint8, mode="r")
        return cls(ids, records, sources, soft)

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
        return self.sample_batch(batch_size)[0]

    def sample_batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, soft): (batch_size, context) uint8 ids and 1 where the base was lower case."""
        chosen: list[np.ndarray] = []
        have = 0
        for _ in range(100):
            draw = 2 * batch_size
            rec = self.rng.choice(len(self.starts), size=draw, p=self.record_p)
            begin = self.starts[rec] + (self.rng.random(draw) * self.spans[rec]).astype(np.int64)
            index = begin[:, None] + self._arange  # (draw, context)
            windows = self.corpus.ids[index]
            ok = (windows == N).mean(1) <= self.max_n_fraction
            chosen.append(index[ok])
            have += int(ok.sum())
            if have >= batch_size:
                break
        else:
            raise InputError("almost every training window is mostly N; check the FASTA inputs")
        index = np.concatenate(chosen)[:batch_size]
        batch, soft = self.corpus.ids[index], self.corpus.soft[index]
        flip = self.rng.random(batch_size) < self.rc_prob
        batch[flip] = reverse_complement(batch[flip])
        soft[flip] = soft[flip][:, ::-1]
        return batch, soft

    def sample_tensors(self, batch_size: int, device):
        """(ids int64, soft bool) on `device`; pinned host memory, so the copy does not block."""
        import torch

        ids, soft = self.sample_batch(batch_size)
        ids, soft = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(soft.astype(bool))
        if torch.device(device).type == "cuda":
            ids, soft = ids.pin_memory(), soft.pin_memory()
        return ids.to(device, non_blocking=True), soft.to(device, non_blocking=True)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        if "torch" in state:
            raise InputError("the checkpoint's sampler state is the device sampler's; resume with --sampler device")
        self.rng.bit_generator.state = state


class DeviceWindowSampler:
    """The windows of `WindowSampler`, drawn on the training device with no host round trip.

    The corpus (ids and case, one byte per base each) is uploaded once; a step draws
    `oversample x batch` candidate windows (record by weight x length through the inverse CDF,
    start uniform inside it), gathers them with tensor indexing, keeps the first `batch` whose N
    fraction is at most `max_n_fraction` (the host sampler's rule) and reverse-complements half of
    them. Nothing waits for the GPU; should fewer than `batch` candidates pass (vanishingly rare at
    4x unless the corpus is mostly N), the shortfall is filled with failing windows and counted in
    `n_filter_misses`, a device tensor the loop logs. `rng` (numpy) draws the per-step compression.
    """

    def __init__(self, corpus: Corpus, context: int, seed: int, device, max_n_fraction: float = 0.1,
                 reverse_complement_prob: float = 0.5, oversample: int = 4):
        import torch

        self.corpus, self.context, self.device = corpus, context, torch.device(device)
        self.max_n_fraction, self.rc_prob, self.oversample = max_n_fraction, reverse_complement_prob, oversample
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        usable = [r for r in corpus.records if r.length >= context]
        if not usable:
            raise InputError(f"no FASTA record is at least {context} bases long")
        spans = np.array([r.length - context + 1 for r in usable], dtype=np.float64)
        weight = np.array([corpus.sources[r.file].weight for r in usable]) * spans
        dev = self.device
        self.starts = torch.tensor([r.offset for r in usable], dtype=torch.int64, device=dev)
        self.spans = torch.tensor(spans, dtype=torch.float64, device=dev)
        self.cdf = torch.tensor(np.cumsum(weight / weight.sum()), dtype=torch.float64, device=dev)
        self.ids = torch.from_numpy(np.array(corpus.ids, dtype=np.uint8)).to(dev)  # a copy: the memmap is read-only
        self.soft = torch.from_numpy(np.array(corpus.soft, dtype=np.uint8)).to(dev)
        self.complement = torch.from_numpy(COMPLEMENT.astype(np.int64)).to(dev)
        self.arange = torch.arange(context, device=dev)
        self.n_filter_misses = torch.zeros((), dtype=torch.int64, device=dev)

    def sample_tensors(self, batch_size: int, device=None):
        """(ids int64, soft bool), both (batch_size, context) on the sampler's device."""
        import torch

        g, dev, draw = self.generator, self.device, self.oversample * batch_size
        rec = torch.searchsorted(self.cdf, torch.rand(draw, generator=g, device=dev, dtype=torch.float64),
                                 right=True).clamp(max=len(self.cdf) - 1)
        offset = (torch.rand(draw, generator=g, device=dev, dtype=torch.float64) * self.spans[rec]).long()
        index = (self.starts[rec] + offset)[:, None] + self.arange  # (draw, context)
        n_fraction = (self.ids[index] == N).sum(1).double() / self.context
        fails = n_fraction > self.max_n_fraction
        index = index[torch.argsort(fails.to(torch.uint8), stable=True)[:batch_size]]  # passing first
        self.n_filter_misses += torch.clamp(batch_size - (~fails).sum(), min=0)
        ids, soft = self.ids[index].long(), self.soft[index].bool()
        flip = (torch.rand(batch_size, generator=g, device=dev) < self.rc_prob)[:, None]
        ids = torch.where(flip, self.complement[ids.flip(1)], ids)
        soft = torch.where(flip, soft.flip(1), soft)
        return ids, soft

    def sample(self, batch_size: int) -> np.ndarray:
        """(batch_size, context) uint8 ids on the host (tests and tools)."""
        return self.sample_tensors(batch_size)[0].to("cpu").numpy().astype(np.uint8)

    def state(self) -> dict:
        return {"numpy": self.rng.bit_generator.state,
                "torch": self.generator.get_state().tolist()}

    def set_state(self, state: dict) -> None:
        import torch

        if "torch" not in state:
            raise InputError("the checkpoint's sampler state is the host sampler's; resume with --sampler host")
        self.rng.bit_generator.state = state["numpy"]
        self.generator.set_state(torch.tensor(state["torch"], dtype=torch.uint8))
