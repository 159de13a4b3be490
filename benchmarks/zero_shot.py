"""Zero-shot BRCA1 variant-effect benchmark: MergeDNA vs the bidirectional k-mer baseline.

    python benchmarks/zero_shot.py --model models/mergedna-small --threads 2 --json out.json

Sets (GRCh38 chr17, SNVs only, INFO LABEL=1 is the positive class):
- sge:     Findlay et al. 2018 BRCA1 saturation genome editing, shared part (2,725 SNVs; LABEL=1 = LOF)
- clinvar: ClinVar 2018-07 BRCA1 SNVs, shared part (284 SNVs; LABEL=1 = pathogenic/likely pathogenic)

MergeDNA score: what `mergedna score --format tsv` writes, computed with `run_score` (SNV: the
base masked, log p(alt) - log p(ref), averaged over both strands with --strand both; shared
passes with --mask-spacing S, one position per pass with --mask-spacing 0). The TSV carries 4
decimals, as users get it.

k-mer score: the same quantity, log p(alt) - log p(ref) at the variant position, from the
bidirectional k-mer context model (it never reads the centre base). It is fitted on exactly the
shipped model's training data: the sources, per-file weights and excluded BED regions recorded in
`<model>/training.json`, resolved by `training_sources` of benchmarks/pretrain_eval.py (without
that file, its fallback: every *.fa.gz of the pre-training corpus folders except the held-out
human chr20 file, human_* weighted 10, and the recipe's BRCA1 +-50 kb exclusion
`models/recipes/exclude_brca1_locus.bed`). A check reports how many variant sites lie in the
training records without being excluded (should be 0). k and the per-order
alphas are chosen on the last 10% of every training record, then it is refitted on all the data
(as in benchmarks/pretrain_eval.py). The k-mer counts are taken on both strands, so the model is
strand-symmetric; with --strand both the score is still averaged over the forward and
reverse-complement look-ups (identical up to rounding; the largest difference is printed).

AUROC: of -score predicting LABEL=1 (lower score = more damaging), rank-based with ties
averaged; 95% intervals from a paired bootstrap over variants (--bootstrap). Spearman: between
the two scores (and, for the SGE set, of each score with the SGE function score).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from mergedna_cli.alphabet import N_BASES, encode, reverse_complement  # noqa: E402
from mergedna_cli.io.vcf import VcfReader  # noqa: E402
from mergedna_cli.training.corpus import CorpusSource  # noqa: E402
from mergedna_cli.training.kmer_baseline import DEFAULT_ALPHAS  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
REFERENCE = SHARED / "grch38_chr17_brca1_region" / "GRCh38_chr17_brca1_region.fa.gz"
SETS = {
    "sge": (SHARED / "brca1_sge_findlay2018" / "variants.vcf.gz", "LOF (Findlay 2018 SGE)"),
    "clinvar": (SHARED / "clinvar_brca1_2018" / "variants.vcf.gz", "pathogenic (ClinVar 2018)"),
}
HELDOUT = SHARED / "pretrain_corpus" / "human_GRCh37_chr20_1Mb_vg1kgp.fa.gz"
PUBLISHED = [
    "published zero-shot AUROC on this SGE set: Evo 2 1B/7B notebooks ~0.73-0.74, largest Evo 2 "
    "~0.88 (NOT measured here: other models, reported on the full Findlay 2018 table, of which "
    "the shared set is a 70% subset)",
]


# ---------------------------------------------------------------------------------------------
# metrics (numpy only)

def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get the average of their ranks (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    edges = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])  # tie-group boundaries
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((edges[:-1] + 1 + edges[1:]) / 2.0, np.diff(edges))
    return ranks


def auroc(predictor: np.ndarray, labels: np.ndarray) -> float:
    """P(predictor of a random positive > that of a random negative), ties counting 1/2."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(predictor)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN pairs dropped."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = rankdata(a[ok]), rankdata(b[ok])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def bootstrap_auroc(scores: dict[str, np.ndarray], labels: np.ndarray, n: int, seed: int = 0
                    ) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of AUROC(-score) per name, and of the paired difference of the
    first two names, from `n` resamples of the variants (the same resample for every score)."""
    if n <= 0:
        return {}
    rng = np.random.default_rng(seed)
    names = list(scores)
    draws = {k: [] for k in names}
    for _ in range(n):
        idx = rng.integers(0, len(labels), len(labels))
        for k in names:
            draws[k].append(auroc(-scores[k][idx], labels[idx]))
    out = {k: tuple(np.nanpercentile(v, [2.5, 97.5]).tolist()) for k, v in draws.items()}
    if len(names) >= 2:
        diff = np.asarray(draws[names[0]]) - np.asarray(draws[names[1]])
        out[f"{names[0]} - {names[1]}"] = tuple(np.nanpercentile(diff, [2.5, 97.5]).tolist())
    return out


def json_safe(obj):
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


# ---------------------------------------------------------------------------------------------
# variant sets

def read_set(path: Path, limit: int | None):
    """(reader meta lines, column line, variants, labels, INFO dicts) of the first `limit` records."""
    reader = VcfReader(str(path))
    variants, labels, infos = [], [], []
    for v in reader:
        if limit is not None and len(variants) >= limit:
            break
        info = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in v.fields[7].split(";"))
        if "LABEL" not in info:
            raise SystemExit(f"error: {path}: record {v.index + 1} has no INFO LABEL")
        if len(v.alts) != 1:
            raise SystemExit(f"error: {path}: record {v.index + 1} is multi-allelic; expected one ALT")
        variants.append(v)
        labels.append(int(info["LABEL"]))
        infos.append(info)
    return reader.meta_lines, reader.column_line, variants, np.asarray(labels), infos


def write_vcf(path: Path, meta: list[str], column_line: str, variants) -> None:
    with open(path, "w") as out:
        out.write("\n".join(meta + [column_line]) + "\n")
        for v in variants:
            out.write("\t".join(v.fields) + "\n")


# ---------------------------------------------------------------------------------------------
# MergeDNA scores through the CLI's run_score

def model_scores(backend, embedding_backend, reference, vcf: Path, variants, args, model_dir: Path, tmp: Path):
    from mergedna_cli.model.serialization import weights_sha256
    from mergedna_cli.pipelines.score import ScoreOptions, run_score

    options = ScoreOptions(strand=args.strand, mask_spacing=args.mask_spacing or None,
                           batch_size=args.batch_size)
    out = tmp / (vcf.name + ".scores.tsv")
    t0 = time.perf_counter()
    summary = run_score(backend, reference, str(vcf), str(out), options, model_dir.name,
                        weights_sha256(model_dir), table_format="tsv", argv=[],
                        embedding_backend=embedding_backend)
    seconds = time.perf_counter() - t0
    with open(out) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if len(rows) != len(variants):
        raise SystemExit(f"error: run_score wrote {len(rows)} rows for {len(variants)} variants")
    scores = np.full(len(rows), np.nan)
    for i, (row, v) in enumerate(zip(rows, variants)):
        expected = (v.chrom, v.start + 1, v.ref, v.alts[0])
        if (row["chrom"], int(row["pos"]), row["ref"], row["alt"]) != expected:
            raise SystemExit(f"error: run_score row {i + 1} is {row}, "
                             f"expected record {v.fields[:5]}")
        if row["status"] == "ok" and row["score"] != ".":
            scores[i] = float(row["score"])
    return scores, dict(summary.alleles), seconds


# ---------------------------------------------------------------------------------------------
# the k-mer baseline

def parse_ks(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def kmer_training_sources(model_dir: Path, args) -> tuple[list[CorpusSource], list[str], str]:
    """(sources, exclude BEDs, where they came from): --kmer-train overrides, else the model's
    training.json, else the recipe's files, weights and BRCA1 exclusion."""
    if args.kmer_train:
        sources = []
        for spec in args.kmer_train:
            path, _, weight = spec.partition("=")
            sources.append(CorpusSource(path, float(weight) if weight else 1.0))
        return sources, list(args.kmer_exclude or []), "--kmer-train (override)"
    from pretrain_eval import training_sources  # the same resolution as the held-out benchmark
    sources, beds, origin = training_sources(model_dir, HELDOUT)
    return sources, beds + list(args.kmer_exclude or []), origin


def fit_kmer(model_dir: Path, args):

    sources, beds, origin = kmer_training_sources(model_dir, args)
    print(f"k-mer training data: {origin}")
    if not beds:
        print("WARNING: no excluded regions: the k-mer training data may contain the BRCA1 variant sites")
    for s in sources:
        print(f"  weight {s.weight:g}  {s.path}")
    for b in beds:
        print(f"  excluded (set to N): {b}")
    from pretrain_eval import fit_kmer_on_training_data
    kmer, table, corpus, t_corpus, t_fit = fit_kmer_on_training_data(
        sources, beds, args.cache_dir, parse_ks(args.ks), [float(a) for a in args.alphas.split(",")],
        args.val_fraction)
    n_train = int(sum(r.length for r in corpus.records))
    print(f"  k selection (validation = last {args.val_fraction:.0%} of every record, both strands):")
    print(f"    {'k':>2}  {'alpha_k':>7}  {'val acc':>8}  {'val CE':>7}")
    for r in table:
        mark = "  <- chosen" if r.k == kmer.k else ""
        print(f"    {r.k:>2}  {r.alpha:>7g}  {r.val_acc:>8.4f}  {r.val_ce:>7.4f}{mark}")
    print(f"  chosen k={kmer.k}, alphas {', '.join(f'{a:g}' for a in kmer.alphas)}; "
          f"{n_train:,} training bases; corpus {t_corpus:.1f} s, selection + refit {t_fit:.1f} s")
    info = {"k": kmer.k, "alphas": list(kmer.alphas), "training_data": origin,
            "sources": [{"path": s.path, "weight": s.weight} for s in sources], "exclude_bed": beds,
            "training_bases": n_train,
            "selection": [{"k": r.k, "alpha": r.alpha, "val_acc": float(r.val_acc),
                           "val_ce": float(r.val_ce), "val_bases": int(r.val_bases)} for r in table],
            "seconds": {"corpus": round(t_corpus, 1), "select_and_fit": round(t_fit, 1)}}
    return kmer, corpus, info


def leaked_sites(corpus, variants) -> tuple[int, int]:
    """(variant sites inside a training record named 'contig:start-end' (1-based start, as the
    shared chr17 record), how many of those are not N there, i.e. seen in training)."""
    inside = seen = 0
    for r in corpus.records:
        name = r.name
        if ":" not in name or "-" not in name.split(":", 1)[1]:
            continue
        contig, span = name.split(":", 1)
        try:
            first = int(span.split("-")[0].replace(",", ""))
        except ValueError:
            continue
        for v in variants:
            if v.chrom != contig:
                continue
            idx = v.start + 1 - first
            if 0 <= idx < r.length:
                inside += 1
                seen += int(corpus.ids[r.offset + idx] < N_BASES)
    return inside, seen


def kmer_scores(kmer, reference, variants, both_strands: bool) -> tuple[np.ndarray, float]:
    """log p(alt) - log p(ref) per SNV (NaN where REF does not match or a base is not ACGT), and
    the largest |forward - reverse| difference of the per-strand scores."""
    scores = np.full(len(variants), np.nan)
    max_strand_diff = 0.0
    by_contig: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        contig = reference.resolve(v.chrom)
        ref, alt = v.ref.upper(), v.alts[0].upper()
        if contig is None or len(ref) != 1 or len(alt) != 1 or ref not in "ACGT" or alt not in "ACGT":
            continue
        if reference.fetch_text(contig, v.start, v.start + 1) != ref:
            continue
        by_contig.setdefault(contig, []).append(i)
    for contig, idx in by_contig.items():
        pos = np.array([variants[i].start for i in idx])
        ref = np.array([int(encode(variants[i].ref.upper())[0]) for i in idx])
        alt = np.array([int(encode(variants[i].alts[0].upper())[0]) for i in idx])
        lo, hi = int(pos.min()) - kmer.k, int(pos.max()) + kmer.k + 1
        span = reference.fetch_ids(contig, lo, hi)
        rows = np.arange(len(idx))
        lp = kmer.log_probs(span, pos - lo)
        forward = lp[rows, alt] - lp[rows, ref]
        # reverse strand: the complement base at the mirrored position, columns A<->T, C<->G
        lp_r = kmer.log_probs(reverse_complement(span), len(span) - 1 - (pos - lo))[:, [3, 2, 1, 0]]
        reverse = lp_r[rows, alt] - lp_r[rows, ref]
        max_strand_diff = max(max_strand_diff, float(np.abs(forward - reverse).max()))
        scores[idx] = 0.5 * (forward + reverse) if both_strands else forward
    return scores, max_strand_diff


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "mergedna-small"))
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mask-spacing", type=int, default=0,
                    help="as `mergedna score --mask-spacing` (default 0, the CLI default; 0 = one "
                         "position per pass)")
    ap.add_argument("--strand", choices=["both", "forward"], default="both")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime CPU threads")
    ap.add_argument("--sets", default="sge,clinvar", help="comma-separated: sge, clinvar")
    ap.add_argument("--fasta", default=str(REFERENCE), help="GRCh38 reference holding chr17")
    ap.add_argument("--limit", type=int, default=None, help="only the first N variants of each set")
    ap.add_argument("--skip-model", action="store_true", help="k-mer baseline only")
    ap.add_argument("--skip-kmer", action="store_true", help="MergeDNA only")
    ap.add_argument("--ks", default="0-6", help="k values to select from, e.g. '0-6' or '2,4'")
    ap.add_argument("--alphas", default=",".join(str(a) for a in DEFAULT_ALPHAS))
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--kmer-train", action="append", metavar="FASTA[=WEIGHT]",
                    help="override the k-mer training files (repeatable; for quick checks)")
    ap.add_argument("--kmer-exclude", action="append", metavar="BED",
                    help="extra BED regions to set to N in the k-mer training data (repeatable)")
    ap.add_argument("--cache-dir", default=str(REPO / ".cache" / "corpus"))
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: none)")
    ap.add_argument("--scores-tsv", help="write every variant's label and scores to this TSV")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    if args.skip_model and args.skip_kmer:
        ap.error("--skip-model and --skip-kmer leave nothing to score")
    set_names = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in set_names:
        if s not in SETS:
            ap.error(f"unknown set '{s}'; choose from {', '.join(SETS)}")

    from mergedna_cli.io.reference import Reference
    t_start = time.perf_counter()
    model_dir = Path(args.model)
    reference = Reference(args.fasta)
    results: dict = {"model": str(model_dir), "backend": args.backend, "strand": args.strand,
                     "mask_spacing": args.mask_spacing or None, "batch_size": args.batch_size,
                     "threads": args.threads, "limit": args.limit, "sets": {}}

    backend = embedding_backend = None
    if not args.skip_model:
        from mergedna_cli.pipelines.backend_factory import make_backend
        t0 = time.perf_counter()
        backend = make_backend(str(model_dir), args.backend, args.device, args.threads,
                               log=lambda m: print(m), part="masked")
        embedding_backend = make_backend(str(model_dir), args.backend, args.device, args.threads,
                                         log=lambda m: print(m), part="embedding")
        results["model_load_seconds"] = round(time.perf_counter() - t0, 2)
        cfg = backend.config
        print(f"model: {model_dir} ({cfg.name} preset, context {cfg.context}), backend {args.backend}, "
              f"strand {args.strand}, mask spacing {args.mask_spacing or 'none (one position per pass)'}, "
              f"threads {args.threads}; loaded in {results['model_load_seconds']} s")

    kmer = corpus = None
    if not args.skip_kmer:
        kmer, corpus, results["kmer"] = fit_kmer(model_dir, args)

    table, score_rows = [], []
    with tempfile.TemporaryDirectory(prefix="zero_shot_") as tmp_name:
        tmp = Path(tmp_name)
        for name in set_names:
            path, positive = SETS[name]
            meta, column_line, variants, labels, infos = read_set(path, args.limit)
            vcf = path
            if args.limit is not None:
                vcf = tmp / f"{name}.vcf"
                write_vcf(vcf, meta, column_line, variants)
            entry: dict = {"vcf": str(path), "positive": positive, "n": len(variants),
                           "n_positive": int(labels.sum())}
            scores: dict[str, np.ndarray] = {}
            if backend is not None:
                s, statuses, secs = model_scores(backend, embedding_backend, reference, vcf, variants, args,
                                                 model_dir, tmp)
                scores["MergeDNA"] = s
                entry["mergedna_statuses"] = statuses
                entry["mergedna_seconds"] = round(secs, 2)
                entry["mergedna_variants_per_s"] = round(len(variants) / secs, 1)
            if kmer is not None:
                s, strand_diff = kmer_scores(kmer, reference, variants, args.strand == "both")
                scores["k-mer"] = s
                entry["kmer_max_strand_diff"] = strand_diff
                inside, seen = leaked_sites(corpus, variants)
                entry["training_sites_inside_records"] = inside
                entry["training_sites_not_excluded"] = seen
            ok = np.all([np.isfinite(v) for v in scores.values()], axis=0)
            entry["n_scored"] = int(ok.sum())
            lab = labels[ok]
            entry["n_scored_positive"] = int(lab.sum())
            for key, s in scores.items():
                entry[f"auroc_{key}"] = auroc(-s[ok], lab)
            if len(scores) == 2:
                entry["spearman_mergedna_kmer"] = spearman(scores["MergeDNA"][ok], scores["k-mer"][ok])
            if name == "sge":
                fn = np.array([float(i.get("FUNCTION_SCORE_MEAN", "nan")) for i in infos])
                for key, s in scores.items():
                    entry[f"spearman_{key}_function_score"] = spearman(s[ok], fn[ok])
            entry["bootstrap_95"] = {k: list(v) for k, v in bootstrap_auroc(
                {k: v[ok] for k, v in scores.items()}, lab, args.bootstrap).items()}
            results["sets"][name] = entry
            table.append((name, entry))
            for i, v in enumerate(variants):
                score_rows.append([name, v.fields[2], v.chrom, str(v.start + 1), v.ref, v.alts[0],
                                   str(labels[i])] + [f"{scores[k][i]:.6g}" if k in scores else ""
                                                      for k in ("MergeDNA", "k-mer")])

    # ---- report
    print()
    if args.limit is not None:
        print(f"NOTE: --limit {args.limit}: only the first {args.limit} variants of each set "
              f"(a check, not the benchmark)")
    head = (f"{'set':<8}{'n':>6}{'n pos':>7}{'scored':>8}{'AUROC MergeDNA':>16}{'AUROC k-mer':>13}"
            f"{'Spearman(M,k)':>15}")
    print(head)
    fmt = lambda x: "-" if x is None or not np.isfinite(x) else f"{x:.4f}"  # noqa: E731
    for name, e in table:
        print(f"{name:<8}{e['n']:>6}{e['n_positive']:>7}{e['n_scored']:>8}"
              f"{fmt(e.get('auroc_MergeDNA')):>16}{fmt(e.get('auroc_k-mer')):>13}"
              f"{fmt(e.get('spearman_mergedna_kmer')):>15}")
    print()
    for name, e in table:
        parts = [f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in e["bootstrap_95"].items()]
        if parts:
            print(f"{name}: AUROC 95% bootstrap ({args.bootstrap} resamples): " + "; ".join(parts))
        rhos = [f"{k} {fmt(e[f'spearman_{k}_function_score'])}" for k in ("MergeDNA", "k-mer")
                if f"spearman_{k}_function_score" in e]
        if rhos:
            print(f"{name}: Spearman of score with the SGE function score: " + ", ".join(rhos))
        if "mergedna_seconds" in e:
            print(f"{name}: MergeDNA scored {e['n']} variants in {e['mergedna_seconds']} s "
                  f"({e['mergedna_variants_per_s']} variants/s); statuses {e['mergedna_statuses']}")
        if "kmer_max_strand_diff" in e:
            used = "both averaged" if args.strand == "both" else "forward used"
            print(f"{name}: k-mer max |forward - reverse| score difference "
                  f"{e['kmer_max_strand_diff']:.2e} ({used}); "
                  f"variant sites in training records {e['training_sites_inside_records']}, "
                  f"not excluded (seen in training) {e['training_sites_not_excluded']}")
            if e["training_sites_not_excluded"]:
                print(f"WARNING: {e['training_sites_not_excluded']} {name} variant sites are in the k-mer "
                      f"training data (not excluded)")
    print()
    for line in PUBLISHED:
        print(line)
    wall = time.perf_counter() - t_start
    results["wall_seconds"] = round(wall, 1)
    print(f"wall time {wall:.1f} s")
    if args.scores_tsv:
        with open(args.scores_tsv, "w") as out:
            out.write("set\tid\tchrom\tpos\tref\talt\tlabel\tmergedna\tkmer\n")
            for row in score_rows:
                out.write("\t".join(row) + "\n")
        print(f"wrote {args.scores_tsv}")
    results["published_reference_not_measured"] = PUBLISHED
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(json_safe(results), indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return results


if __name__ == "__main__":
    main()
