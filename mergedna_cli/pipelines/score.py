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
from pathlib import Path

import numpy as np

from .. import __version__
from ..alphabet import encode, reverse_complement
from ..engine.calibration import HALF, K, TABLE_FILE, CalibrationTable, context_index
from ..engine.engine import per_base_vectors
from ..engine.masked import masked_log_probs
from ..engine.windows import default_flank
from ..errors import InputError, UsageError
from ..io.reference import Reference
from ..io.score_table import ScoreTableWriter, SkippedWriter
from ..atomic import atomic_write
from ..io.vcf import Variant, VcfReader, VcfRegion, VcfWriter
from .resume import PartialDir, file_identity, remove_stale_temporaries

LLR_KEY, EMBDIST_KEY, STATUS_KEY, METHOD_KEY = "MDNA_LLR", "MDNA_EMBDIST", "MDNA_STATUS", "MDNA_METHOD"
REF_LOGP_KEY, ALT_LOGP_KEY = "MDNA_REF_LOGP", "MDNA_ALT_LOGP"
CALIBRATED_KEY = "MDNA_LLR_CAL"
CHUNK_FORMAT = 3  # the fields of a chunk line; chunks of another format are not resumed
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


@dataclass
class ScoreOptions:
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


@dataclass
class AlleleJob:
    status: str = "ok"
    method: str = "."
    score: float | None = None
    ref_logp: float | None = None  # SNV/MNV: summed over the changed bases
    alt_logp: float | None = None
    calibrated: float | None = None  # SNV with a calibration table: score - E[score | 5-mer, alt]
    # the record's REF against the reference (same for all its ALTs), for the run summary:
    # None (not compared), "match", "n", "mismatch", or "mismatch" + "-1"/"+1" where REF matches
    # the reference one base to the left/right (the sign of a 0/1-based shift)
    ref_check: str | None = None
    positions: list[int] = field(default_factory=list)  # masked positions (SNV/MNV)
    ref_bases: list[int] = field(default_factory=list)
    alt_bases: list[int] = field(default_factory=list)


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
    @property
    def max_indel(self) -> int:
        """Longest indel allele that fits in the pooled central part of the window after its
        start (the window puts the variant at the centre)."""
        return self.context - self.flank - self.context // 2

    def classify(self, variant: Variant, contig: str | None) -> list[AlleleJob]:
        ref = variant.ref.upper()
        jobs = []
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
        for alt in variant.alts:
            alt_u = alt.upper()
            if alt_u == "*":
                job = AlleleJob("spanning_deletion")
            elif alt_u in (".", ""):
                job = AlleleJob("missing_allele")
            elif alt_u.startswith("<") or "[" in alt_u or "]" in alt_u:
                job = AlleleJob("symbolic_allele")
            elif ref_status is not None:
                job = AlleleJob(ref_status)
            elif not _ACGT.match(alt_u):
                job = AlleleJob("non_acgt_allele")
            elif alt_u == ref:
                job = AlleleJob("ref_equals_alt")
            elif len(alt_u) == len(ref):
                diff = [i for i, (r, a) in enumerate(zip(ref, alt_u)) if r != a]
                method = "snv_llr" if len(ref) == 1 else "mnv_llr_sum"
                job = AlleleJob(
                    "ok", method, positions=[variant.start + i for i in diff],
                    ref_bases=[int(encode(ref[i])[0]) for i in diff],
                    alt_bases=[int(encode(alt_u[i])[0]) for i in diff])
            elif max(len(ref), len(alt_u)) > self.max_indel:
                job = AlleleJob("indel_too_long")
            else:
                job = AlleleJob("ok", "indel_embedding_cosine")
            job.ref_check = ref_check
            jobs.append(job)
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
                job.ref_logp = float(lp[rows, job.ref_bases].sum())
                job.alt_logp = float(lp[rows, job.alt_bases].sum())
                job.score = float((lp[rows, job.alt_bases] - lp[rows, job.ref_bases]).sum())
            if self.options.calibration is not None:
                self._calibrate(contig, [j for j in jobs if j.method == "snv_llr"])
        if indels:
            self._score_indels(indels)

    def _calibrate(self, contig: str, snvs: list[AlleleJob]) -> None:
        """score - E[score | 5-mer context, alt] for SNVs whose context is all A/C/G/T. One short
        read per SNV, as the scoring passes read one window each: memory stays bounded however
        far apart the variants are."""
        if not snvs:
            return
        contexts = np.stack([self.reference.fetch_ids(contig, j.positions[0] - HALF, j.positions[0] + HALF + 1)
                             for j in snvs])
        index = context_index(contexts.ravel(), HALF + K * np.arange(len(snvs)))  # each row's centre
        expected = self.options.calibration.expected(index, np.array([j.alt_bases[0] for j in snvs]))
        for job, value in zip(snvs, expected):
            job.calibrated = None if np.isnan(value) else job.score - float(value)

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


def info_fields(jobs: list[AlleleJob], logprobs: bool, calibrated: bool = False) -> list[str]:
    """Our INFO key=value pairs for one record (one value per ALT, '.' where not applicable)."""
    llr = [j.score if j.method in ("snv_llr", "mnv_llr_sum") else None for j in jobs]
    emb = [j.score if j.method == "indel_embedding_cosine" else None for j in jobs]
    fields = [f"{LLR_KEY}=" + ",".join(_format(v) for v in llr),
              f"{EMBDIST_KEY}=" + ",".join(_format_embdist(v) for v in emb)]
    if calibrated:
        fields.append(f"{CALIBRATED_KEY}=" + ",".join(_format(j.calibrated) for j in jobs))
    if logprobs:
        fields += [f"{REF_LOGP_KEY}=" + ",".join(_format(j.ref_logp) for j in jobs),
                   f"{ALT_LOGP_KEY}=" + ",".join(_format(j.alt_logp) for j in jobs)]
    return fields + [f"{STATUS_KEY}=" + ",".join(j.status for j in jobs),
                     f"{METHOD_KEY}=" + ",".join(j.method for j in jobs)]


def _strip_own_info(variant: Variant) -> None:
    """Remove every MDNA_* INFO key (an older output's MDNA_SCORE included) before ours go in."""
    info = variant.fields[7]
    if "MDNA_" in info:
        kept = [kv for kv in info.split(";") if not kv.startswith("MDNA_")]
        variant.fields[7] = ";".join(kept) or "."


def command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in ["mergedna", *argv])


@dataclass
class ScoreSummary:
    records: int = 0
    alleles: Counter = field(default_factory=Counter)
    resumed: int = 0  # records whose scores came from an earlier, killed run
    written: int = 0  # records written (all but those dropped by --ref-mismatch skip)
    ref_checks: Counter = field(default_factory=Counter)  # AlleleJob.ref_check per record
    missing_contig: int = 0  # records on a contig the reference lacks
    warnings: list[str] = field(default_factory=list)

    def add(self, jobs: list[AlleleJob]) -> None:
        self.records += 1
        self.alleles.update(job.status for job in jobs)
        if jobs[0].ref_check:
            self.ref_checks[jobs[0].ref_check] += 1
        if any(job.status == "contig_not_in_reference" for job in jobs):
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


def count_records(path: str, regions=None) -> int:
    return sum(1 for _ in VcfReader(path, regions))


def run_score(backend, reference: Reference, vcf: str, out: str | OutputSpec, options: ScoreOptions,
              model_name: str, sha256: str, table_format: str | None = None, skipped: str | None = None,
              shard: tuple[int, int] | None = None, argv: list[str] | None = None, log=lambda m: None,
              on_records=lambda n: None, restart: bool = False, embedding_backend=None,
              regions: list[VcfRegion] | None = None, backend_name: str | None = None) -> ScoreSummary:
    """Score `vcf` into `out`. With a file in and a file out the run is resumable: scores go to
    `OUT.partial/` chunk by chunk and the output is assembled from them at the end (resume.py).
    `regions` (-r/-R) scores only the records overlapping them (an indexed input)."""
    spec = out if isinstance(out, OutputSpec) else OutputSpec(out, table_format, skipped=skipped)
    out = spec.path
    if shard and vcf == "-":
        raise UsageError("--shard needs a VCF file, not stdin (records are counted first)")
    scorer = Scorer(backend, reference, options, log, embedding_backend)
    wanted = shard_range(count_records(vcf, regions), shard) if shard else None
    command = command_line(argv if argv is not None else sys.argv[1:])
    backend_name = backend_name or getattr(backend, "name", None)

    def header(reader: VcfReader) -> list[str]:
        return header_lines(reader.meta_lines, model_name, sha256, scorer.context, scorer.flank, options,
                            command, backend_name, scorer.max_indel)

    if vcf == "-" or out == "-":  # a stream cannot be resumed: score straight into the writer
        reader = VcfReader(vcf, regions, log)

        def scored():
            for chunk in scorer.chunks(_selected(reader, wanted)):
                yield from ((variant, jobs) for variant, _, jobs in chunk)
                on_records(len(chunk))
        return _write_output(scored(), reader, header(reader), spec, options, log)

    scoring = VcfReader(vcf, regions, log)  # first: a missing or malformed VCF is reported as such
    manifest = {"vcf": file_identity(vcf), "fasta": file_identity(reference.path),
                "model": model_name, "weights_sha256": sha256, "backend": backend_name,
                "shard": list(shard) if shard else None, "strand": options.strand,
                "mask_spacing": options.mask_spacing, "flank": scorer.flank,
                "calibration": options.calibration.sha256 if options.calibration is not None else None,
                "ref_mismatch": options.ref_mismatch, "chunk_records": options.chunk_records,
                "regions": [[r.chrom, r.start, r.end] for r in regions] if regions is not None else None,
                "chunk_format": CHUNK_FORMAT}
    with PartialDir(out, manifest, restart, log) as partial:
        remove_stale_temporaries(out)
        for side in (spec.skipped, spec.summary):
            if side:
                remove_stale_temporaries(side)
        done = resumed = _finished_records(partial)
        if done:
            log(f"resuming: {done:,} records already scored in {partial.path}")
            on_records(done)
        remaining = itertools.islice(_selected(scoring, wanted), done, None)
        for chunk in scorer.chunks(remaining):
            _save_chunk(partial, done, chunk)
            done += len(chunk)
            on_records(len(chunk))
        reader = VcfReader(vcf, regions, log)
        summary = _write_output(_stored(partial, _selected(reader, wanted)), reader, header(reader), spec,
                                options, log, resumed)
        partial.remove()
    return summary


def _selected(reader: VcfReader, wanted: range | None) -> Iterator[Variant]:
    return (v for v in reader if wanted is None or v.index in wanted)


# -- chunks of a resumable run: one JSON line per record,
#    [index, [[score, status, method, ref_logp, alt_logp, calibrated], ...], ref_check] --
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
    lines = [json.dumps([variant.index,
                         [[job.score, job.status, job.method, job.ref_logp, job.alt_logp, job.calibrated]
                          for job in jobs],
                         jobs[0].ref_check])
             for variant, _, jobs in chunk]
    partial.write(_chunk_name(first, first + len(chunk)),
                  lambda tmp: tmp.write_text("\n".join(lines) + "\n"))


def _stored(partial: PartialDir, variants: Iterator[Variant]) -> Iterator[tuple[Variant, list[AlleleJob]]]:
    """Input records re-read, each paired with its scores from the chunk files."""
    def results():
        for path in partial.chunks():
            with open(path) as handle:
                for line in handle:
                    index, jobs, ref_check = json.loads(line)
                    yield index, [AlleleJob(status, method, score, ref_logp, alt_logp, calibrated, ref_check)
                                  for score, status, method, ref_logp, alt_logp, calibrated in jobs]

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
                  spec: OutputSpec, options: ScoreOptions, log=lambda m: None, resumed: int = 0) -> ScoreSummary:
    """Every record, in input order, to the VCF or table writer and the --skipped list; then the
    run summary, whose wrong-reference warnings stop the run under --strict (nothing is written)."""
    summary = ScoreSummary(resumed=resumed)
    if spec.table_format:
        writer = ScoreTableWriter(spec.path, spec.table_format, compress=spec.compress,
                                  logprobs=options.logprobs, calibrated=options.calibration is not None)
    else:
        writer = VcfWriter(spec.path, log, spec.output_type)
    skipped_list = None
    last = (None, -1)
    is_sorted = True
    try:
        if not spec.table_format:
            writer.write("\n".join(header + [reader.column_line]) + "\n")
        skipped_list = SkippedWriter(spec.skipped) if spec.skipped else None
        for variant, jobs in records:
            summary.add(jobs)
            key = (variant.chrom, variant.start)
            if key[0] == last[0] and key[1] < last[1]:
                is_sorted = False
            last = key
            for alt, job in zip(variant.alts, jobs):
                if job.status != "ok" and skipped_list:
                    skipped_list.add(variant, alt, job.status)
            if options.ref_mismatch == "skip" and any(j.status == "ref_mismatch" for j in jobs):
                continue
            summary.written += 1
            if spec.table_format:
                writer.add(variant, jobs)
            else:
                _strip_own_info(variant)
                writer.write(variant.with_info(info_fields(jobs, options.logprobs,
                                                           options.calibration is not None)) + "\n")
        summary.warnings = summary.check(options.warn_fraction)
        if options.strict and summary.warnings:
            if spec.summary:
                write_summary(spec.summary, summary, spec.summary_extra)
            written = "; stdout holds the records written so far" if spec.path == "-" else "; no output written"
            raise InputError(f"--strict: {summary.warnings[0]}{written}")
    except BaseException:
        writer.abort()
        if skipped_list:
            skipped_list.abort()
        raise
    if spec.table_format:
        writer.close()
    else:
        writer.close(sorted_input=is_sorted)
    if skipped_list:
        skipped_list.close()
    if spec.summary:
        write_summary(spec.summary, summary, spec.summary_extra)
    return summary
