"""`mergedna score`: zero-shot variant effects, VCF in, annotated VCF (or table) out.

Methods (named in the output header):
- SNV: mask the base, score = log p(alt) - log p(ref), averaged over both strands.
- MNV (REF and ALT of equal length > 1): the sum of that score over the changed bases.
- Indel: equal-length reference and alternate windows centred on the variant run unmasked;
  score = cosine(mean per-base embedding of ref window, same for alt window) - 1, averaged over
  strands (0 = no change, more negative = larger change).
Lower always means more damaging. Every input record is written, in input order; an allele that
is not scored gets '.' and a status naming the reason.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..alphabet import encode, reverse_complement
from ..engine.engine import per_base_vectors
from ..engine.masked import masked_log_probs
from ..engine.windows import default_flank
from ..errors import InputError, UsageError
from ..io.reference import Reference
from ..io.score_table import ScoreTableWriter, SkippedWriter
from ..io.vcf import Variant, VcfReader, VcfWriter
from .resume import PartialDir, file_identity, remove_stale_temporaries

SCORE_KEY, STATUS_KEY, METHOD_KEY = "MDNA_SCORE", "MDNA_STATUS", "MDNA_METHOD"
_ACGT = re.compile(r"^[ACGT]+$")
CHUNK_RECORDS = 2048  # records per chunk: scored together, and the unit of resumption
METHODS = {
    "snv_llr": "SNV: log p(alt) - log p(ref) at the masked base, mean of both strands",
    "mnv_llr_sum": "MNV: sum of the SNV score over the changed bases",
    "indel_embedding_cosine": "indel: cosine(mean embedding of ref window, of alt window) - 1",
}
STATUSES = ("ok", "ref_mismatch", "symbolic_allele", "spanning_deletion", "missing_allele",
            "non_acgt_allele", "contig_not_in_reference", "reference_is_n", "outside_contig")


@dataclass
class ScoreOptions:
    strand: str = "both"
    mask_spacing: int | None = None  # one position per pass; shared passes disagreed (rho < 0.99)
    ref_mismatch: str = "flag"   # flag | skip | error
    batch_size: int = 32
    flank: int | None = None
    chunk_records: int = CHUNK_RECORDS


@dataclass
class AlleleJob:
    status: str = "ok"
    method: str = "."
    score: float | None = None
    positions: list[int] = field(default_factory=list)  # masked positions (SNV/MNV)
    ref_bases: list[int] = field(default_factory=list)
    alt_bases: list[int] = field(default_factory=list)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard must be I/N with 1 <= I <= N, got '{text}'")
    return int(match[1]), int(match[2])


def shard_range(n_records: int, shard: tuple[int, int]) -> range:
    """Contiguous, deterministic split: shard I of N gets records [(I-1)R/N, IR/N)."""
    i, n = shard
    return range((i - 1) * n_records // n, i * n_records // n)


class Scorer:
    """backend: runs the masked passes of SNVs and MNVs (best the "masked" graph, which decodes
    only the masked bases; a "full" one works too). embedding_backend: per-base vectors for
    indels, a backend or a zero-argument function making one when the first indel comes (a
    "full" or "embedding" graph); default: `backend` itself, which must then be "full"."""

    def __init__(self, backend, reference: Reference, options: ScoreOptions, log=lambda m: None,
                 embedding_backend=None):
        self.backend, self.reference, self.options, self.log = backend, reference, options, log
        self._embedding_backend = backend if embedding_backend is None else embedding_backend
        self.context = backend.config.context
        self.flank = default_flank(self.context) if options.flank is None else options.flank
        self.keep = self.context - 2 * self.flank

    # -- classification ------------------------------------------------------------------------
    def classify(self, variant: Variant, contig: str | None) -> list[AlleleJob]:
        ref = variant.ref.upper()
        jobs = []
        ref_status = None
        if contig is None:
            ref_status = "contig_not_in_reference"
        elif not _ACGT.match(ref):
            ref_status = "non_acgt_allele"
        elif variant.start + len(ref) > self.reference.lengths[contig]:
            ref_status = "outside_contig"
        else:
            seq = self.reference.fetch_text(contig, variant.start, variant.start + len(ref))
            if set(seq) - set("ACGT"):
                ref_status = "reference_is_n"
            elif seq != ref:
                ref_status = "ref_mismatch"
                if self.options.ref_mismatch == "error":
                    raise InputError(f"REF mismatch at {variant.chrom}:{variant.start + 1}: VCF has "
                                     f"{variant.ref}, reference has {seq} (use --ref-mismatch flag|skip)")
        for alt in variant.alts:
            alt_u = alt.upper()
            if alt_u == "*":
                jobs.append(AlleleJob("spanning_deletion"))
            elif alt_u in (".", ""):
                jobs.append(AlleleJob("missing_allele"))
            elif alt_u.startswith("<") or "[" in alt_u or "]" in alt_u:
                jobs.append(AlleleJob("symbolic_allele"))
            elif ref_status is not None:
                jobs.append(AlleleJob(ref_status))
            elif not _ACGT.match(alt_u):
                jobs.append(AlleleJob("non_acgt_allele"))
            elif len(alt_u) == len(ref):
                diff = [i for i, (r, a) in enumerate(zip(ref, alt_u)) if r != a]
                method = "snv_llr" if len(ref) == 1 else "mnv_llr_sum"
                jobs.append(AlleleJob(
                    "ok", method, positions=[variant.start + i for i in diff],
                    ref_bases=[int(encode(ref[i])[0]) for i in diff],
                    alt_bases=[int(encode(alt_u[i])[0]) for i in diff], score=0.0 if not diff else None))
            else:
                jobs.append(AlleleJob("ok", "indel_embedding_cosine"))
        return jobs

    def embedding_backend(self):
        if callable(self._embedding_backend) and not hasattr(self._embedding_backend, "run"):
            self._embedding_backend = self._embedding_backend()
        return self._embedding_backend

    # -- scoring -------------------------------------------------------------------------------
    def score_chunk(self, chunk: list[tuple[Variant, str | None, list[AlleleJob]]]) -> None:
        by_contig: dict[str, list[AlleleJob]] = {}
        indels: list[tuple[Variant, str, AlleleJob, str]] = []
        for variant, contig, jobs in chunk:
            for alt, job in zip(variant.alts, jobs):
                if job.status == "ok" and job.positions:
                    by_contig.setdefault(contig, []).append(job)
                elif job.status == "ok" and job.method == "indel_embedding_cosine":
                    indels.append((variant, contig, job, alt.upper()))
        for contig, jobs in by_contig.items():
            positions = np.unique(np.concatenate([np.asarray(j.positions) for j in jobs]))
            lp = masked_log_probs(self.backend, self.reference, contig, positions,
                                  self.options.mask_spacing, self.options.batch_size,
                                  self.options.strand == "both", self.flank)
            for job in jobs:
                rows = np.searchsorted(positions, job.positions)
                job.score = float((lp[rows, job.alt_bases] - lp[rows, job.ref_bases]).sum())
        if indels:
            self._score_indels(indels)

    def _score_indels(self, indels) -> None:
        half = self.context // 2
        ref_ids, alt_ids = [], []
        for variant, contig, job, alt in indels:
            ref_len = len(variant.ref)
            left = self.reference.fetch_ids(contig, variant.start - half, variant.start)
            right = self.reference.fetch_ids(contig, variant.start + ref_len,
                                             variant.start + ref_len + self.context)
            ref_ids.append(np.concatenate([left, encode(variant.ref.upper()), right])[: self.context])
            alt_ids.append(np.concatenate([left, encode(alt), right])[: self.context])
        centre = slice(self.flank, self.context - self.flank)
        cosines = np.zeros(len(indels))
        strands = [False, True] if self.options.strand == "both" else [False]
        step = max(1, self.options.batch_size // 2)
        for lo in range(0, len(indels), step):
            a = np.stack(ref_ids[lo:lo + step])
            b = np.stack(alt_ids[lo:lo + step])
            for rc in strands:
                batch = np.concatenate([a, b])
                if rc:
                    batch = reverse_complement(batch)
                vec = per_base_vectors(self.embedding_backend().run(batch.astype(np.int64)))
                vec = vec[:, ::-1] if rc else vec
                pooled = vec[:, centre].mean(1)
                pr, pa = pooled[: len(a)], pooled[len(a):]
                cos = (pr * pa).sum(1) / (np.linalg.norm(pr, axis=1) * np.linalg.norm(pa, axis=1) + 1e-12)
                cosines[lo:lo + len(a)] += cos / len(strands)
        for (_, _, job, _), c in zip(indels, cosines):
            job.score = float(c - 1.0)

    # -- the run -------------------------------------------------------------------------------
    def _chunk_key(self, variant: Variant):
        tile = variant.start // self.keep if self.options.mask_spacing else variant.start
        return variant.chrom, tile

    def chunks(self, variants: Iterable[Variant]) -> Iterator[list[tuple[Variant, str | None, list[AlleleJob]]]]:
        """Chunks of classified, scored records; a chunk only ends where a new tile (or position)
        begins, so no window is ever encoded twice."""
        chunk: list = []
        last_key = None
        for variant in variants:
            key = self._chunk_key(variant)
            if len(chunk) >= self.options.chunk_records and key != last_key:
                self.score_chunk(chunk)
                yield chunk
                chunk = []
            last_key = key
            contig = self.reference.resolve(variant.chrom)
            chunk.append((variant, contig, self.classify(variant, contig)))
        if chunk:
            self.score_chunk(chunk)
            yield chunk


def header_lines(meta: list[str], model_name: str, sha256: str, context: int, flank: int,
                 options: ScoreOptions, command: str) -> list[str]:
    kept = [m for m in meta if not re.match(r"^##(INFO=<ID=MDNA_|mergedna)", m)]
    statuses = ", ".join(STATUSES)
    spacing = options.mask_spacing if options.mask_spacing else "none (one position per pass)"
    return kept + [
        f'##INFO=<ID={SCORE_KEY},Number=A,Type=Float,Description="MergeDNA zero-shot score per ALT; '
        f'lower = more damaging; method in {METHOD_KEY}">',
        f'##INFO=<ID={STATUS_KEY},Number=A,Type=String,Description="Why an ALT was or was not scored: {statuses}">',
        f'##INFO=<ID={METHOD_KEY},Number=A,Type=String,Description="Scoring method per ALT: '
        + "; ".join(f"{k} = {v}" for k, v in METHODS.items()) + '">',
        f"##mergedna_version={__version__}",
        f"##mergedna_model=<Name={model_name},Sha256={sha256}>",
        f"##mergedna_window=<Context={context},Flank={flank},MaskSpacing={spacing}>",
        f"##mergedna_strand={options.strand}",
        f"##mergedna_command={command}",
    ]


def _format(score: float | None) -> str:
    return "." if score is None else f"{score:.4f}"


def _strip_own_info(variant: Variant) -> None:
    info = variant.fields[7]
    if "MDNA_" in info:
        kept = [kv for kv in info.split(";") if not kv.startswith(("MDNA_SCORE=", "MDNA_STATUS=", "MDNA_METHOD="))]
        variant.fields[7] = ";".join(kept) or "."


def command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in ["mergedna", *argv])


@dataclass
class ScoreSummary:
    records: int = 0
    alleles: Counter = field(default_factory=Counter)
    resumed: int = 0  # records whose scores came from an earlier, killed run


def count_records(path: str) -> int:
    return sum(1 for _ in VcfReader(path))


def run_score(backend, reference: Reference, vcf: str, out: str, options: ScoreOptions,
              model_name: str, sha256: str, table_format: str | None = None, skipped: str | None = None,
              shard: tuple[int, int] | None = None, argv: list[str] | None = None, log=lambda m: None,
              on_records=lambda n: None, restart: bool = False, embedding_backend=None) -> ScoreSummary:
    """Score `vcf` into `out`. With a file in and a file out the run is resumable: scores go to
    `OUT.partial/` chunk by chunk and the output is assembled from them at the end (resume.py)."""
    if shard and vcf == "-":
        raise UsageError("--shard needs a VCF file, not stdin (records are counted first)")
    scorer = Scorer(backend, reference, options, log, embedding_backend)
    wanted = shard_range(count_records(vcf), shard) if shard else None
    command = command_line(argv if argv is not None else sys.argv[1:])

    def header(reader: VcfReader) -> list[str]:
        return header_lines(reader.meta_lines, model_name, sha256, scorer.context, scorer.flank, options,
                            command)

    if vcf == "-" or out == "-":  # a stream cannot be resumed: score straight into the writer
        reader = VcfReader(vcf)

        def scored():
            for chunk in scorer.chunks(_selected(reader, wanted)):
                yield from ((variant, jobs) for variant, _, jobs in chunk)
                on_records(len(chunk))
        return _write_output(scored(), reader, header(reader), out, options, table_format, skipped, log)

    scoring = VcfReader(vcf)  # first: a missing or malformed VCF is reported as such
    manifest = {"vcf": file_identity(vcf), "fasta": file_identity(reference.path),
                "model": model_name, "weights_sha256": sha256, "backend": getattr(backend, "name", None),
                "shard": list(shard) if shard else None, "strand": options.strand,
                "mask_spacing": options.mask_spacing, "flank": scorer.flank,
                "ref_mismatch": options.ref_mismatch, "chunk_records": options.chunk_records}
    with PartialDir(out, manifest, restart, log) as partial:
        remove_stale_temporaries(out)
        if skipped:
            remove_stale_temporaries(skipped)
        done = resumed = _finished_records(partial)
        if done:
            log(f"resuming: {done:,} records already scored in {partial.path}")
            on_records(done)
        remaining = itertools.islice(_selected(scoring, wanted), done, None)
        for chunk in scorer.chunks(remaining):
            _save_chunk(partial, done, chunk)
            done += len(chunk)
            on_records(len(chunk))
        reader = VcfReader(vcf)
        summary = _write_output(_stored(partial, _selected(reader, wanted)), reader, header(reader), out,
                                options, table_format, skipped, log)
        partial.remove()
    summary.resumed = resumed
    return summary


def _selected(reader: VcfReader, wanted: range | None) -> Iterator[Variant]:
    return (v for v in reader if wanted is None or v.index in wanted)


# -- chunks of a resumable run: one JSON line per record, [index, [[score, status, method], ...]] --
def _chunk_name(first: int, end: int) -> str:
    return f"chunk-{first:012d}-{end:012d}.jsonl"


def _finished_records(partial: PartialDir) -> int:
    """Records covered by the finished chunks that follow on from record 0 (chunks are written
    in order, so any other chunk is debris; it is removed)."""
    done = 0
    for path in partial.chunks():
        first, end = (int(x) for x in path.stem.split("-")[1:])
        if first != done:
            path.unlink()
            continue
        done = end
    return done


def _save_chunk(partial: PartialDir, first: int, chunk) -> None:
    lines = [json.dumps([variant.index, [[job.score, job.status, job.method] for job in jobs]])
             for variant, _, jobs in chunk]
    partial.write(_chunk_name(first, first + len(chunk)),
                  lambda tmp: tmp.write_text("\n".join(lines) + "\n"))


def _stored(partial: PartialDir, variants: Iterator[Variant]) -> Iterator[tuple[Variant, list[AlleleJob]]]:
    """Input records re-read, each paired with its scores from the chunk files."""
    def results():
        for path in partial.chunks():
            with open(path) as handle:
                for line in handle:
                    index, jobs = json.loads(line)
                    yield index, [AlleleJob(status, method, score) for score, status, method in jobs]

    stored = results()
    for variant in variants:
        index, jobs = next(stored, (None, None))
        if index != variant.index or len(jobs) != len(variant.alts):
            raise InputError(f"{partial.path} does not match the input at record {variant.index + 1}; "
                             "rerun with --restart")
        yield variant, jobs
    if next(stored, None) is not None:
        raise InputError(f"{partial.path} holds more records than the input; rerun with --restart")


def _write_output(records: Iterable[tuple[Variant, list[AlleleJob]]], reader: VcfReader, header: list[str],
                  out: str, options: ScoreOptions, table_format: str | None, skipped: str | None,
                  log=lambda m: None) -> ScoreSummary:
    """Every record, in input order, to the VCF or table writer and the --skipped list."""
    summary = ScoreSummary()
    if table_format:
        writer = ScoreTableWriter(out, table_format)
    else:
        writer = VcfWriter(out, log)
        writer.write("\n".join(header + [reader.column_line]) + "\n")
    skipped_list = SkippedWriter(skipped) if skipped else None
    last = (None, -1)
    is_sorted = True
    try:
        for variant, jobs in records:
            summary.records += 1
            key = (variant.chrom, variant.start)
            if key[0] == last[0] and key[1] < last[1]:
                is_sorted = False
            last = key
            for alt, job in zip(variant.alts, jobs):
                summary.alleles[job.status] += 1
                if job.status != "ok" and skipped_list:
                    skipped_list.add(variant, alt, job.status)
            if options.ref_mismatch == "skip" and any(j.status == "ref_mismatch" for j in jobs):
                continue
            if table_format:
                writer.add(variant, jobs)
            else:
                _strip_own_info(variant)
                writer.write(variant.with_info([
                    f"{SCORE_KEY}=" + ",".join(_format(j.score) for j in jobs),
                    f"{STATUS_KEY}=" + ",".join(j.status for j in jobs),
                    f"{METHOD_KEY}=" + ",".join(j.method for j in jobs)]) + "\n")
    except BaseException:
        writer.abort()
        if skipped_list:
            skipped_list.abort()
        raise
    if table_format:
        writer.close()
    else:
        writer.close(sorted_input=is_sorted)
    if skipped_list:
        skipped_list.close()
    return summary
