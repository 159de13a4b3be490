"""Do learned token lengths differ between BRCA1 exons, introns and low-complexity repeats?

Tokens come from `mergedna tracks` on the BRCA1 locus (run here, or an existing PREFIX.tokens.bed
with --bed). The shared reference is not soft-masked and no gene annotation ships offline, so the
classes are derived from what exists:

- exon / intron: the HGVS c. notation of the BRCA1 saturation-editing set (Findlay 2018,
  NM_007294.3). Along one exon, genomic position and transcript coordinate move in lock-step, so
  every variant gives its exon's constant K = anchor - strand * X (anchor: the exon base an
  intronic c.X+N / c.X-N hangs off). c.X-N marks X as an exon's first base and c.X+N as its last;
  an exon whose last base c.E and the next exon's first base c.E+1 are both marked bounds one
  whole intron. Exons are labelled only between their known ends (or the outermost exonic variant
  where an end is unmarked); introns where whole, plus the bases from an exon end to each
  intronic variant hanging off it. Marked ends are checked against the GT..AG splice consensus.
  Everything else in the locus is "unannotated".
  (ClinVar's table carries consequence terms but no c. positions, so it adds nothing here.)
- repeat: no RepeatMasker track offline, so low-complexity sequence stands in: homopolymer runs of
  >= 6 bases and short tandem repeats (period 2-6, >= 3 copies and >= 12 bp).

A token belongs to the class of its centre base (start + length // 2): unlike "all of its bases
in the class", this does not favour short tokens in small or fragmented classes; "straddling"
counts the tokens only partly in a class. "base-weighted" is the mean length of the token
covering each base of the class (a long token counts once per base). Exon vs intron
is tested with Mann-Whitney U on token lengths, and - because neighbouring tokens are not
independent - with a circular-shift test: the label track is rotated against the tokens, which
keeps both tracks' own structure, and the exon - intron difference of base-weighted mean length is
compared with the rotated ones.

    python benchmarks/token_annotation.py [--bed PREFIX.tokens.bed] [--model DIR] [--threads 1]
        [--shifts 999] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_FASTA = SHARED / "grch38_chr17_brca1_region" / "GRCh38_chr17_brca1_region.fa.gz"
DEFAULT_SGE = SHARED / "brca1_sge_findlay2018" / "variants.tsv"
LOCUS = ("chr17", 43_044_294, 43_125_483)  # chr17:43,044,295-43,125,483, 0-based half-open

UNANNOTATED, EXON, INTRON = 0, 1, 2
HGVS = re.compile(r"^c\.(-?)(\d+)(?:([+-])(\d+))?([ACGT])>([ACGT])$")
COMPLEMENT = str.maketrans("ACGT", "TGCA")


# --- exon / intron labels from HGVS c. notation ---------------------------------------------------

def parse_sge(path: Path) -> dict[str, np.ndarray]:
    """Position (1-based), genomic REF, transcript coordinate X (c.-k -> 1-k, so c.-1 and c.1 are
    neighbours) and signed intronic offset of every c. variant the pattern reads (others: c.* 3'
    UTR, none here, are skipped)."""
    with open(path) as handle:
        header, *rows = (line.rstrip("\n").split("\t") for line in handle if line.strip())
    col = {name: i for i, name in enumerate(header)}
    pos, ref, x, offset, cref = [], [], [], [], []
    for row in rows:
        match = HGVS.match(row[col["transcript_variant"]])
        if not match:
            continue
        minus, number, sign, distance, tref, _ = match.groups()
        pos.append(int(row[col["pos"]]))
        ref.append(row[col["ref"]])
        x.append(1 - int(number) if minus else int(number))
        offset.append(0 if sign is None else int(distance) * (1 if sign == "+" else -1))
        cref.append(tref)
    return {"pos": np.array(pos), "ref": np.array(ref), "x": np.array(x), "offset": np.array(offset),
            "cref": np.array(cref)}


def transcript_strand(variants: dict[str, np.ndarray]) -> int:
    """+1 or -1: whether c. REF alleles are the genomic REF or its complement (all must agree)."""
    same = variants["ref"] == variants["cref"]
    flipped = variants["ref"] == np.array([r.translate(COMPLEMENT) for r in variants["cref"]])
    if same.all():
        return 1
    if flipped.all():
        return -1
    raise SystemExit(f"c. REF alleles match neither strand consistently ({same.sum()} same, {flipped.sum()} complement)")


def exon_model(variants: dict[str, np.ndarray], strand: int) -> list[dict]:
    """Exons (genomic 1-based inclusive start/end, c. range, whether each end is marked), in
    transcript order, from the per-exon constant K."""
    pos, x, off = variants["pos"], variants["x"], variants["offset"]
    anchor = pos - strand * off          # the exon base an intronic variant hangs off
    key = anchor - strand * x            # constant along one exon
    exons = []
    for k in np.unique(key):
        sel = key == k
        firsts, lasts = np.unique(x[sel & (off < 0)]), np.unique(x[sel & (off > 0)])
        if len(firsts) > 1 or len(lasts) > 1:
            raise SystemExit(f"inconsistent exon ends for K={k}: firsts {firsts}, lasts {lasts}")
        lo_x = firsts[0] if len(firsts) else x[sel].min()
        hi_x = lasts[0] if len(lasts) else x[sel].max()
        ends = sorted([int(k + strand * lo_x), int(k + strand * hi_x)])
        exons.append({"k": int(k), "start": ends[0], "end": ends[1], "c_first": int(lo_x), "c_last": int(hi_x),
                      "first_marked": bool(len(firsts)), "last_marked": bool(len(lasts)),
                      "variants": int(sel.sum())})
    return sorted(exons, key=lambda e: e["c_first"])


def label_locus(variants: dict[str, np.ndarray], strand: int, lo: int, hi: int
                ) -> tuple[np.ndarray, list[dict], int]:
    """Per-base labels over [lo, hi) (0-based): EXON, INTRON or UNANNOTATED; the exons; the number
    of whole introns."""
    exons = exon_model(variants, strand)
    starts, ends = [], []  # intron intervals, 0-based half-open
    for a, b in pairwise(exons):  # whole introns between exons adjacent in c.
        if a["last_marked"] and b["first_marked"] and b["c_first"] == a["c_last"] + 1:
            left, right = sorted([(a["start"], a["end"]), (b["start"], b["end"])])
            starts.append(left[1])       # 1-based end of one exon = 0-based start of the gap
            ends.append(right[0] - 1)
    whole = len(starts)
    # Partial introns: the bases from each intronic variant's exon base to the variant.
    pos, off = variants["pos"], variants["offset"]
    intronic = off != 0
    pos, anchor = pos[intronic], (pos - strand * off)[intronic]
    starts += np.where(pos > anchor, anchor, pos - 1).tolist()
    ends += np.where(pos > anchor, pos, anchor - 1).tolist()
    intron_mask = _cover(hi - lo, np.array(starts) - lo, np.array(ends) - lo)
    exon_mask = _cover(hi - lo, np.array([e["start"] - 1 for e in exons]) - lo, np.array([e["end"] for e in exons]) - lo)
    if (intron_mask & exon_mask).any():
        raise SystemExit("exon and intron labels overlap: the c. notation does not fit one transcript")
    labels = np.zeros(hi - lo, np.int8)
    labels[intron_mask] = INTRON
    labels[exon_mask] = EXON
    return labels, exons, whole


def splice_sites(exons: list[dict], ids: np.ndarray, lo: int, strand: int) -> dict[str, list[str]]:
    """Transcript-strand dinucleotides after each marked exon end (donor, GT expected) and before
    each marked exon start (acceptor, AG expected)."""
    def read(positions: list[int]) -> str:  # 1-based genomic positions, in transcript order
        bases = "".join("ACGTN"[i] for i in ids[np.array(positions) - 1 - lo])
        return bases if strand > 0 else bases.translate(COMPLEMENT)

    donors, acceptors = [], []
    for e in exons:
        if e["last_marked"]:
            last = e["k"] + strand * e["c_last"]
            donors.append(read([last + strand, last + 2 * strand]))
        if e["first_marked"]:
            first = e["k"] + strand * e["c_first"]
            acceptors.append(read([first - 2 * strand, first - strand]))
    return {"donor": donors, "acceptor": acceptors}


def _cover(n: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Bases of [0, n) inside any [start, end) (clipped); intervals may overlap."""
    delta = np.zeros(n + 1, np.int32)
    starts, ends = np.clip(starts, 0, n).astype(np.int64), np.clip(ends, 0, n).astype(np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    return np.cumsum(delta[:-1]) > 0


# --- low-complexity sequence -----------------------------------------------------------------------

def periodic_runs(ids: np.ndarray, period: int, min_bases: int) -> np.ndarray:
    """Bases in stretches of at least `min_bases` ACGT bases where every base equals the one
    `period` before it."""
    n = len(ids)
    if n <= period:
        return np.zeros(n, bool)
    same = (ids[period:] == ids[:-period]) & (ids[period:] < 4)
    edges = np.flatnonzero(np.diff(np.r_[0, same.astype(np.int8), 0]))
    starts, ends = edges[0::2], edges[1::2] + period  # comparison i covers bases i .. i + period
    keep = ends - starts >= min_bases
    return _cover(n, starts[keep], ends[keep])


def low_complexity(ids: np.ndarray, homopolymer: int = 6, str_bases: int = 12, copies: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(homopolymer runs >= `homopolymer`, tandem repeats of period 2-6 with >= `copies` copies and
    >= `str_bases` bases that are not homopolymer bases)."""
    poly = periodic_runs(ids, 1, homopolymer)
    tandem = np.zeros(len(ids), bool)
    for period in range(2, 7):
        tandem |= periodic_runs(ids, period, max(str_bases, copies * period))
    return poly, tandem & ~poly


# --- tokens and statistics -------------------------------------------------------------------------

def read_tokens(path: Path, contig: str, lo: int, hi: int) -> np.ndarray:
    """Token lengths tiling [lo, hi) exactly, from a tokens BED (track/comment lines skipped)."""
    with open(path) as handle:
        rows = [line.split("\t", 3)[:3] for line in handle
                if line.strip() and not line.startswith(("track", "browser", "#"))]
    table = np.array(rows, dtype=object)
    table = table[table[:, 0] == contig]
    starts, ends = table[:, 1].astype(np.int64), table[:, 2].astype(np.int64)
    inside = (ends > lo) & (starts < hi)
    starts, ends = starts[inside], ends[inside]
    if len(starts) == 0 or starts[0] != lo or ends[-1] != hi or (starts[1:] != ends[:-1]).any():
        raise SystemExit(f"{path}: tokens do not tile {contig}:{lo}-{hi} exactly")
    return ends - starts


def class_stats(lengths: np.ndarray, mask: np.ndarray, gc: np.ndarray) -> dict:
    """Length statistics of the tokens whose centre base is in `mask`, and the base-weighted mean."""
    ends = np.cumsum(lengths)
    starts = ends - lengths
    inside = lengths[mask[starts + lengths // 2]]
    cum = np.r_[0, np.cumsum(mask)]
    covered = cum[ends] - cum[starts]
    per_base = np.repeat(lengths, lengths)[mask]
    n = len(inside)
    return {"bases": int(mask.sum()), "tokens": n, "straddling": int(((covered > 0) & (covered < lengths)).sum()),
            "mean": float(inside.mean()) if n else float("nan"),
            "median": float(np.median(inside)) if n else float("nan"),
            "frac_len1": float((inside == 1).mean()) if n else float("nan"),
            "frac_ge4": float((inside >= 4).mean()) if n else float("nan"),
            "frac_ge8": float((inside >= 8).mean()) if n else float("nan"),
            "base_weighted_mean": float(per_base.mean()) if len(per_base) else float("nan"),
            "gc": float(gc[mask].mean()) if mask.any() else float("nan"),
            "_lengths": inside, "_per_base": per_base}


def run_tokens(lengths: np.ndarray, mask: np.ndarray) -> dict:
    """For each run of `mask` (e.g. homopolymers): the tokens touching it per base of the run and
    whether one token spans the whole run."""
    token = np.repeat(np.arange(len(lengths)), lengths)
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    starts, ends = edges[0::2], edges[1::2]
    touching = token[ends - 1] - token[starts] + 1
    return {"runs": len(starts), "mean_run_bases": float((ends - starts).mean()) if len(starts) else float("nan"),
            "tokens_per_base": float(touching.sum() / max((ends - starts).sum(), 1)),
            "one_token": float((touching == 1).mean()) if len(starts) else float("nan")}


def mann_whitney(a: np.ndarray, b: np.ndarray) -> dict:
    """Two-sided Mann-Whitney U; auc = P(a > b) + P(a = b) / 2, with a rough 95% interval from U's
    variance under no difference and no ties (dependence between neighbouring tokens widens it)."""
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(a, b, alternative="two-sided")
    n1, n2 = len(a), len(b)
    auc = result.statistic / (n1 * n2)
    half = 1.96 * np.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    return {"n1": n1, "n2": n2, "U": float(result.statistic), "p": float(result.pvalue), "auc": float(auc),
            "auc_ci95": [float(auc - half), float(auc + half)]}


def shift_test(per_base: np.ndarray, a: np.ndarray, b: np.ndarray, shifts: int, seed: int) -> dict:
    """Observed mean(per_base[a]) - mean(per_base[b]) against the same with both masks rotated by
    random offsets (at least 1 kb); p two-sided, (1 + #|null| >= |obs|) / (1 + shifts)."""
    n = len(per_base)
    observed = per_base[a].mean() - per_base[b].mean()
    # Rotating the masks one way = rotating the values the other.
    offsets = np.random.default_rng(seed).integers(1000, n - 1000, shifts)
    doubled = np.r_[per_base, per_base]
    null = np.empty(shifts)
    ia, ib = np.flatnonzero(a), np.flatnonzero(b)
    for i, k in enumerate(offsets.tolist()):  # a loop over rotations, each vectorised over bases
        null[i] = doubled[ia + k].mean() - doubled[ib + k].mean()
    p = (1 + (np.abs(null) >= abs(observed)).sum()) / (1 + shifts)
    return {"observed": float(observed), "null_mean": float(null.mean()), "null_sd": float(null.std()),
            "null_q025": float(np.quantile(null, 0.025)), "null_q975": float(np.quantile(null, 0.975)),
            "shifts": shifts, "p": float(p)}


# --- main ------------------------------------------------------------------------------------------

def run_tracks(args, prefix: Path) -> Path:
    contig, lo, hi = LOCUS
    cmd = [sys.executable, "-m", "mergedna_cli", "tracks", "--fasta", str(Path(args.fasta).resolve()),
           "--region", f"{contig}:{lo + 1}-{hi}", "-o", str(prefix), "--threads", str(args.threads), "--quiet"]
    if args.model:  # the CLI runs in the repository: a relative directory must be resolved here
        cmd += ["--model", str(Path(args.model).resolve()) if Path(args.model).exists() else args.model]
    print("$ " + " ".join(cmd), flush=True)
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if run.returncode != 0:
        raise SystemExit(f"mergedna tracks exited {run.returncode}:\n{run.stderr[-2000:]}")
    return Path(f"{prefix}.tokens.bed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bed", default=None, help="an existing PREFIX.tokens.bed covering the locus (else run tracks)")
    parser.add_argument("--model", default=None, help="model directory for the tracks run (default: shipped)")
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA))
    parser.add_argument("--sge", default=str(DEFAULT_SGE), help="Findlay 2018 variants.tsv (HGVS c. column)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shifts", type=int, default=999, help="rotations in the circular-shift test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write all numbers to this JSON file")
    args = parser.parse_args()

    from mergedna_cli.io.reference import Reference

    contig, lo, hi = LOCUS
    tmp = None
    if args.bed:
        bed = Path(args.bed)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mergedna_token_annotation_")
        bed = run_tracks(args, Path(tmp.name) / "brca1")
    lengths = read_tokens(bed, contig, lo, hi)
    ids = Reference(args.fasta).fetch_ids(contig, lo, hi)
    gc = (ids == 1) | (ids == 2)

    variants = parse_sge(Path(args.sge))
    strand = transcript_strand(variants)
    labels, exons, whole_introns = label_locus(variants, strand, lo, hi)
    sites = splice_sites(exons, ids, lo, strand)
    poly, tandem = low_complexity(ids)
    repeat = poly | tandem
    classes = {
        "locus (all bases)": np.ones(hi - lo, bool),
        "exon": labels == EXON,
        "intron": labels == INTRON,
        "unannotated": labels == UNANNOTATED,
        "low-complexity (repeat)": repeat,
        "  homopolymer >= 6": poly,
        "  tandem repeat p2-6": tandem,
        "other (not repeat)": ~repeat,
        "exon, not repeat": (labels == EXON) & ~repeat,
        "intron, not repeat": (labels == INTRON) & ~repeat,
    }
    stats = {name: class_stats(lengths, mask, gc) for name, mask in classes.items()}

    marked = sum(e["first_marked"] and e["last_marked"] for e in exons)
    print(f"{contig}:{lo + 1:,}-{hi:,} ({hi - lo:,} bases), {len(lengths):,} tokens from {bed}")
    print(f"annotation: {len(variants['pos']):,} SGE c. variants, transcript strand {'+' if strand > 0 else '-'}; "
          f"{len(exons)} exons ({marked} with both ends marked), {whole_introns} whole introns "
          f"({int((labels == INTRON).sum()):,} intronic bases with partial ones); repeats: {int(poly.sum()):,} homopolymer + "
          f"{int(tandem.sum()):,} tandem-repeat bases")
    print(f"splice-site check: donors GT {sites['donor'].count('GT')}/{len(sites['donor'])}, "
          f"acceptors AG {sites['acceptor'].count('AG')}/{len(sites['acceptor'])}")
    print("tokens: those whose centre base is in the class; strad.: tokens partly in it; "
          "base-wt: mean length of the token covering each base\n")
    print(f"  {'class':<26}{'bases':>8}{'tokens':>8}{'strad.':>7}{'mean':>7}{'median':>7}{'len1':>7}"
          f"{'>=4':>7}{'>=8':>7}{'base-wt':>8}{'GC':>6}")
    for name, s in stats.items():
        print(f"  {name:<26}{s['bases']:>8,}{s['tokens']:>8,}{s['straddling']:>7,}{s['mean']:>7.3f}"
              f"{s['median']:>7.1f}{s['frac_len1']:>7.3f}{s['frac_ge4']:>7.3f}{s['frac_ge8']:>7.3f}"
              f"{s['base_weighted_mean']:>8.3f}{s['gc']:>6.3f}")

    runs = run_tokens(lengths, poly)
    print(f"\nhomopolymer runs >= 6: {runs['runs']:,} runs (mean {runs['mean_run_bases']:.1f} bases), "
          f"{runs['tokens_per_base']:.3f} tokens per base (locus {len(lengths) / (hi - lo):.3f}); one token spans "
          f"the whole run in {100 * runs['one_token']:.1f}% of runs")
    tests = {}
    print("\nMann-Whitney U (two-sided; auc = P(first longer) + ties/2; tokens overlap-free but not independent):")
    for a, b in [("exon", "intron"), ("low-complexity (repeat)", "other (not repeat)"),
                 ("exon, not repeat", "intron, not repeat")]:
        for unit, field in (("tokens", "_lengths"), ("per base", "_per_base")):
            t = mann_whitney(stats[a][field], stats[b][field])
            tests[f"{a} vs {b} ({unit})"] = t
            p_text = f"p {t['p']:.2g}" if t["p"] > 0 else "p < 1e-300"  # scipy underflows to 0
            print(f"  {a} vs {b}, {unit}: n {t['n1']:,} vs {t['n2']:,}, U {t['U']:.4g}, auc {t['auc']:.3f} "
                  f"[{t['auc_ci95'][0]:.3f}, {t['auc_ci95'][1]:.3f}], {p_text}")
    print(f"\ncircular-shift test ({args.shifts} rotations of the labels, >= 1 kb), base-weighted mean difference:")
    for a, b in [("exon", "intron"), ("exon, not repeat", "intron, not repeat"),
                 ("low-complexity (repeat)", "other (not repeat)")]:
        t = shift_test(np.repeat(lengths, lengths).astype(np.float64), classes[a], classes[b], args.shifts, args.seed)
        tests[f"{a} - {b} (circular shift)"] = t
        print(f"  {a} - {b}: observed {t['observed']:+.4f}, null {t['null_mean']:+.4f} "
              f"[{t['null_q025']:+.4f}, {t['null_q975']:+.4f}], p {t['p']:.3g}")

    if args.json:
        public = {name: {k: v for k, v in s.items() if not k.startswith("_")} for name, s in stats.items()}
        Path(args.json).write_text(json.dumps(
            {"locus": [contig, lo, hi], "tokens_bed": str(bed), "strand": strand, "exons": exons,
             "whole_introns": whole_introns, "splice_sites": sites, "homopolymer_runs": runs,
             "classes": public, "tests": tests}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
