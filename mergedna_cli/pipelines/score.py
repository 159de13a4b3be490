"""`mergedna score`: zero-shot variant effects, VCF in, annotated VCF (or table) out.

Methods (named in the output header), each with its own INFO key, so a filter on one scale never
silently drops alleles scored on another:
- SNV (`MDNA_LLR`): mask the base, log p(alt) - log p(ref), averaged over both strands.
- MNV (REF and ALT of equal length > 1; `MDNA_LLR`): the sum of that score over the changed bases.
- Indel (`MDNA_EMBDIST`): equal-length reference and alternate windows centred on the variant run
  unmasked; 1 - cosine(mean per-base embedding of the ref window's central part, same for the alt
  window), averaged over strands (0 = no change, larger = larger change). Indels whose longer
  allele does not fit in that central part get status `indel_too_long`.
In tables the `score` column holds the LLR, or cosine - 1 for indels: lower = more damaging.
Every input record is written, in input order; an allele that is not scored gets '.' and a status
naming the reason.

The run, `run(ScoreRequest)`: the input is parsed once. Each record is classified into an
immutable work order (`RecordJob`), chunks of them are scored into results (`ScoredRecord`), and
each result is rendered at once into the text it contributes: its output line(s), its `--skipped`
lines and what the run summary counts. A file-to-file run keeps each finished chunk's text in
`OUT.partial/` (resume.py) and writes the output as their concatenation; a run on stdin or stdout
hands the same text straight to the same writer.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import __version__
from ..alphabet import encode, reverse_complement
from ..atomic import atomic_write
from ..engine.calibration import HALF, TABLE_FILE, CalibrationTable, K, context_index
from ..engine.engine import per_base_vectors
from ..engine.masked import masked_log_probs
from ..engine.windows import default_flank
from ..errors import InputError, UsageError
from ..io.reference import Reference
from ..io.score_table import ScoreTableWriter, SkippedWriter, skipped_line
from ..io.vcf import Variant, VcfReader, VcfRegion, VcfWriter, count_indexed_records
from .choices import InferenceOptions
from .resume import PartialDir, file_identity, remove_stale_temporaries

LLR_KEY, EMBDIST_KEY, STATUS_KEY, METHOD_KEY = "MDNA_LLR", "MDNA_EMBDIST", "MDNA_STATUS", "MDNA_METHOD"
REF_LOGP_KEY, ALT_LOGP_KEY = "MDNA_REF_LOGP", "MDNA_ALT_LOGP"
CALIBRATED_KEY = "MDNA_LLR_CAL"
# the layout of the chunk files in OUT.partial/; chunks of another layout are not resumed
CHUNK_FORMAT = 4
_ACGT = re.compile(r"^[ACGT]+$")
CHUNK_RECORDS = 2048  # records per chunk: scored together, and the unit of resumption
METHODS = {
    "snv_llr": "SNV: log p(alt) - log p(ref) at the masked base, mean of both strands",
    "mnv_llr_sum": "MNV: sum of the SNV score over the changed bases",
    "indel_embedding_cosine": "indel: 1 - cosine(mean embedding of ref window, of alt window) in MDNA_EMBDIST",
}
STATUSES = ("ok", "ref_mismatch", "ref_equals_alt", "indel_too_long", "symbolic_allele",
            "spanning_deletion", "missing_allele", "non_acgt_allele", "contig_not_in_reference",
            "reference_is_n", "outside_contig")
WARN_FRACTION = 0.05  # above this fraction of REF mismatches (or N, or missing contigs): warn


# -- the request -----------------------------------------------------------------------------------
# extension -> (format, VCF output type or table compression)
_EXTENSIONS = (
    (r"\.vcf\.b?gz$", "vcf", "z"), (r"\.vcf$", "vcf", "v"), (r"\.bcf$", "vcf", "b"),
    (r"\.tsv\.b?gz$", "tsv", "gz"), (r"\.tsv$", "tsv", None),
    (r"\.(parquet|pq)$", "parquet", None),
)


def resolve_output(out: str, fmt: str | None, output_type: str | None) -> tuple[str, str | None, bool]:
    """(format, VCF output type, gzip the table) from the extension, --format and -O; an
    extension that says one thing and an option another is an error, not a guess."""
    guessed = next(((f, kind) for pattern, f, kind in _EXTENSIONS if re.search(pattern, out)), None)
    if output_type and fmt in ("tsv", "parquet"):
        raise UsageError(f"-O {output_type} is a VCF/BCF output type; it does not go with --format {fmt}")
    if guessed is None:
        if fmt in ("tsv", "parquet"):
            return fmt, None, out.endswith(".gz")
        if out == "-" or output_type or fmt == "vcf":
            return "vcf", output_type or "v", False
        raise UsageError(f"output '{out}': use .vcf.gz, .vcf or '-', .bcf, .tsv[.gz] or .parquet, "
                         f"or pass --format tsv|parquet or -O v|z|b|u")
    ext_format, kind = guessed
    if fmt is not None and fmt != ext_format:
        raise UsageError(f"--format {fmt} contradicts the output name '{out}' (a {ext_format} name); "
                         f"use a .{fmt if fmt != 'vcf' else 'vcf.gz'} name")
    if ext_format != "vcf":
        if output_type:
            raise UsageError(f"-O {output_type} is a VCF/BCF output type; '{out}' names a {ext_format} table")
        return ext_format, None, kind == "gz"
    if output_type and output_type != kind and not (output_type == "u" and kind == "b"):
        raise UsageError(f"-O {output_type} contradicts the output name '{out}' (which means -O {kind})")
    return "vcf", output_type or kind, False


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard must be I/N with 1 <= I <= N, got '{text}'")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class ScoreRequest(InferenceOptions):
    """Everything `mergedna score` was asked, as typed values (cli/score.py fills it in). The
    choices arrive as the command's str Enums (`format` TableFormat, `output_type` OutputType,
    `ref_mismatch` RefMismatch in cli/score.py), which this layer reads as their plain values
    (those Enums live above it; plain strings work as well); the model options are
    InferenceOptions (pipelines/choices.py). Constructing one checks the options that contradict each other
    (usage errors), in the order the command line reports them."""

    fasta: Path
    vcf: str
    out: str
    format: str | None = None           # vcf | tsv | parquet; None: from the extension of `out`
    output_type: str | None = None      # v | z | b | u (bcftools -O); None: from the extension
    regions: str | None = None          # -r: chr, chr:beg or chr:beg-end (1-based), comma-separated
    regions_file: Path | None = None    # -R
    mask_spacing: int = 0               # 0: one masked position per pass
    ref_mismatch: str = "flag"          # flag | skip | error
    logprobs: bool = False
    calibrate: bool = False
    calibration: Path | None = None     # a table in place of the model's (implies calibrate)
    skipped: Path | None = None
    summary: Path | None = None
    warn_fraction: float = WARN_FRACTION
    strict: bool = False
    shard: str | None = None            # "I/N"
    chunk_records: int = CHUNK_RECORDS
    restart: bool = False
    fai: Path | None = None
    quiet: bool = False
    argv: tuple[str, ...] = ()          # the command line recorded in the VCF header

    def __post_init__(self) -> None:
        fmt, _, _ = self.output_format()
        if fmt == "parquet" and self.out == "-":
            raise UsageError("parquet output needs a file name, not '-'")
        if self.regions is not None and self.regions_file is not None:
            raise UsageError("give -r/--regions or -R/--regions-file, not both")
        parse_shard(self.shard)

    def output_format(self) -> tuple[str, str | None, bool]:
        """(vcf|tsv|parquet, VCF output type v/z/b/u, gzip the table)."""
        return resolve_output(self.out, _value(self.format), _value(self.output_type))

    def shard_spec(self) -> tuple[int, int] | None:
        return parse_shard(self.shard)

    def wanted_regions(self) -> list[VcfRegion] | None:
        from ..io.vcf import parse_regions, read_regions_file
        if self.regions is not None:
            return parse_regions(self.regions)
        if self.regions_file is not None:
            return read_regions_file(str(self.regions_file))
        return None


def _value(choice) -> str | None:
    return None if choice is None else str(getattr(choice, "value", choice))


@dataclass(frozen=True)
class ScoreOptions:
    """What changes the scores and their rendering (the scorer's and the writers' settings)."""
    strand: str = "both"
    mask_spacing: int | None = None  # one position per pass; shared passes disagreed (rho < 0.99)
    ref_mismatch: str = "flag"   # flag | skip | error
    batch_size: int = 32
    flank: int | None = None
    chunk_records: int = CHUNK_RECORDS
    logprobs: bool = False  # also write the ref/alt log-probabilities behind each LLR
    warn_fraction: float = WARN_FRACTION
    strict: bool = False  # a wrong-build warning is an error
    calibration: CalibrationTable | None = None  # SNVs also get LLR - E[LLR | 5-mer, alt]


# -- work orders and results -----------------------------------------------------------------------
@dataclass(frozen=True)
class AlleleJob:
    """What to do with one ALT: its status, and for an allele to score its method and (SNV/MNV)
    the masked positions with their ref and alt base ids."""
    status: str = "ok"
    method: str = "."
    positions: tuple[int, ...] = ()
    ref_bases: tuple[int, ...] = ()
    alt_bases: tuple[int, ...] = ()


@dataclass(frozen=True)
class RecordJob:
    """One record's work order. ref_check: the record's REF against the reference, for the run
    summary: None (not compared), "match", "n", "mismatch", or "mismatch" + "-1"/"+1" where REF
    matches the reference one base to the left/right (the sign of a 0/1-based shift)."""
    variant: Variant
    contig: str | None
    alleles: tuple[AlleleJob, ...]
    ref_check: str | None = None


@dataclass(frozen=True)
class AlleleResult:
    status: str
    method: str = "."
    score: float | None = None
    ref_logp: float | None = None  # SNV/MNV: summed over the changed bases
    alt_logp: float | None = None
    calibrated: float | None = None  # SNV with a calibration table: score - E[score | 5-mer, alt]


class ScoredRecord(NamedTuple):
    variant: Variant
    job: RecordJob
    results: tuple[AlleleResult, ...]  # one per ALT, in ALT order


def load_calibration(model_dir: Path, path: Path | None, weights_sha256: str, warn) -> CalibrationTable:
    """The table given, or the model's own calibration.json; a table made with other weights is
    used but named in a warning (its baseline belongs to another model)."""
    if path is None:
        path = Path(model_dir) / TABLE_FILE
        if not path.is_file():
            raise UsageError(f"--calibrate: model '{Path(model_dir).name}' ships no {TABLE_FILE}; "
                             "give --calibration FILE (benchmarks/calibration.py builds one)")
    table = CalibrationTable.load(path)
    if table.weights_sha256 != weights_sha256:
        warn(f"calibration table {path} was built for weights {table.weights_sha256[:12] or '?'}, "
             f"not this model's {weights_sha256[:12]}")
    return table


def shard_range(n_records: int, shard: tuple[int, int]) -> range:
    """Contiguous, deterministic split: shard I of N gets records [(I-1)R/N, IR/N). The last
    shard also takes any record past R, so the shards cover the input whatever R says."""
    i, n = shard
    return range((i - 1) * n_records // n, i * n_records // n if i < n else sys.maxsize)


def count_records(path: str, regions=None) -> int:
    """Records of the input (with `regions`, the selected ones): from the index's record count
    where it has one and no regions are asked, else by reading the input."""
    if regions is None and path != "-":
        counted = count_indexed_records(path)
        if counted is not None:
            return counted
    return sum(1 for _ in VcfReader(path, regions))


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
    @property
    def max_indel(self) -> int:
        """Longest indel allele that fits in the pooled central part of the window after its
        start (the window puts the variant at the centre)."""
        return self.context - self.flank - self.context // 2

    def classify(self, variant: Variant, contig: str | None) -> RecordJob:
        """The status of each ALT (the table in docs/commands.md, MDNA_STATUS) and, for those to
        score, the method. `contig`: the reference's name for the record's CHROM (None: absent)."""
        ref = variant.ref.upper()
        ref_status = ref_check = None
        if contig is None:
            ref_status = "contig_not_in_reference"
        elif not _ACGT.match(ref):
            ref_status = "non_acgt_allele"
        elif variant.start < 0 or variant.start + len(ref) > self.reference.lengths[contig]:
            ref_status = "outside_contig"  # POS 0 (a telomere) or past the contig end
        else:
            seq = self.reference.fetch_text(contig, variant.start, variant.start + len(ref))
            ref_check = "match"
            if set(seq) - set("ACGT"):
                ref_status = ref_check = "reference_is_n"
            elif seq != ref:
                ref_status = "ref_mismatch"
                ref_check = "mismatch" + "".join(
                    tag for tag, shift in (("-1", -1), ("+1", 1))
                    if self.reference.fetch_text(contig, variant.start + shift,
                                                 variant.start + shift + len(ref)) == ref)
                if self.options.ref_mismatch == "error":
                    raise InputError(f"REF mismatch at {variant.chrom}:{variant.start + 1}: VCF has "
                                     f"{variant.ref}, reference has {seq} (use --ref-mismatch flag|skip)")
        return RecordJob(variant, contig, tuple(self._allele_job(variant, ref, alt.upper(), ref_status)
                                                for alt in variant.alts), ref_check)

    def _allele_job(self, variant: Variant, ref: str, alt: str, ref_status: str | None) -> AlleleJob:
        if alt == "*":
            return AlleleJob("spanning_deletion")
        if alt in (".", ""):
            return AlleleJob("missing_allele")
        if alt.startswith("<") or "[" in alt or "]" in alt:
            return AlleleJob("symbolic_allele")
        if ref_status is not None:
            return AlleleJob(ref_status)
        if not _ACGT.match(alt):
            return AlleleJob("non_acgt_allele")
        if alt == ref:
            return AlleleJob("ref_equals_alt")
        if len(alt) == len(ref):
            diff = [i for i, (r, a) in enumerate(zip(ref, alt)) if r != a]
            return AlleleJob("ok", "snv_llr" if len(ref) == 1 else "mnv_llr_sum",
                             tuple(variant.start + i for i in diff),
                             tuple(int(encode(ref[i])[0]) for i in diff),
                             tuple(int(encode(alt[i])[0]) for i in diff))
        if max(len(ref), len(alt)) > self.max_indel:
            return AlleleJob("indel_too_long")
        return AlleleJob("ok", "indel_embedding_cosine")

    def embedding_backend(self):
        if callable(self._embedding_backend) and not hasattr(self._embedding_backend, "run"):
            self._embedding_backend = self._embedding_backend()
        return self._embedding_backend

    # -- scoring -------------------------------------------------------------------------------
    def score(self, jobs: Sequence[RecordJob]) -> list[ScoredRecord]:
        """The results of a chunk of work orders, in order. Masked positions are pooled per
        contig, so no position of the chunk is masked twice."""
        found: dict[tuple[int, int], AlleleResult] = {}  # (record, allele) -> result of a scored allele
        by_contig: dict[str, list[tuple[tuple[int, int], AlleleJob]]] = {}
        indels: list[tuple[tuple[int, int], RecordJob, str]] = []
        for r, job in enumerate(jobs):
            for a, (alt, allele) in enumerate(zip(job.variant.alts, job.alleles)):
                if allele.status == "ok" and allele.positions:
                    by_contig.setdefault(job.contig, []).append(((r, a), allele))
                elif allele.status == "ok" and allele.method == "indel_embedding_cosine":
                    indels.append(((r, a), job, alt.upper()))
        for contig, alleles in by_contig.items():
            found.update(self._score_masked(contig, alleles))
        if indels:
            for (key, _, _), cosine in zip(indels, self._indel_cosines(indels)):
                found[key] = AlleleResult("ok", "indel_embedding_cosine", float(cosine - 1.0))
        return [ScoredRecord(job.variant, job, tuple(found.get((r, a)) or AlleleResult(allele.status, allele.method)
                                                     for a, allele in enumerate(job.alleles)))
                for r, job in enumerate(jobs)]

    def _score_masked(self, contig: str, alleles) -> dict[tuple[int, int], AlleleResult]:
        positions = np.unique(np.concatenate([np.asarray(job.positions) for _, job in alleles]))
        lp = masked_log_probs(self.backend, self.reference, contig, positions,
                              self.options.mask_spacing, self.options.batch_size,
                              self.options.strand == "both", self.flank)
        scored = {}
        for key, job in alleles:
            rows = np.searchsorted(positions, job.positions)
            ref_bases, alt_bases = list(job.ref_bases), list(job.alt_bases)
            scored[key] = {"ref_logp": float(lp[rows, ref_bases].sum()),
                           "alt_logp": float(lp[rows, alt_bases].sum()),
                           "score": float((lp[rows, alt_bases] - lp[rows, ref_bases]).sum())}
        calibrated = {}
        if self.options.calibration is not None:
            snvs = [(key, job) for key, job in alleles if job.method == "snv_llr"]
            calibrated = self._calibrate(contig, snvs, scored)
        return {key: AlleleResult("ok", job.method, calibrated=calibrated.get(key), **scored[key])
                for key, job in alleles}

    def _calibrate(self, contig: str, snvs, scored) -> dict:
        """score - E[score | 5-mer context, alt] for SNVs whose context is all A/C/G/T. One short
        read per SNV, as the scoring passes read one window each: memory stays bounded however
        far apart the variants are."""
        if not snvs:
            return {}
        contexts = np.stack([self.reference.fetch_ids(contig, j.positions[0] - HALF, j.positions[0] + HALF + 1)
                             for _, j in snvs])
        index = context_index(contexts.ravel(), HALF + K * np.arange(len(snvs)))  # each row's centre
        expected = self.options.calibration.expected(index, np.array([j.alt_bases[0] for _, j in snvs]))
        return {key: None if np.isnan(value) else scored[key]["score"] - float(value)
                for (key, _), value in zip(snvs, expected)}

    def _indel_cosines(self, indels) -> np.ndarray:
        half = self.context // 2
        ref_ids, alt_ids = [], []
        for _, job, alt in indels:
            variant, contig = job.variant, job.contig
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
        return cosines

    # -- the run -------------------------------------------------------------------------------
    def _chunk_key(self, variant: Variant):
        tile = variant.start // self.keep if self.options.mask_spacing else variant.start
        return variant.chrom, tile

    def chunks(self, variants: Iterable[Variant]) -> Iterator[list[ScoredRecord]]:
        """Chunks of scored records; a chunk only ends where a new tile (or position) begins, so
        no window is ever encoded twice."""
        chunk: list[RecordJob] = []
        last_key = None
        for variant in variants:
            key = self._chunk_key(variant)
            if len(chunk) >= self.options.chunk_records and key != last_key:
                yield self.score(chunk)
                chunk = []
            last_key = key
            chunk.append(self.classify(variant, self.reference.resolve(variant.chrom)))
        if chunk:
            yield self.score(chunk)


def header_lines(meta: list[str], model_name: str, sha256: str, context: int, flank: int,
                 options: ScoreOptions, command: str, backend_name: str | None = None,
                 max_indel: int | None = None) -> list[str]:
    """The input's meta lines without our own (a re-scored file is upgraded, not duplicated),
    then our INFO keys and the run's provenance."""
    kept = [m for m in meta if not re.match(r"^##(INFO=<ID=MDNA_|mergedna)", m)]
    statuses = ", ".join(STATUSES)
    spacing = options.mask_spacing if options.mask_spacing else "none (one position per pass)"
    strands = "mean of both strands" if options.strand == "both" else "forward strand"
    too_long = f"; longer than {max_indel} bases: indel_too_long" if max_indel else ""
    lines = [
        f'##INFO=<ID={LLR_KEY},Number=A,Type=Float,Description="MergeDNA SNV/MNV score per ALT: '
        f'log p(alt) - log p(ref) of the masked base ({strands}; MNV: sum over the changed bases); '
        f'lower = more damaging; . for indels and unscored ALTs (see {STATUS_KEY})">',
        f'##INFO=<ID={EMBDIST_KEY},Number=A,Type=Float,Description="MergeDNA indel score per ALT: '
        f'1 - cosine(mean per-base embedding of the reference window, of the alternate window) '
        f'({strands}); 0 = no change, larger = larger change{too_long}; . for SNVs/MNVs and '
        f'unscored ALTs">',
    ]
    if options.calibration is not None:
        lines.append(
            f'##INFO=<ID={CALIBRATED_KEY},Number=A,Type=Float,Description="MergeDNA SNV score minus its '
            f'context baseline: {LLR_KEY} - E[{LLR_KEY} | 5-mer context, alt] over background SNVs '
            f'scored by the same model (table in ##mergedna_calibration); . for non-SNVs and 5-mers '
            f'with N">')
    if options.logprobs:
        lines += [
            f'##INFO=<ID={REF_LOGP_KEY},Number=A,Type=Float,Description="MergeDNA log p(ref) behind '
            f'{LLR_KEY}: natural log, masked base ({strands}; MNV: sum over the changed bases)">',
            f'##INFO=<ID={ALT_LOGP_KEY},Number=A,Type=Float,Description="MergeDNA log p(alt) behind '
            f'{LLR_KEY}: natural log, masked base ({strands}; MNV: sum over the changed bases)">',
        ]
    backend = f",Backend={backend_name}" if backend_name else ""
    return kept + lines + [
        f'##INFO=<ID={STATUS_KEY},Number=A,Type=String,Description="Why an ALT was or was not scored: {statuses}">',
        f'##INFO=<ID={METHOD_KEY},Number=A,Type=String,Description="Scoring method per ALT: '
        + "; ".join(f"{k} = {v}" for k, v in METHODS.items()) + '">',
        f"##mergedna_version={__version__}",
        f"##mergedna_model=<Name={model_name},Sha256={sha256}{backend}>",
        f"##mergedna_window=<Context={context},Flank={flank},MaskSpacing={spacing}>",
        f"##mergedna_strand={options.strand}",
        *([f"##mergedna_calibration=<File={Path(options.calibration.path).name},"
           f"Sha256={options.calibration.sha256},WeightsSha256={options.calibration.weights_sha256}>"]
          if options.calibration is not None else []),
        f"##mergedna_command={command}",
    ]


def _format(score: float | None) -> str:
    return "." if score is None else f"{score:.4f}"


def _format_embdist(score: float | None) -> str:
    # cosine distances are small (about 1e-3): significant digits, not decimals
    # (score is cosine - 1; the distance 1 - cosine is clamped at 0 against float rounding)
    return "." if score is None else f"{max(0.0, -score):.4g}"


def info_fields(results: Sequence[AlleleResult], logprobs: bool, calibrated: bool = False) -> list[str]:
    """Our INFO key=value pairs for one record (one value per ALT, '.' where not applicable)."""
    llr = [j.score if j.method in ("snv_llr", "mnv_llr_sum") else None for j in results]
    emb = [j.score if j.method == "indel_embedding_cosine" else None for j in results]
    fields = [f"{LLR_KEY}=" + ",".join(_format(v) for v in llr),
              f"{EMBDIST_KEY}=" + ",".join(_format_embdist(v) for v in emb)]
    if calibrated:
        fields.append(f"{CALIBRATED_KEY}=" + ",".join(_format(j.calibrated) for j in results))
    if logprobs:
        fields += [f"{REF_LOGP_KEY}=" + ",".join(_format(j.ref_logp) for j in results),
                   f"{ALT_LOGP_KEY}=" + ",".join(_format(j.alt_logp) for j in results)]
    return fields + [f"{STATUS_KEY}=" + ",".join(j.status for j in results),
                     f"{METHOD_KEY}=" + ",".join(j.method for j in results)]


def vcf_line(variant: Variant, results: Sequence[AlleleResult], logprobs: bool, calibrated: bool) -> str:
    """The record as read with our INFO keys appended; every MDNA_* key it had (an older output's
    MDNA_SCORE included) is dropped first, so a re-scored file is upgraded, not duplicated."""
    fields = variant.fields
    info = fields[7]
    if "MDNA_" in info:
        info = ";".join(kv for kv in info.split(";") if not kv.startswith("MDNA_")) or "."
        variant = Variant(variant.index, [*fields[:7], info, *fields[8:]])
    return variant.with_info(info_fields(results, logprobs, calibrated)) + "\n"


def command_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in ["mergedna", *argv])


@dataclass
class ScoreSummary:
    records: int = 0
    alleles: Counter = field(default_factory=Counter)
    resumed: int = 0  # records whose scores came from an earlier, killed run
    written: int = 0  # records written (all but those dropped by --ref-mismatch skip)
    ref_checks: Counter = field(default_factory=Counter)  # RecordJob.ref_check per record
    missing_contig: int = 0  # records on a contig the reference lacks
    warnings: list[str] = field(default_factory=list)

    def add(self, statuses: Sequence[str], ref_check: str | None) -> None:
        """One record: its ALTs' statuses and its REF check (RecordJob.ref_check)."""
        self.records += 1
        self.alleles.update(statuses)
        if ref_check:
            self.ref_checks[ref_check] += 1
        if "contig_not_in_reference" in statuses:
            self.missing_contig += 1

    @property
    def compared(self) -> int:
        """Records whose REF was compared with the reference."""
        return sum(self.ref_checks.values())

    @property
    def mismatches(self) -> int:
        return sum(n for check, n in self.ref_checks.items() if check.startswith("mismatch"))

    def fractions(self) -> dict:
        compared = max(self.compared, 1)
        return {"ref_mismatch": self.mismatches / compared,
                "reference_is_n": self.ref_checks["reference_is_n"] / compared,
                "contig_not_in_reference": self.missing_contig / max(self.records, 1)}

    def check(self, threshold: float) -> list[str]:
        """Warnings naming the likely cause when the REF checks point at the wrong reference."""
        warnings = []
        fractions, compared = self.fractions(), self.compared
        if fractions["ref_mismatch"] > threshold:
            mismatches = self.mismatches
            left = sum(n for c, n in self.ref_checks.items() if c.startswith("mismatch") and "-1" in c)
            right = sum(n for c, n in self.ref_checks.items() if c.startswith("mismatch") and "+1" in c)
            cause = "is the reference the build the VCF was called on?"
            n, side, how = max((left, "left", "POS is one too high"), (right, "right", "POS is one too low"))
            if mismatches >= 5 and n >= 0.8 * mismatches:  # by chance: about 1 in 4 for SNVs
                cause = (f"{n / mismatches:.0%} of them match the reference one base to the "
                         f"{side}: {how} (a 0/1-based coordinate shift?)")
            warnings.append(f"{fractions['ref_mismatch']:.1%} of records ({mismatches}/{compared}) have a "
                            f"REF that differs from the reference; {cause}")
        if fractions["reference_is_n"] > threshold:
            warnings.append(f"{fractions['reference_is_n']:.1%} of records ({self.ref_checks['reference_is_n']}"
                            f"/{compared}) fall on N bases of the reference: positions from another "
                            f"build (hg19 positions on hg38?)")
        if fractions["contig_not_in_reference"] > threshold:
            warnings.append(f"{fractions['contig_not_in_reference']:.1%} of records ({self.missing_contig}/"
                            f"{self.records}) are on contigs the reference lacks: another build or "
                            f"naming scheme?")
        return warnings

    def as_json(self) -> dict:
        return {"records": self.records, "records_written": self.written,
                "records_resumed": self.resumed, "alleles": dict(self.alleles.most_common()),
                "reference_check": {"records_compared": self.compared,
                                    "ref_mismatch": self.mismatches,
                                    "ref_mismatch_one_base_left": sum(
                                        n for c, n in self.ref_checks.items() if "-1" in c),
                                    "ref_mismatch_one_base_right": sum(
                                        n for c, n in self.ref_checks.items() if "+1" in c),
                                    "reference_is_n": self.ref_checks["reference_is_n"],
                                    "contig_not_in_reference": self.missing_contig},
                "fractions": {k: round(v, 6) for k, v in self.fractions().items()},
                "warnings": self.warnings}


def write_summary(path: str, summary: ScoreSummary, extra: dict) -> None:
    text = json.dumps({**extra, **summary.as_json()}, indent=1) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


@dataclass
class OutputSpec:
    """What `score` writes: a VCF (output_type v/z/b/u) or a table (tsv, optionally gzipped, or
    parquet), and the optional side files."""
    path: str
    table_format: str | None = None
    output_type: str | None = None  # VcfWriter's; None: from the extension
    compress: bool = False          # tables: gzip (.gz)
    skipped: str | None = None
    summary: str | None = None
    summary_extra: dict = field(default_factory=dict)


# -- output: what each record contributes, and the one writer --------------------------------------
class RecordOutput(NamedTuple):
    """A scored record as it goes to the outputs. `out`: VCF line or table rows as text, or for
    parquet the rows themselves ('' or [] when --ref-mismatch skip drops the record); `skipped`:
    its --skipped lines; the rest is what the run summary counts and the writer's sort check."""
    out: str | list
    skipped: str
    statuses: list[str]
    ref_check: str | None
    chrom: str
    start: int
    written: bool


class Renderer:
    """Scored records -> RecordOutput, for one output format."""

    def __init__(self, spec: OutputSpec, options: ScoreOptions):
        self.table_format = spec.table_format
        self.logprobs, self.calibrated = options.logprobs, options.calibration is not None
        self.skip_mismatches = options.ref_mismatch == "skip"
        self.table = (ScoreTableWriter.renderer(spec.table_format, self.logprobs, self.calibrated)
                      if spec.table_format else None)

    def __call__(self, record: ScoredRecord) -> RecordOutput:
        variant, results = record.variant, record.results
        skipped = "".join(skipped_line(variant, alt, result.status)
                          for alt, result in zip(variant.alts, results) if result.status != "ok")
        statuses = [result.status for result in results]
        written = not (self.skip_mismatches and "ref_mismatch" in statuses)
        if not written:
            out = [] if self.table_format == "parquet" else ""
        elif self.table is not None:
            out = self.table(variant, results)
        else:
            out = vcf_line(variant, results, self.logprobs, self.calibrated)
        return RecordOutput(out, skipped, statuses, record.job.ref_check, variant.chrom, variant.start, written)


class ScoreOutput:
    """The output (VCF or table), the --skipped list and the run summary, fed in input order:
    straight from the scorer, or from the chunks kept in OUT.partial/. Use as a context manager:
    leaving it normally closes the files (renamed into place, the output first) and writes the
    --summary; an exception removes them (nothing under a final name)."""

    def __init__(self, spec: OutputSpec, options: ScoreOptions, header: str, log=lambda m: None,
                 resumed: int = 0):
        self.spec, self.options, self.header, self.log = spec, options, header, log
        self.summary = ScoreSummary(resumed=resumed)
        self._last = (None, -1)
        self._sorted = True

    def __enter__(self) -> ScoreOutput:
        spec, options = self.spec, self.options
        with ExitStack() as files:  # on an exception here, the files opened so far are removed
            self.skipped = files.enter_context(SkippedWriter(spec.skipped)) if spec.skipped else None
            if spec.table_format:
                self.writer = files.enter_context(ScoreTableWriter(
                    spec.path, spec.table_format, compress=spec.compress, logprobs=options.logprobs,
                    calibrated=options.calibration is not None))
            else:
                self.writer = files.enter_context(VcfWriter(spec.path, self.log, spec.output_type))
                self.writer.write(self.header)
            self._files = files.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._files.__exit__(exc_type, exc, tb)
        if exc_type is None and self.spec.summary:
            write_summary(self.spec.summary, self.summary, self.spec.summary_extra)

    def add(self, records: Iterable[RecordOutput]) -> None:
        for record in records:
            self.add_meta(record)
            self.write(record.out, record.skipped)

    def write(self, out: str | list, skipped: str) -> None:
        """Output text (table rows for parquet) and --skipped lines, appended as they are."""
        if out:
            self.writer.write(out)
        if skipped and self.skipped:
            self.skipped.write(skipped)

    def add_meta(self, record: RecordOutput) -> None:
        """The run summary's and the sort check's share of a record."""
        self.summary.add(record.statuses, record.ref_check)
        if record.chrom == self._last[0] and record.start < self._last[1]:
            self._sorted = False
        self._last = (record.chrom, record.start)
        if record.written:
            self.summary.written += 1

    def finish(self) -> ScoreSummary:
        """The run summary's wrong-reference warnings; under --strict they stop the run (the
        summary is written, the outputs are not)."""
        summary, spec = self.summary, self.spec
        summary.warnings = summary.check(self.options.warn_fraction)
        if self.options.strict and summary.warnings:
            if spec.summary:
                write_summary(spec.summary, summary, spec.summary_extra)
            written = "; stdout holds the records written so far" if spec.path == "-" else "; no output written"
            raise InputError(f"--strict: {summary.warnings[0]}{written}")
        if not spec.table_format:
            self.writer.sorted_input = self._sorted  # unsorted: written without an index
        return summary


# -- the run ---------------------------------------------------------------------------------------
def run(request: ScoreRequest, on_records=None) -> ScoreSummary:
    """`mergedna score`: the reference, the model and its backends, the calibration table and the
    outputs that `request` names, then the scoring run (run_score) and its summary on stderr."""
    from ..engine.load import make_backend, resolve_batch_size, same_model_backend
    from ..model.files import weights_sha256
    from ..model_dirs import resolve_model_dir
    from .progress import Logger

    fmt, kind, compress = request.output_format()
    wanted = request.wanted_regions()
    log = Logger(request.quiet)
    reference = Reference(request.fasta, fai=request.fai)
    model_dir = resolve_model_dir(request.model)
    backend_choice = _value(request.backend)
    # SNVs/MNVs go through the masked graph; the indels' embedding graph is made at the first indel
    masked = make_backend(model_dir, backend_choice, request.device, request.threads, log=log.info, part="masked")
    batch_size = resolve_batch_size(request.batch_size, masked, log=log.info)
    sha256 = weights_sha256(model_dir)

    def warn(message: str) -> None:  # shown even with --quiet, like the run summary's warnings
        print(f"mergedna: warning: {message}", file=sys.stderr)

    table = (load_calibration(model_dir, request.calibration, sha256, warn)
             if request.calibrate or request.calibration else None)
    options = ScoreOptions(strand=_value(request.strand), mask_spacing=request.mask_spacing or None,
                           ref_mismatch=_value(request.ref_mismatch), batch_size=batch_size,
                           chunk_records=request.chunk_records, logprobs=request.logprobs,
                           warn_fraction=request.warn_fraction, strict=request.strict, calibration=table)
    backend_name = getattr(masked, "name", None) or backend_choice
    spec = OutputSpec(request.out, None if fmt == "vcf" else fmt, kind if fmt == "vcf" else None, compress,
                      skipped=str(request.skipped) if request.skipped else None,
                      summary=str(request.summary) if request.summary else None,
                      summary_extra={"input": request.vcf, "output": request.out, "reference": str(request.fasta),
                                     "model": model_dir.name, "backend": backend_name})

    def embedding_backend():
        return same_model_backend(masked, "embedding") or make_backend(
            model_dir, backend_choice, request.device, request.threads, log=log.info, part="embedding")

    with log.counter("scoring records") as tick:
        summary = run_score(masked, reference, request.vcf, spec, options, model_dir.name, sha256,
                            shard=request.shard_spec(), argv=list(request.argv), log=log.info,
                            on_records=on_records or tick, restart=request.restart,
                            embedding_backend=embedding_backend, regions=wanted, backend_name=backend_name)
    for user, ref in reference.renames.items():
        log.info(f"contig '{user}' matched to reference contig '{ref}'")
    counts = ", ".join(f"{status} {n}" for status, n in summary.alleles.most_common())
    resumed = f"; {summary.resumed} of them from an earlier run" if summary.resumed else ""
    fractions = summary.fractions()
    checks = ""  # the REF checks, when any failed (a clean run keeps its one short line)
    if summary.mismatches or summary.ref_checks["reference_is_n"]:
        checks = (f"; REF mismatch {fractions['ref_mismatch']:.1%}, reference N "
                  f"{fractions['reference_is_n']:.1%} of {summary.compared} records compared")
    log.info(f"scored {summary.records} records ({counts}){resumed}{checks}")
    for warning in summary.warnings:  # shown even with --quiet: the scores are likely meaningless
        print(f"mergedna: warning: {warning}", file=sys.stderr)
    return summary


def run_score(backend, reference: Reference, vcf: str, out: str | OutputSpec, options: ScoreOptions,
              model_name: str, sha256: str, table_format: str | None = None, skipped: str | None = None,
              shard: tuple[int, int] | None = None, argv: list[str] | None = None, log=lambda m: None,
              on_records=lambda n: None, restart: bool = False, embedding_backend=None,
              regions: list[VcfRegion] | None = None, backend_name: str | None = None) -> ScoreSummary:
    """Score `vcf` into `out` with the backends given, reading the input once. With a file in and
    a file out the run is resumable: each finished chunk's output text goes to `OUT.partial/`
    and the outputs are their concatenation (resume.py). `regions` (-r/-R) scores only the
    records overlapping them (an indexed input)."""
    spec = out if isinstance(out, OutputSpec) else OutputSpec(out, table_format, skipped=skipped)
    out = spec.path
    if shard and vcf == "-":
        raise UsageError("--shard needs a VCF file, not stdin (records are counted first)")
    scorer = Scorer(backend, reference, options, log, embedding_backend)
    wanted = shard_range(count_records(vcf, regions), shard) if shard else None
    reader = VcfReader(vcf, regions, log)
    command = command_line(argv if argv is not None else sys.argv[1:])
    header = header_lines(reader.meta_lines, model_name, sha256, scorer.context, scorer.flank, options,
                          command, backend_name or getattr(backend, "name", None), scorer.max_indel)
    header_text = "\n".join(header + [reader.column_line]) + "\n"
    render = Renderer(spec, options)
    records = _selected(reader, wanted)

    if vcf == "-" or out == "-":  # a stream cannot be resumed: each chunk goes straight to the writer
        with ScoreOutput(spec, options, header_text, log) as output:
            for chunk in scorer.chunks(records):
                output.add(render(record) for record in chunk)
                on_records(len(chunk))
            output.finish()
        return output.summary

    manifest = {"vcf": file_identity(vcf), "fasta": file_identity(reference.path),
                "model": model_name, "weights_sha256": sha256,
                "backend": backend_name or getattr(backend, "name", None),
                "shard": list(shard) if shard else None, "strand": options.strand,
                "mask_spacing": options.mask_spacing, "flank": scorer.flank,
                "calibration": options.calibration.sha256 if options.calibration is not None else None,
                "ref_mismatch": options.ref_mismatch, "chunk_records": options.chunk_records,
                "regions": [[r.chrom, r.start, r.end] for r in regions] if regions is not None else None,
                "format": spec.table_format or "vcf", "logprobs": options.logprobs,
                "chunk_format": CHUNK_FORMAT}
    with PartialDir(out, manifest, restart, log) as partial:
        remove_stale_temporaries(out)
        for side in (spec.skipped, spec.summary):
            if side:
                remove_stale_temporaries(side)
        chunks = ChunkStore(partial, spec.table_format == "parquet")
        done = resumed = chunks.finished_records()
        if done:
            log(f"resuming: {done:,} records already scored in {partial.path}")
            on_records(done)
        for chunk in scorer.chunks(itertools.islice(records, done, None)):
            chunks.save(done, [render(record) for record in chunk])
            done += len(chunk)
            on_records(len(chunk))
        with ScoreOutput(spec, options, header_text, log, resumed) as output:
            chunks.replay(output)
            output.finish()
        partial.remove()
    return output.summary


def _selected(reader: VcfReader, wanted: range | None) -> Iterator[Variant]:
    return (v for v in reader if wanted is None or v.index in wanted)


class ChunkStore:
    """The finished chunks of a resumable run in OUT.partial/, each as three files named by its
    first and end record (0-based, end exclusive):
      chunk-FIRST-END.out      the output text (VCF lines or table rows; parquet: one JSON row per line)
      chunk-FIRST-END.skipped  the --skipped lines
      chunk-FIRST-END.jsonl    per record, what the run summary counts:
                               [statuses, ref_check, chrom, start, written]
    The .jsonl is written last: a chunk is finished when it exists."""

    def __init__(self, partial: PartialDir, rows: bool):
        self.partial, self.rows = partial, rows

    @staticmethod
    def _name(first: int, end: int, suffix: str) -> str:
        return f"chunk-{first:012d}-{end:012d}{suffix}"

    def finished(self) -> list[Path]:
        """The .jsonl of the finished chunks that follow on from record 0, in order. Anything
        else (a chunk cut short by a kill, or one that does not follow on) is removed."""
        kept, done = [], 0
        for path in self.partial.chunks("chunk-*.jsonl"):
            first, end = (int(x) for x in path.name.split(".")[0].split("-")[1:])
            if first == done and all(path.with_suffix(s).is_file() for s in (".out", ".skipped")):
                kept.append(path)
                done = end
        names = {p.with_suffix(s).name for p in kept for s in (".out", ".skipped", ".jsonl")}
        for path in self.partial.chunks("chunk-*"):
            if path.name not in names:
                path.unlink()
        return kept

    def finished_records(self) -> int:
        kept = self.finished()
        return int(kept[-1].name.split(".")[0].split("-")[2]) if kept else 0

    def save(self, first: int, records: list[RecordOutput]) -> None:
        end = first + len(records)
        if self.rows:
            out = "".join(json.dumps(row) + "\n" for record in records for row in record.out)
        else:
            out = "".join(record.out for record in records)
        meta = "".join(json.dumps([r.statuses, r.ref_check, r.chrom, r.start, r.written]) + "\n" for r in records)
        for suffix, text in ((".out", out), (".skipped", "".join(r.skipped for r in records)), (".jsonl", meta)):
            self.partial.write(self._name(first, end, suffix), lambda tmp, text=text: _write_text(tmp, text))

    def replay(self, output: ScoreOutput) -> None:
        """Every finished chunk, in order, into the output."""
        for path in self.finished():
            first, end = (int(x) for x in path.name.split(".")[0].split("-")[1:])
            metas = [json.loads(line) for line in _read_text(path).splitlines()]
            if len(metas) != end - first:
                raise InputError(f"{path} holds {len(metas)} records, not {end - first}; rerun with --restart")
            for statuses, ref_check, chrom, start, written in metas:
                output.add_meta(RecordOutput("", "", statuses, ref_check, chrom, start, written))
            text = _read_text(path.with_suffix(".out"))
            out = [json.loads(line) for line in text.splitlines()] if self.rows else text
            output.write(out, _read_text(path.with_suffix(".skipped")))


# chunk text is the output's text: bytes that are not UTF-8 are kept as surrogate escapes (as the
# VCF reader decodes them), and no newline translation ('\r' inside a record stays as it is)
def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        handle.write(text)


def _read_text(path: Path) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        return handle.read()
