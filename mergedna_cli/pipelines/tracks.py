"""`mergedna tracks`: learned token boundaries and per-base model signals for genome browsers.

Tokens are decided per window. Each window contributes only its central (kept) part, and a token
that crosses the edge of a kept part is cut there, so a boundary can appear at a seam that the
model, with more context, might not have placed; seams fall every `context - 2 * flank` bases
(256 for the shipped model) and are listed in the sidecar JSON. Every base is covered by exactly
one token span: the BED tiles each region with no gap or overlap.

Work is done in units of about 1 Mb kept in PREFIX.partial/ until every output is written, so a
killed run resumes from its last finished unit (resume.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..alphabet import N as N_ID
from ..atomic import atomic_write
from ..engine.engine import kept_token_spans, run_windows
from ..engine.load import check_compression, make_backend, resolve_batch_size, same_model_backend
from ..engine.masked import masked_log_probs
from ..engine.windows import default_flank, tile
from ..errors import InputError, UsageError
from ..io.reference import Reference
from ..io.regions import Region, parse_region, read_bed
from ..io.tracks_writer import BigWigWriter, TokenBedWriter, track_files
from ..model.files import weights_sha256
from ..model_dirs import resolve_model_dir
from .choices import InferenceOptions, StrandChoice
from .progress import Logger
from .resume import PartialDir, file_identity, remove_stale_temporaries

GAP_MIN = 100       # --genome skips runs of N at least this long
SIGNAL_BLOCK = 65_536  # positions per masked-signal call: bounded memory on whole contigs
UNIT_BASES = 1 << 20   # bases per unit of work (resumption); a multiple of SIGNAL_BLOCK

META_FILE = "tracks.json"  # PREFIX.tracks.json, written after the track files


@dataclass(frozen=True)
class TracksRequest(InferenceOptions):
    """`mergedna tracks`, as parsed by cli/tracks.py."""

    fasta: str
    out: str                          # output prefix
    regions: str | None = None        # exactly one of --regions BED, --region strings, --genome
    region: tuple[str, ...] = ()
    genome: bool = False
    contig: tuple[str, ...] = ()      # only these contigs (one pipeline job each)
    signals: bool = False
    mask_spacing: int = 16
    compression: float | None = None  # the PyTorch tokenizer's; None: the model's
    track_line: bool = False
    chunk_bases: int = 1 << 20
    restart: bool = False
    hub: str | None = None
    hub_genome: str = "hg38"
    hub_email: str | None = None


@dataclass
class TracksOptions:
    batch_size: int = 16
    signals: bool = False
    mask_spacing: int = 16
    strand: str = "both"
    track_line: bool = False
    chunk_bases: int = UNIT_BASES


def run(request: TracksRequest, log: Logger | None = None) -> dict:
    """Check the request, load the reference and the model's graphs (the tokenizer; with
    --signals the masked passes too), compute and write the tracks (and the hub); returns the
    content of PREFIX.tracks.json."""
    log = log or Logger()
    r = request
    if sum([r.regions is not None, bool(r.region), r.genome]) != 1:
        raise UsageError("give exactly one of --regions BED, --region, or --genome")
    if r.compression is not None:
        check_compression(r.compression, r.backend)
    check_prefix(r.out)
    if r.hub:
        from ..io.track_hub import check_hub_options
        check_hub_options(r.hub_email, r.hub_genome)
    reference = Reference(r.fasta)
    model_dir = resolve_model_dir(r.model)
    # boundaries need only the tokenizer; --signals adds the scoring graph's masked passes.
    # --compression builds PyTorch models at that compression (--backend auto then means torch)
    tokens_backend = make_backend(str(model_dir), r.backend, r.device, r.threads, log=log.info, part="tokens",
                                  compression=r.compression)
    signals_backend = (same_model_backend(tokens_backend, "masked")  # PyTorch: the weights read once
                       or make_backend(str(model_dir), r.backend, r.device, r.threads, log=log.info, part="masked")
                       if r.signals else None)
    batch_size = resolve_batch_size(r.batch_size, tokens_backend, signals_backend, log=log.info)
    log.info(f"running {tokens_backend.name} on {tokens_backend.device}, {batch_size} windows per batch")
    contigs = [reference.require(c) for c in r.contig] if r.contig else None
    if r.genome:
        spans = genome_regions(reference, contigs=contigs)
        inputs = {"genome": True}
    else:
        items = read_bed(r.regions) if r.regions else (parse_region(region, reference) for region in r.region)
        spans = [s for s in sorted_merged(items, reference) if contigs is None or s[0] in contigs]
        inputs = {"bed": file_identity(r.regions)} if r.regions else {"region": list(r.region)}
    inputs["contigs"] = contigs  # with the options and the model: the manifest of a resumed run
    options = TracksOptions(batch_size=batch_size, signals=r.signals, mask_spacing=r.mask_spacing,
                            strand=StrandChoice(r.strand).value, track_line=r.track_line,
                            chunk_bases=r.chunk_bases)
    with log.counter("windows") as tick:
        meta = run_tracks(tokens_backend, reference, spans, r.out, options, model_dir.name,
                          weights_sha256(model_dir), log=log.info, on_window=tick, inputs=inputs,
                          restart=r.restart, signals_backend=signals_backend)
    for user, ref in reference.renames.items():
        log.info(f"contig '{user}' matched to reference contig '{ref}'")
    log.info(f"wrote {r.out}.tokens.bed and bigWigs: {meta['tokens']:,} tokens over {meta['bases']:,} "
             f"bases (mean length {meta['mean_token_length']:.2f})")
    if r.hub:
        from ..io.track_hub import write_hub
        chrom_sizes = [(c, reference.lengths[c]) for c in reference.contigs]
        made_with = f"{meta['tool']}, backend {meta['backend']} on {meta['device']}" + (
            f" (signals: {meta['signals_backend']} on {meta['signals_device']})" if "signals_backend" in meta else "")
        path = write_hub(r.hub, r.out, chrom_sizes, model_dir.name, r.signals, r.hub_email, r.hub_genome,
                         log=log.info, made_with=made_with)
        log.info(f"wrote {path}")
    return meta


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


def genome_regions(reference: Reference, chunk: int = 1 << 20, contigs: list[str] | None = None
                   ) -> Iterator[tuple[str, int, int]]:
    """Every contig's (or the given contigs') stretches between runs of >= GAP_MIN N, streamed
    chunk by chunk."""
    for contig in reference.contigs:
        if contigs is not None and contig not in contigs:
            continue
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


def plan_units(spans: Iterable[tuple[str, int, int]], keep: int, unit_bases: int
               ) -> Iterator[list[tuple[str, int, int, bool]]]:
    """Pieces (contig, start, end, first piece of its span) grouped into units of about
    `unit_bases` bases: the unit of work a killed run resumes from. Spans are cut only at multiples
    of the windows' kept part from their start, so the tiling, and every token, is unchanged."""
    step = max(keep, unit_bases // keep * keep)
    unit: list[tuple[str, int, int, bool]] = []
    size = 0
    for contig, start, end in spans:
        for lo in range(start, end, step):
            hi = min(lo + step, end)
            unit.append((contig, lo, hi, lo == start))
            size += hi - lo
            if size >= unit_bases:
                yield unit
                unit, size = [], 0
    if unit:
        yield unit


def run_tracks(backend, reference: Reference, spans: Iterable[tuple[str, int, int]], prefix: str,
               options: TracksOptions, model_name: str, sha256: str, log=lambda m: None,
               on_window=lambda: None, inputs: dict | None = None, restart: bool = False,
               signals_backend=None) -> dict:
    """Compute the units into PREFIX.partial/ (skipping those a killed run finished), then write
    the BED, bigWigs and JSON from them. `inputs` identifies the regions asked for (resume.py).
    backend: gives the token map (the "tokens" graph suffices); signals_backend: the masked
    passes of --signals (the "masked" graph; default: backend, which must then be "full")."""
    context = backend.config.context
    flank = default_flank(context)
    keep = context - 2 * flank
    ran_on = backend_record(backend, signals_backend if options.signals else None)
    # the backend and device are part of the manifest: a resumed run must not mix units of two
    # backends (rare near-tied merges differ between them) under a header that names one
    manifest = {"fasta": file_identity(reference.path), "regions": inputs, "model": model_name,
                "weights_sha256": sha256, "compression": backend.config.compression,
                "signals": options.signals, "mask_spacing": options.mask_spacing,
                "strand": options.strand, "chunk_bases": options.chunk_bases, **ran_on}
    order = {name: i for i, name in enumerate(reference.contigs)}
    with PartialDir(prefix, manifest, restart, log) as partial:
        for name in track_files(options.signals) + [META_FILE]:
            remove_stale_temporaries(f"{prefix}.{name}")
        finished = partial.chunks("unit-*.npz")
        if finished:
            log(f"resuming: {len(finished):,} units of work already done in {partial.path}")
        for number, unit in enumerate(plan_units(spans, keep, options.chunk_bases)):
            pieces = np.array([(order[c], lo, hi, first) for c, lo, hi, first in unit], dtype=np.int64)
            name = f"unit-{number:09d}.npz"
            if number < len(finished):
                with np.load(finished[number]) as stored:
                    if finished[number].name != name or not np.array_equal(stored["pieces"], pieces):
                        raise InputError(f"{partial.path} does not match the regions asked for; "
                                         "rerun with --restart")
                continue
            arrays = _compute_unit(backend, signals_backend or backend, reference, unit, options, context,
                                   flank, on_window)

            def save(tmp, arrays=arrays, pieces=pieces):
                with open(tmp, "wb") as handle:
                    np.savez_compressed(handle, pieces=pieces, **arrays)
            partial.write(name, save)
        stats = _assemble(partial.chunks("unit-*.npz"), reference, prefix, options, model_name, ran_on)
        meta = {
            "tool": f"mergedna {__version__}", "model": model_name, "weights_sha256": sha256, **ran_on,
            "compression": backend.config.compression, "context": context, "flank": flank,
            "seam_every_bases": keep,
            "seams": "tokens are decided per window; spans are cut at the edges of each window's kept "
                     "central part, so a token boundary can be an artifact at a seam",
            "signals": ({"entropy.bw": "entropy (nats) of the masked-base prediction, strand-averaged",
                         "llr.bw": "mean over the 3 alternates of log p(alt) - log p(ref), base masked",
                         "mask_spacing": options.mask_spacing, "strand": options.strand}
                        if options.signals else None),
            **stats,
            "mean_token_length": stats["bases"] / max(stats["tokens"], 1),
        }
        atomic_write(f"{prefix}.{META_FILE}", lambda tmp: tmp.write_text(json.dumps(meta, indent=2)), durable=True)
        partial.remove()
    return meta


def backend_record(backend, signals_backend=None) -> dict:
    """What ran the model, for the headers: {"backend": "onnx", "device": "cpu"}, plus
    "signals_backend" / "signals_device" where --signals ran on another (an ONNX graph that
    `--backend auto` could not use for one part falls back to torch)."""
    record = {"backend": getattr(backend, "name", "torch"), "device": str(getattr(backend, "device", "cpu"))}
    if signals_backend is not None:
        other = backend_record(signals_backend)
        if other != record:
            record.update(signals_backend=other["backend"], signals_device=other["device"])
    return record


def _compute_unit(backend, signals_backend, reference: Reference, unit, options: TracksOptions, context: int,
                  flank: int, on_window) -> dict[str, np.ndarray]:
    """One unit's token lengths (pieces in order, each piece tiled exactly), tokens per piece,
    window count and, with --signals, per-base entropy and LLR."""
    windows = ((i, w) for i, (contig, lo, hi, _) in enumerate(unit) for w in tile(contig, lo, hi, context, flank))
    lengths, per_piece, n_windows = [], np.zeros(len(unit), np.int64), 0
    for index, window, out, _ in run_windows(backend, reference, windows, options.batch_size):
        starts, ends, _ = kept_token_spans(out.base2tok, window)
        lengths.append(ends - starts)
        per_piece[index] += len(starts)
        n_windows += 1
        on_window()
    arrays = {"token_lengths": np.concatenate(lengths).astype(np.int32), "tokens_per_piece": per_piece,
              "windows": np.array(n_windows)}
    if options.signals:
        signals = [_signals(signals_backend, reference, contig, lo, hi, options) for contig, lo, hi, _ in unit]
        arrays["entropy"] = np.concatenate([e for e, _ in signals])
        arrays["llr"] = np.concatenate([r for _, r in signals])
    return arrays


def _assemble(units: list[Path], reference: Reference, prefix: str, options: TracksOptions,
              model_name: str, ran_on: dict) -> dict:
    """The BED and bigWigs from the finished units, each under a temporary name until complete."""
    chrom_sizes = [(c, reference.lengths[c]) for c in reference.contigs]
    track = (f'track name="mergedna_tokens" description="MergeDNA learned tokens ({model_name}, '
             f'{ran_on["backend"]} on {ran_on["device"]})" itemRgb="On"') if options.track_line else None
    stats = {"regions": 0, "bases": 0, "tokens": 0, "windows": 0}
    with ExitStack() as writers:  # every file complete, or none left behind (AtomicFile)
        bed, boundary, length_bw, *signal_writers = [
            writers.enter_context(TokenBedWriter(f"{prefix}.{name}", track) if name.endswith(".bed")
                                  else BigWigWriter(f"{prefix}.{name}", chrom_sizes))
            for name in track_files(options.signals)]
        for path in units:
            with np.load(path) as unit:
                lengths, per_piece = unit["token_lengths"], unit["tokens_per_piece"]
                signals = [unit["entropy"], unit["llr"]] if options.signals else []
                stats["windows"] += int(unit["windows"])
                token, base = 0, 0
                for (contig_index, lo, hi, first), n in zip(unit["pieces"].tolist(), per_piece.tolist()):
                    contig = reference.contigs[contig_index]
                    sizes = lengths[token:token + n]
                    ends = lo + np.cumsum(sizes)
                    if len(sizes) == 0 or ends[-1] != hi:
                        raise InputError(f"{path}: tokens do not tile {contig}:{lo}-{hi}; rerun with --restart")
                    starts = ends - sizes
                    bed.write(contig, starts, ends)
                    flags = np.zeros(hi - lo)
                    flags[starts - lo] = 1.0
                    boundary.write(contig, lo, flags)
                    length_bw.write(contig, lo, np.repeat(sizes, sizes).astype(np.float64))
                    for writer, values in zip(signal_writers, signals):
                        writer.write(contig, lo, values[base:base + hi - lo])
                    token, base = token + n, base + hi - lo
                    stats["regions"] += bool(first)
                    stats["tokens"] += n
                    stats["bases"] += hi - lo
    return stats


def _signals(backend, reference, contig, start, end, options) -> tuple[np.ndarray, np.ndarray]:
    """Per-base entropy and mean LLR from shared masked passes (each base masked once per strand),
    NaN where the reference base is not ACGT."""
    entropy = np.full(end - start, np.nan, np.float32)
    llr = np.full(end - start, np.nan, np.float32)
    for lo in range(start, end, SIGNAL_BLOCK):
        hi = min(lo + SIGNAL_BLOCK, end)
        positions = np.arange(lo, hi)
        lp = masked_log_probs(backend, reference, contig, positions, options.mask_spacing,
                              options.batch_size, options.strand == "both").astype(np.float64)
        p = np.exp(lp - lp.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)  # renormalised strand average
        ref = reference.fetch_ids(contig, lo, hi).astype(np.int64)
        scored = ref < 4
        ref_lp = np.take_along_axis(lp, np.minimum(ref, 3)[:, None], axis=1)[:, 0]
        block = slice(lo - start, hi - start)
        entropy[block] = np.where(scored, -(p * np.log(np.clip(p, 1e-12, None))).sum(1), np.nan)
        llr[block] = np.where(scored, (lp.sum(1) - 4 * ref_lp) / 3, np.nan)  # mean over the 3 alternates
    return entropy, llr


def check_prefix(prefix: str) -> None:
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        raise InputError(f"output prefix '{prefix}': folder '{folder}' does not exist")
