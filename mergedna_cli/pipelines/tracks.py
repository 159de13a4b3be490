"""`mergedna tracks`: learned token boundaries and per-base model signals for genome browsers.

Tokens are decided per window. Each window contributes only its central (kept) part, and a token
that crosses the edge of a kept part is cut there, so a boundary can appear at a seam that the
model, with more context, might not have placed; seams fall every `context - 2 * flank` bases
(256 for the shipped model) and are listed in the sidecar JSON. Every base is covered by exactly
one token span: the BED tiles each region with no gap or overlap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..alphabet import N as N_ID
from ..engine.engine import kept_token_spans, run_windows
from ..engine.masked import masked_log_probs
from ..engine.windows import default_flank, tile
from ..errors import InputError
from ..io.reference import Reference
from ..io.regions import Region
from ..io.tracks_writer import BigWigWriter, TokenBedWriter

GAP_MIN = 100       # --genome skips runs of N at least this long
SIGNAL_BLOCK = 65_536  # positions per masked-signal call: bounded memory on whole contigs


@dataclass
class TracksOptions:
    batch_size: int = 16
    signals: bool = False
    mask_spacing: int = 16
    strand: str = "both"
    track_line: bool = False


def sorted_merged(regions: Iterable[Region], reference: Reference) -> list[tuple[str, int, int]]:
    """Regions on reference contig names, clipped to the contig, sorted, overlaps merged
    (bigWig and BED need sorted, non-overlapping entries)."""
    order = {name: i for i, name in enumerate(reference.contigs)}
    spans = []
    for region in regions:
        contig = reference.require(region.chrom)
        start, end = max(0, region.start), min(region.end, reference.lengths[contig])
        if end > start:
            spans.append((order[contig], start, end, contig))
    spans.sort()
    merged: list[list] = []
    for _, start, end, contig in spans:
        if merged and merged[-1][0] == contig and start <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], end)
        else:
            merged.append([contig, start, end])
    return [tuple(m) for m in merged]


def genome_regions(reference: Reference, chunk: int = 1 << 20) -> Iterator[tuple[str, int, int]]:
    """Every contig's stretches between runs of >= GAP_MIN N, streamed chunk by chunk."""
    for contig in reference.contigs:
        length = reference.lengths[contig]
        region_start, pending = 0, None  # pending: start of an N run reaching the chunk's end

        def gap(run_start: int, run_end: int):
            nonlocal region_start
            if run_end - run_start >= GAP_MIN:
                if run_start > region_start:
                    yield contig, region_start, run_start
                region_start = run_end

        for lo in range(0, length, chunk):
            hi = min(lo + chunk, length)
            is_n = reference.fetch_ids(contig, lo, hi) == N_ID
            edges = np.flatnonzero(np.diff(np.r_[0, is_n.astype(np.int8), 0])) + lo
            for run_start, run_end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
                if pending is not None:
                    if run_start == lo:
                        run_start = pending  # the same run, continued
                    else:
                        yield from gap(pending, lo)
                    pending = None
                if run_end == hi and hi < length:
                    pending = run_start
                    continue
                yield from gap(run_start, run_end)
            if pending is not None and (len(edges) == 0 or edges[0] != lo) and pending < lo:
                yield from gap(pending, lo)
                pending = None
        if pending is not None:
            yield from gap(pending, length)
        if region_start < length:
            yield contig, region_start, length


def run_tracks(backend, reference: Reference, spans: Iterable[tuple[str, int, int]], prefix: str,
               options: TracksOptions, model_name: str, sha256: str, log=lambda m: None,
               on_window=lambda: None) -> dict:
    context = backend.config.context
    flank = default_flank(context)
    chrom_sizes = [(c, reference.lengths[c]) for c in reference.contigs]
    track = (f'track name="mergedna_tokens" description="MergeDNA learned tokens ({model_name})" '
             f'itemRgb="On"') if options.track_line else None
    bed = TokenBedWriter(f"{prefix}.tokens.bed", track)
    boundary = BigWigWriter(f"{prefix}.boundary.bw", chrom_sizes)
    length_bw = BigWigWriter(f"{prefix}.token_length.bw", chrom_sizes)
    signal_writers = []
    if options.signals:
        signal_writers = [BigWigWriter(f"{prefix}.entropy.bw", chrom_sizes),
                          BigWigWriter(f"{prefix}.llr.bw", chrom_sizes)]
    writers = [bed, boundary, length_bw, *signal_writers]
    stats = {"regions": 0, "bases": 0, "tokens": 0, "windows": 0}
    try:
        for contig, start, end in spans:
            stats["regions"] += 1
            windows = ((None, w) for w in tile(contig, start, end, context, flank))
            for _, window, out, _ in run_windows(backend, reference, windows, options.batch_size):
                starts, ends, _ = kept_token_spans(out.base2tok, window)
                bed.write(contig, starts, ends)
                sizes = ends - starts
                n = window.keep_end - window.keep_start
                flags = np.zeros(n)
                flags[starts - window.keep_start] = 1.0
                boundary.write(contig, window.keep_start, flags)
                length_bw.write(contig, window.keep_start, np.repeat(sizes, sizes).astype(np.float64))
                stats["tokens"] += len(starts)
                stats["bases"] += n
                stats["windows"] += 1
                on_window()
            if options.signals:
                _write_signals(backend, reference, contig, start, end, options, *signal_writers)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    for w in writers:
        w.close()
    meta = {
        "tool": f"mergedna {__version__}", "model": model_name, "weights_sha256": sha256,
        "compression": backend.config.compression, "context": context, "flank": flank,
        "seam_every_bases": context - 2 * flank,
        "seams": "tokens are decided per window; spans are cut at the edges of each window's kept "
                 "central part, so a token boundary can be an artifact at a seam",
        "signals": ({"entropy.bw": "entropy (nats) of the masked-base prediction, strand-averaged",
                     "llr.bw": "mean over the 3 alternates of log p(alt) - log p(ref), base masked",
                     "mask_spacing": options.mask_spacing, "strand": options.strand}
                    if options.signals else None),
        **stats,
        "mean_token_length": stats["bases"] / max(stats["tokens"], 1),
    }
    tmp = f"{prefix}.tracks.json.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(meta, handle, indent=2)
    os.replace(tmp, f"{prefix}.tracks.json")
    return meta


def _write_signals(backend, reference, contig, start, end, options, entropy_bw, llr_bw) -> None:
    """Per-base entropy and mean LLR from shared masked passes (each base masked once per strand)."""
    for lo in range(start, end, SIGNAL_BLOCK):
        hi = min(lo + SIGNAL_BLOCK, end)
        positions = np.arange(lo, hi)
        lp = masked_log_probs(backend, reference, contig, positions, options.mask_spacing,
                              options.batch_size, options.strand == "both").astype(np.float64)
        p = np.exp(lp - lp.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)  # renormalised strand average
        entropy = -(p * np.log(np.clip(p, 1e-12, None))).sum(1)
        ref = reference.fetch_ids(contig, lo, hi).astype(np.int64)
        scored = ref < 4
        ref_lp = np.take_along_axis(lp, np.minimum(ref, 3)[:, None], axis=1)[:, 0]
        llr = (lp.sum(1) - 4 * ref_lp) / 3  # mean over the three alternates of lp[alt] - lp[ref]
        entropy_bw.write(contig, lo, np.where(scored, entropy, np.nan))
        llr_bw.write(contig, lo, np.where(scored, llr, np.nan))


def check_prefix(prefix: str) -> None:
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        raise InputError(f"output prefix '{prefix}': folder '{folder}' does not exist")
