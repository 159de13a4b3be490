"""Model-quality harness: does a MergeDNA model directory know any biology?

    python benchmarks/zero_shot.py --model models/mergedna-small --threads 2 --json out.json
    python benchmarks/zero_shot.py --model DIR --quick --json out.json     # seconds, a smoke test

For one model directory it reports, all from the same scores users get:

- BRCA1 variant effects, scored exactly as `mergedna score` scores SNVs (`run_score`: the base
  masked, log p(alt) - log p(ref), mean of both strands, one position per masked pass; the TSV
  carries 4 decimals, as users get it). Sets (GRCh38 chr17, SNVs, INFO LABEL=1 positive):
  sge = Findlay et al. 2018 saturation genome editing, shared part (2,725 SNVs, LABEL=1 = LOF);
  clinvar = ClinVar 2018-07 BRCA1 SNVs, shared part (284 SNVs, LABEL=1 = pathogenic).
  For each set: AUROC of -score for LABEL=1 (lower score = more damaging) with a 95% bootstrap
  interval; on sge also the AUROC within each consequence class (INFO CONSEQUENCE), and two
  grammar contrasts that need no assay labels: P(-score of a nonsense SNV > that of a synonymous
  one) and the same for canonical splice vs intronic, each with a bootstrap interval.
- held-out human chr20 masked-base accuracy / cross-entropy, forward strand and both strands
  (`masked_base_eval` at benchmarks/pretrain_eval.py's protocol: every 32nd base at least 16 from
  a window edge, --heldout-phases offsets, all 1,953 windows of 512 unless --heldout-windows).
- optionally, with --calibration TABLE (benchmarks/calibration.py), every metric again for the
  calibrated score, score - E[score | 5-mer context, alt].
- optionally (--kmer), the bidirectional k-mer baseline scored the same way, fitted on exactly
  the model's training data: the sources, weights and excluded BED regions of
  `<model>/training.json`, resolved by `training_sources` of benchmarks/pretrain_eval.py (its
  fallback without that file: the corpus folders minus held-out chr20, human_* weight 10, and the
  recipe's BRCA1 +-50 kb exclusion). k and the per-order alphas are chosen on the last 10% of every
  record, then refitted on all of it. A check reports variant sites seen in its training data.

--json writes everything, with the model's name, parameter count, bases seen and hardware (from
`<model>/training.json` when present), the weights' sha256 and every variant's score, so
benchmarks/model_ladder.py and benchmarks/calibration.py reuse a run instead of rescoring.

AUROC is rank-based with ties averaged; intervals are 95% percentile intervals over --bootstrap
resamples of the variants (seeded).
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
from kmer_baseline import DEFAULT_ALPHAS  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
REFERENCE = SHARED / "grch38_chr17_brca1_region" / "GRCh38_chr17_brca1_region.fa.gz"
SETS = {
    "sge": (SHARED / "brca1_sge_findlay2018" / "variants.vcf.gz", "LOF (Findlay 2018 SGE)"),
    "clinvar": (SHARED / "clinvar_brca1_2018" / "variants.vcf.gz", "pathogenic (ClinVar 2018)"),
}
HELDOUT = SHARED / "pretrain_corpus" / "human_GRCh37_chr20_1Mb_vg1kgp.fa.gz"
# (key, class ranked first, class ranked second): AUROC that -score puts the first above the second
CONTRASTS = [("nonsense_vs_synonymous", "Nonsense", "Synonymous"),
             ("canonical_splice_vs_intronic", "Canonical splice", "Intronic")]
HARNESS_VERSION = 1
QUICK = {"limit": 200, "bootstrap": 100, "heldout_windows": 8}
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


def write_json(path: str, obj) -> None:
    """Strict JSON (json_safe) at `path`, its folder created."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(json_safe(obj), indent=1) + "\n")
    print(f"wrote {path}")


def json_safe(obj):
    """NaN/inf -> None, numpy scalars and arrays -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj



def bootstrap_interval(statistic, n_items: int, n_boot: int, seed: int = 0) -> list[float] | None:
    """95% percentile interval of statistic(indices) over `n_boot` resamples of range(n_items);
    None without resamples or when every resample is undefined (NaN)."""
    if n_boot <= 0 or n_items == 0:
        return None
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n_items, n_items)) for _ in range(n_boot)])
    if not np.isfinite(draws).any():
        return None
    return np.nanpercentile(draws, [2.5, 97.5]).tolist()


def auroc_ci(predictor: np.ndarray, labels: np.ndarray, n_boot: int, seed: int = 0) -> dict:
    """AUROC of `predictor` for `labels` (NaN predictors dropped), its 95% bootstrap interval and
    the counts it rests on."""
    predictor = np.asarray(predictor, np.float64)
    labels = np.asarray(labels).astype(bool)
    ok = np.isfinite(predictor)
    p, y = predictor[ok], labels[ok]
    result = {"auroc": auroc(p, y), "ci95": None, "n": int(len(p)), "n_positive": int(y.sum())}
    if np.isfinite(result["auroc"]):
        result["ci95"] = bootstrap_interval(lambda i: auroc(p[i], y[i]), len(p), n_boot, seed)
    return result


def paired_difference_ci(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray, n_boot: int,
                         seed: int = 0) -> dict:
    """AUROC(pred_a) - AUROC(pred_b) on the same items, with a paired bootstrap interval."""
    a, b = np.asarray(pred_a, np.float64), np.asarray(pred_b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b, y = a[ok], b[ok], np.asarray(labels).astype(bool)[ok]
    diff = lambda i: auroc(a[i], y[i]) - auroc(b[i], y[i])  # noqa: E731
    return {"difference": diff(np.arange(len(y))),
            "ci95": bootstrap_interval(diff, len(y), n_boot, seed), "n": int(len(y))}


def class_aurocs(predictor: np.ndarray, labels: np.ndarray, classes: np.ndarray, n_boot: int,
                 seed: int = 0) -> dict[str, dict]:
    """auroc_ci within each class (sorted by name); AUROC is None where a class lacks positives
    or negatives."""
    classes = np.asarray(classes)
    return {str(c): auroc_ci(np.asarray(predictor)[classes == c], np.asarray(labels)[classes == c],
                             n_boot, seed)
            for c in sorted(set(classes.tolist()))}


def contrast_auroc(predictor: np.ndarray, classes: np.ndarray, first: str, second: str, n_boot: int,
                   seed: int = 0) -> dict:
    """P(predictor of a `first`-class item > that of a `second`-class item), ties 1/2, with its
    bootstrap interval; items of other classes are left out."""
    classes = np.asarray(classes)
    keep = (classes == first) | (classes == second)
    result = auroc_ci(np.asarray(predictor)[keep], classes[keep] == first, n_boot, seed)
    result["first"], result["second"] = first, second
    return result


def set_metrics(scores: np.ndarray, labels: np.ndarray, classes: np.ndarray | None, n_boot: int,
                seed: int = 0) -> dict:
    """Every quality metric of one variant set for one score (lower = more damaging): overall
    AUROC, and with consequence classes the per-class AUROCs and the grammar contrasts."""
    predictor = -np.asarray(scores, np.float64)
    out: dict = {"auroc": auroc_ci(predictor, labels, n_boot, seed)}
    if classes is not None:
        out["by_consequence"] = class_aurocs(predictor, labels, classes, n_boot, seed)
        out["contrasts"] = {key: contrast_auroc(predictor, classes, first, second, n_boot, seed)
                            for key, first, second in CONTRASTS}
    return out

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



def consequences(infos: list[dict]) -> np.ndarray | None:
    """Consequence class per variant from INFO CONSEQUENCE, spelled as in variants.tsv
    ('Canonical_splice' -> 'Canonical splice'); None for a set without that key."""
    if not infos or "CONSEQUENCE" not in infos[0]:
        return None
    return np.array([info.get("CONSEQUENCE", "").replace("_", " ") for info in infos])

# ---------------------------------------------------------------------------------------------
# MergeDNA scores through the CLI's run_score

def model_scores(backend, embedding_backend, reference, vcf: Path, variants, args, model_dir: Path, tmp: Path):
    from mergedna_cli.model.files import weights_sha256
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
# the model directory and its held-out quality

def parameter_count(model_dir: Path) -> int:
    """Numbers stored in the weights (read from the files' headers, no model built; sharded too)."""
    from safetensors import safe_open

    from mergedna_cli.model.files import weight_files
    total = 0
    for path in weight_files(model_dir):
        with safe_open(str(path), framework="numpy") as weights:
            total += int(sum(np.prod(weights.get_slice(k).get_shape()) for k in weights.keys()))  # noqa: SIM118
    return total


def total_bases_seen(training: dict) -> int | None:
    """Bases seen over every stage: this run's plus those of the model it started from."""
    if "bases_seen" not in training:
        return None
    return training["bases_seen"] + training.get("init_from", {}).get("bases_seen", 0)


def model_info(model_dir: Path) -> dict:
    """Name, size, weights sha256 and training record (bases seen, hardware) of a model dir."""
    from mergedna_cli.model.files import load_config, weights_sha256

    config = load_config(model_dir)
    record = model_dir / "training.json"
    training = json.loads(record.read_text()) if record.is_file() else {}
    return {"name": model_dir.resolve().name, "dir": str(model_dir), "preset": config.name,
            "context": config.context, "parameters": parameter_count(model_dir),
            "weights_sha256": weights_sha256(model_dir), "bases_seen": total_bases_seen(training),
            "steps": training.get("step"), "hardware": training.get("hardware"),
            "train_device": training.get("device"), "train_seconds": training.get("train_seconds")}


def heldout_quality(model_dir: Path, fasta: str, max_windows: int, phases: int, device: str) -> dict:
    """Masked-base accuracy / CE on held-out sequence, forward strand and both strands, with the
    functions and protocol of benchmarks/pretrain_eval.py (spacing 32, margin 16)."""
    import torch

    from mergedna_cli.io.fasta_records import iter_fasta_records
    from mergedna_cli.model import load_model
    from mergedna_cli.training.evaluation import held_out_windows, masked_base_eval

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_dir, device=device)
    ids = np.concatenate([encode(seq) for _, seq in iter_fasta_records(fasta)])
    windows = held_out_windows(ids, model.config.context, max_windows)
    out: dict = {"fasta": str(fasta), "windows": int(len(windows)), "context": model.config.context,
                 "spacing": 32, "phases": phases, "margin": 16}
    t0 = time.perf_counter()
    for mode in ("forward", "both"):
        ev = masked_base_eval(model, windows, spacing=32, phases=phases, margin=16,
                              both_strands=mode == "both")
        out[mode] = {"accuracy": ev.accuracy, "cross_entropy": ev.cross_entropy, "bases": ev.n_bases}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out

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
# the harness

def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    ap.add_argument("--quick", action="store_true",
                    help=f"a smoke test: --limit {QUICK['limit']} --bootstrap {QUICK['bootstrap']} "
                         f"--heldout-windows {QUICK['heldout_windows']} unless given")
    ap.add_argument("--heldout", default=str(HELDOUT), help="held-out FASTA (default human chr20)")
    ap.add_argument("--heldout-windows", type=int, default=None, help="default: all windows")
    ap.add_argument("--heldout-phases", type=int, default=2,
                    help="mask offsets per window (2, as training's validation rows)")
    ap.add_argument("--skip-heldout", action="store_true", help="no held-out masked-base metrics")
    ap.add_argument("--skip-model", action="store_true", help="k-mer baseline only (needs --kmer)")
    ap.add_argument("--kmer", action="store_true", help="also score the k-mer baseline")
    ap.add_argument("--ks", default="0-6", help="k values to select from, e.g. '0-6' or '2,4'")
    ap.add_argument("--alphas", default=",".join(str(a) for a in DEFAULT_ALPHAS))
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--kmer-train", action="append", metavar="FASTA[=WEIGHT]",
                    help="override the k-mer training files (repeatable; for quick checks)")
    ap.add_argument("--kmer-exclude", action="append", metavar="BED",
                    help="extra BED regions to set to N in the k-mer training data (repeatable)")
    ap.add_argument("--cache-dir", default=str(REPO / ".cache" / "corpus"))
    ap.add_argument("--bootstrap", type=int, default=None,
                    help="bootstrap resamples (default 1000; 0: no intervals)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--scores-tsv", help="write every variant's label and scores to this TSV")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    for key, value in QUICK.items():
        if args.quick and getattr(args, key) is None:
            setattr(args, key, value)
    args.bootstrap = 1000 if args.bootstrap is None else args.bootstrap
    args.heldout_windows = 100000 if args.heldout_windows is None else args.heldout_windows
    if args.skip_model and not args.kmer:
        ap.error("--skip-model without --kmer leaves nothing to score")
    args.set_names = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in args.set_names:
        if s not in SETS:
            ap.error(f"unknown set '{s}'; choose from {', '.join(SETS)}")
    if not Path(args.model).is_dir() and not args.skip_model:
        ap.error(f"model directory '{args.model}' does not exist")
    return args


def load_backends(model_dir: Path, args) -> tuple:
    """(masked-pass backend, embedding backend) as `mergedna score` builds them."""
    from mergedna_cli.engine.load import make_backend
    return tuple(make_backend(str(model_dir), args.backend, args.device, args.threads, log=print, part=part)
                 for part in ("masked", "embedding"))


def score_set(name: str, args, model_dir: Path, backends, reference, kmer, corpus, tmp: Path) -> dict:
    """Every score and metric of one variant set, as a JSON-ready entry."""
    path, positive = SETS[name]
    meta, column_line, variants, labels, infos = read_set(path, args.limit)
    vcf = path
    if args.limit is not None:
        vcf = tmp / f"{name}.vcf"
        write_vcf(vcf, meta, column_line, variants)
    classes = consequences(infos)
    entry: dict = {"vcf": str(path), "positive": positive, "n": len(variants),
                   "n_positive": int(labels.sum()), "ids": [v.fields[2] for v in variants],
                   "labels": labels.tolist(), "scores": {}, "metrics": {}}
    if classes is not None:
        entry["consequence"] = classes.tolist()
    if backends is not None:
        s, statuses, secs = model_scores(*backends, reference, vcf, variants, args, model_dir, tmp)
        entry["scores"]["MergeDNA"] = s
        entry.update(mergedna_statuses=statuses, mergedna_seconds=round(secs, 2),
                     mergedna_variants_per_s=round(len(variants) / secs, 1))
    if kmer is not None:
        s, strand_diff = kmer_scores(kmer, reference, variants, args.strand == "both")
        entry["scores"]["k-mer"] = s
        inside, seen = leaked_sites(corpus, variants)
        entry.update(kmer_max_strand_diff=strand_diff, training_sites_inside_records=inside,
                     training_sites_not_excluded=seen)
    for key, s in entry["scores"].items():
        entry["metrics"][key] = set_metrics(s, labels, classes, args.bootstrap, args.seed)
    if "FUNCTION_SCORE_MEAN" in (infos[0] if infos else {}):
        fn = np.array([float(i.get("FUNCTION_SCORE_MEAN", "nan")) for i in infos])
        entry["spearman_function_score"] = {k: spearman(s, fn) for k, s in entry["scores"].items()}
    if len(entry["scores"]) == 2:
        entry["spearman_mergedna_kmer"] = spearman(*entry["scores"].values())
    return entry


def fmt_ci(result: dict | None) -> str:
    """'0.4524 [0.427, 0.480]' from an auroc_ci result; '-' where undefined."""
    if not result or result.get("auroc") is None or not np.isfinite(result["auroc"]):
        return "-"
    ci = result.get("ci95")
    return f"{result['auroc']:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def print_report(results: dict) -> None:
    info = results.get("model_info")
    if info:
        print(f"\nmodel {info['name']}: {info['parameters']:,} parameters, bases seen "
              f"{info['bases_seen'] if info['bases_seen'] is not None else 'unknown'}, "
              f"weights sha256 {info['weights_sha256'][:12]}...")
    held = results.get("heldout")
    if held:
        for mode in ("forward", "both"):
            r = held[mode]
            strands = "both strands" if mode == "both" else "forward strand"
            print(f"held-out {Path(held['fasta']).name}, {strands}: masked acc {r['accuracy']:.4f}, "
                  f"CE {r['cross_entropy']:.4f} nats ({r['bases']:,} bases, {held['windows']} windows)")
    for name, e in results["sets"].items():
        print(f"\n{name}: {e['n']} variants, {e['n_positive']} {e['positive']}")
        for scorer, m in e["metrics"].items():
            print(f"  {scorer:<9} AUROC {fmt_ci(m['auroc'])}")
            for c in m.get("contrasts", {}).values():
                print(f"  {scorer:<9} {c['first']} vs {c['second']} ({c['n']} SNVs): {fmt_ci(c)}")
            for cls, c in m.get("by_consequence", {}).items():
                print(f"  {scorer:<9}   within {cls:<17} n {c['n']:>5}  pos {c['n_positive']:>4}  "
                      f"AUROC {fmt_ci(c)}")
        if "mergedna_seconds" in e:
            print(f"  MergeDNA scored {e['n']} variants in {e['mergedna_seconds']} s; "
                  f"statuses {e['mergedna_statuses']}")
        if "kmer_max_strand_diff" in e:
            print(f"  k-mer max |forward - reverse| {e['kmer_max_strand_diff']:.2e}; variant sites seen "
                  f"in its training data {e['training_sites_not_excluded']}")
        for k, rho in e.get("spearman_function_score", {}).items():
            print(f"  Spearman of {k} score with the SGE function score: {rho:.4f}")


def write_scores_tsv(path: str, sets: dict) -> None:
    with open(path, "w") as out:
        out.write("set\tid\tlabel\tconsequence\tmergedna\tkmer\n")
        for name, e in sets.items():
            cols = [e["scores"].get(k, [np.nan] * e["n"]) for k in ("MergeDNA", "k-mer")]
            cons = e.get("consequence", ["."] * e["n"])
            out.writelines(f"{name}\t{e['ids'][i]}\t{e['labels'][i]}\t{cons[i]}\t"
                           f"{cols[0][i]:.6g}\t{cols[1][i]:.6g}\n" for i in range(e["n"]))


def code_version() -> dict:
    """The commit the package code is at, and whether mergedna_cli/ differs from it."""
    import subprocess
    git = ["git", "-C", str(REPO)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "mergedna_cli"], capture_output=True,
                               text=True, check=False).stdout.strip()
    except OSError:
        return {"commit": None, "mergedna_cli_modified": None}
    return {"commit": commit or None, "mergedna_cli_modified": bool(dirty)}


def run_harness(args) -> dict:
    from mergedna_cli.io.reference import Reference
    t_start = time.perf_counter()
    model_dir = Path(args.model)
    results: dict = {"harness_version": HARNESS_VERSION, "model": str(model_dir),
                     "backend": args.backend, "strand": args.strand,
                     "mask_spacing": args.mask_spacing or None, "batch_size": args.batch_size,
                     "threads": args.threads, "limit": args.limit, "bootstrap": args.bootstrap,
                     "seed": args.seed, "quick": args.quick, "argv": args.argv, "code": code_version(),
                     "sets": {}}
    if args.limit is not None:
        print(f"NOTE: --limit {args.limit}: the first {args.limit} variants of each set (a check, "
              f"not the benchmark)")
    backends = None
    if not args.skip_model:
        results["model_info"] = model_info(model_dir)
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        if not args.skip_heldout:
            results["heldout"] = heldout_quality(model_dir, args.heldout, args.heldout_windows,
                                                 args.heldout_phases, args.device)
            print(f"held-out metrics in {results['heldout']['seconds']} s")
        backends = load_backends(model_dir, args)
    kmer = corpus = None
    if args.kmer:
        kmer, corpus, results["kmer"] = fit_kmer(model_dir, args)
    reference = Reference(args.fasta)
    with tempfile.TemporaryDirectory(prefix="zero_shot_") as tmp:
        for name in args.set_names:
            results["sets"][name] = score_set(name, args, model_dir, backends, reference, kmer,
                                              corpus, Path(tmp))
    print_report(results)
    print()
    for line in PUBLISHED:
        print(line)
    results["published_reference_not_measured"] = PUBLISHED
    results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    print(f"wall time {results['wall_seconds']} s")
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from mergedna_cli.errors import MergeDNAError
    try:
        results = run_harness(args)
    except MergeDNAError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.scores_tsv:
        write_scores_tsv(args.scores_tsv, results["sets"])
        print(f"wrote {args.scores_tsv}")
    if args.json_out:
        write_json(args.json_out, results)
    return results


if __name__ == "__main__":
    main()
