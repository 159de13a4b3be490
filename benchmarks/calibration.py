"""Context calibration of SNV scores (GPN-Star's correction), and whether it helps on BRCA1.

    python benchmarks/calibration.py --model models/mergedna-small \
        --harness-json runs/quality/mergedna-small.json --json runs/quality/mergedna-small/calibration_eval.json

corrected = score - E[score | 5-mer context, alt]. The expectation is over SNVs at random
positions of held-out human sequence that is not BRCA1 (default: the held-out chr20 file), each
position scored for all three alternate bases by the same model exactly as `mergedna score` scores
an SNV (`masked_log_probs`: the base masked, one position per pass, mean of both strands). A score
averaged over both strands is the same for (context, alt) and (reverse-complement context,
complement alt), so the two are pooled. A 5-mer cell holds only ~2 x positions / 1024 SNVs, so
its mean is shrunk towards the 3-mer mean, and that towards the 1-mer (ref, alt) mean, with a
prior weight chosen by two-fold cross-validation on the background positions.

The table is a (1024, 4) array: row = 5-mer index sum(base_i * 4**(4 - i)) with A C G T = 0 1 2 3
and the reference base in the middle, column = alt base, NaN where alt = ref. It is stored as JSON
with the model's weights sha256 and its own sha256 (`--out`, default
runs/quality/<model>/calibration.json). `build_table` and `expected_scores` are importable, so
`mergedna score` can apply it later.

With --harness-json (a benchmarks/zero_shot.py --json run of the same model) it compares raw and
corrected scores on the stored per-variant scores, without rescoring them: AUROCs with bootstrap
intervals and the paired bootstrap interval of each corrected - raw difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from zero_shot import (  # noqa: E402
    CONTRASTS,
    HELDOUT,
    REFERENCE,
    SETS,
    fmt_ci,
    json_safe,
    paired_difference_ci,
    read_set,
    set_metrics,
    write_json,
)

from mergedna_cli.alphabet import N_BASES, decode, encode  # noqa: E402
from mergedna_cli.engine.calibration import (  # noqa: E402
    HALF,
    K,
    CalibrationTable,
    context_index,
    expected_scores,
    table_sha256,
)
from mergedna_cli.errors import InputError  # noqa: E402

PRIOR_WEIGHTS = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0)
COMPLEMENT = np.array([3, 2, 1, 0])  # A<->T, C<->G on base indices


# ---------------------------------------------------------------------------------------------
# contexts

def reverse_complement_index(k: int) -> np.ndarray:
    """For every k-mer index, the index of its reverse complement."""
    digits = (np.arange(4 ** k)[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4
    return ((3 - digits[:, ::-1]) * 4 ** np.arange(k - 1, -1, -1)).sum(1)


def inner_index(index5: np.ndarray, k: int) -> np.ndarray:
    """The centred k-mer (odd k <= 5) inside each 5-mer index."""
    trim = (K - k) // 2
    return (index5 // 4 ** trim) % 4 ** k


# ---------------------------------------------------------------------------------------------
# the table

def pooled_sums(index: np.ndarray, deltas: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of score per (k-mer, alt), each SNV also counted as its reverse complement.
    index: (P,) k-mer indices; deltas: (P, 4) score of each alt (NaN at ref / unscored)."""
    ok = np.isfinite(deltas)
    cell = index[:, None] * 4 + np.arange(4)
    sums = np.bincount(cell[ok], deltas[ok], minlength=4 ** k * 4).reshape(-1, 4)
    counts = np.bincount(cell[ok], minlength=4 ** k * 4).reshape(-1, 4).astype(np.float64)
    rc = reverse_complement_index(k)
    return sums + sums[rc][:, COMPLEMENT], counts + counts[rc][:, COMPLEMENT]


def fit_table(index5: np.ndarray, deltas: np.ndarray, prior_weight: float) -> np.ndarray:
    """(1024, 4) shrunk mean score per (5-mer, alt): 1-mer means, 3-mer means shrunk to them,
    5-mer means shrunk to those, each with `prior_weight` pseudo-SNVs."""
    keep = index5 >= 0
    index5, deltas = index5[keep], deltas[keep]
    s1, c1 = pooled_sums(inner_index(index5, 1), deltas, 1)
    mean = np.divide(s1, c1, out=np.full_like(s1, np.nan), where=c1 > 0)
    for k in (3, K):
        s, c = pooled_sums(inner_index(index5, k), deltas, k)
        parent = mean[(np.arange(4 ** k) // 4) % 4 ** (k - 2)]  # the centred (k-2)-mer's means
        prior = np.nan_to_num(parent) * prior_weight
        mean = np.divide(s + prior, c + prior_weight, out=parent.copy(), where=c + prior_weight > 0)
    ref = (np.arange(4 ** K) // 4 ** HALF) % 4
    mean[np.arange(4 ** K), ref] = np.nan
    return mean


def choose_prior_weight(index5: np.ndarray, deltas: np.ndarray, seed: int) -> tuple[float, dict]:
    """The prior weight of PRIOR_WEIGHTS with the lowest two-fold cross-validated squared error
    of predicting a background SNV's score (positions split at random)."""
    fold = np.random.default_rng(seed).integers(0, 2, len(index5))
    errors = {}
    for w in PRIOR_WEIGHTS:
        sq, n = 0.0, 0
        for f in (0, 1):
            table = fit_table(index5[fold != f], deltas[fold != f], w)
            test = (fold == f) & (index5 >= 0)
            resid = deltas[test] - table[index5[test]]
            ok = np.isfinite(resid)
            sq, n = sq + float((resid[ok] ** 2).sum()), n + int(ok.sum())
        errors[w] = sq / max(n, 1)
    return min(errors, key=errors.get), errors


def save_table(path: Path, table: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.round(table, 6)  # JSON keeps 6 decimals; the sha256 is of what is stored
    record = {**meta, "k": K, "table_sha256": table_sha256(table), "index": "5-mer sum(base_i*4**(4-i)), "
              "A C G T = 0 1 2 3, ref in the middle; column = alt; null where alt = ref",
              "table": json_safe(table)}
    path.write_text(json.dumps(record) + "\n")


def load_table(path: Path) -> tuple[np.ndarray, dict]:
    """(table, its record), as `mergedna score` loads it; a table whose sha256 does not match its
    values is refused."""
    try:
        table = CalibrationTable.load(path)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None
    return table.table, table.record


# ---------------------------------------------------------------------------------------------
# background SNVs scored by the model

def background_reference(fasta: str, workdir: Path):
    """(Reference, contig, ids) of the first record of a FASTA, written uncompressed so it can be
    indexed (the shared corpus files are plain gzip)."""
    from mergedna_cli.io.fasta_records import iter_fasta_records
    from mergedna_cli.io.reference import Reference
    _, seq = next(iter(iter_fasta_records(fasta)))
    ids = encode(seq)
    path = workdir / "background.fa"
    path.write_text(">background\n" + decode(ids) + "\n")
    return Reference(path), "background", ids


def background_deltas(backend, reference, contig: str, ids: np.ndarray, positions: np.ndarray,
                      batch_size: int) -> np.ndarray:
    """(P, 4) SNV score of every alt at sorted `positions` as `mergedna score` computes it
    (log p(alt) - log p(ref), both strands, one position per pass); NaN at the reference base."""
    from mergedna_cli.engine.masked import masked_log_probs
    lp = masked_log_probs(backend, reference, contig, positions, None, batch_size, True).astype(np.float64)
    ref = ids[positions].astype(np.int64)
    deltas = lp - lp[np.arange(len(positions)), ref][:, None]
    deltas[np.arange(len(positions)), ref] = np.nan
    return deltas


def sample_positions(ids: np.ndarray, n: int, margin: int, seed: int) -> np.ndarray:
    """n sorted random positions at least `margin` from either end whose 5-mer is all A/C/G/T."""
    candidates = np.arange(margin, len(ids) - margin)
    candidates = candidates[context_index(ids, candidates) >= 0]
    if n > len(candidates):
        raise SystemExit(f"error: --positions {n} is more than the {len(candidates)} usable positions")
    return np.sort(np.random.default_rng(seed).choice(candidates, n, replace=False))


def build_table(model_dir: Path, fasta: str = str(HELDOUT), n_positions: int = 2000, seed: int = 0,
                threads: int = 2, batch_size: int = 32, device: str = "auto", log=print) -> tuple[np.ndarray, dict]:
    """(table, record) for a model: background SNVs scored, prior weight chosen, table fitted."""
    from mergedna_cli.model.files import weights_sha256
    from mergedna_cli.engine.load import make_backend
    backend = make_backend(str(model_dir), "torch", device, threads, part="masked")
    context = backend.config.context
    with tempfile.TemporaryDirectory(prefix="calibration_") as tmp:
        reference, contig, ids = background_reference(fasta, Path(tmp))
        positions = sample_positions(ids, n_positions, context, seed)
        t0 = time.perf_counter()
        deltas = background_deltas(backend, reference, contig, ids, positions, batch_size)
        seconds = time.perf_counter() - t0
    log(f"scored {len(positions):,} background positions x 3 alts in {seconds:.1f} s")
    index5 = context_index(ids, positions)
    weight, cv = choose_prior_weight(index5, deltas, seed)
    table = fit_table(index5, deltas, weight)
    record = {"model": str(model_dir), "weights_sha256": weights_sha256(model_dir),
              "background_fasta": str(fasta), "positions": int(len(positions)), "seed": seed,
              "snvs": int(np.isfinite(deltas).sum()), "prior_weight": weight,
              "cv_mse": {str(k): v for k, v in cv.items()}, "scoring_seconds": round(seconds, 1),
              "background_mean": float(np.nanmean(deltas)), "background_sd": float(np.nanstd(deltas))}
    return table, record


# ---------------------------------------------------------------------------------------------
# raw vs corrected on the variant sets

def variant_contexts(reference, variants) -> tuple[np.ndarray, np.ndarray]:
    """(5-mer index, alt index) per SNV from the reference (one read per contig)."""
    index5 = np.full(len(variants), -1)
    alt = np.array([int(encode(v.alts[0].upper())[0]) for v in variants])
    by_contig: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        contig = reference.resolve(v.chrom)
        if contig is not None:
            by_contig.setdefault(contig, []).append(i)
    for contig, rows in by_contig.items():
        pos = np.array([variants[i].start for i in rows])
        lo = int(pos.min()) - HALF
        span = reference.fetch_ids(contig, lo, int(pos.max()) + HALF + 1)
        index5[rows] = context_index(span, pos - lo)
    return index5, np.minimum(alt, N_BASES - 1)


def compare_set(entry: dict, expected: np.ndarray, n_boot: int, seed: int) -> dict:
    """Raw and corrected metrics of one harness set, and the paired corrected - raw differences."""
    raw = np.array([np.nan if s is None else s for s in entry["scores"]["MergeDNA"]], np.float64)
    corrected = raw - expected
    labels = np.asarray(entry["labels"])
    classes = np.asarray(entry["consequence"]) if "consequence" in entry else None
    out = {"n": len(raw), "n_corrected": int(np.isfinite(corrected).sum()),
           "raw": set_metrics(raw, labels, classes, n_boot, seed),
           "corrected": set_metrics(corrected, labels, classes, n_boot, seed),
           "difference": {"auroc": paired_difference_ci(-corrected, -raw, labels, n_boot, seed)}}
    for key, first, second in CONTRASTS if classes is not None else []:
        keep = np.isin(classes, [first, second])
        out["difference"][key] = paired_difference_ci(-corrected[keep], -raw[keep],
                                                      classes[keep] == first, n_boot, seed)
    return out


def evaluate(harness: dict, table: np.ndarray, n_boot: int, seed: int) -> dict:
    from mergedna_cli.io.reference import Reference
    reference = Reference(REFERENCE)
    results = {}
    for name, entry in harness["sets"].items():
        _, _, variants, _, _ = read_set(SETS[name][0], harness.get("limit"))
        if [v.fields[2] for v in variants] != entry["ids"]:
            raise SystemExit(f"error: the harness JSON's {name} variants are not {SETS[name][0]}'s")
        index5, alt = variant_contexts(reference, variants)
        results[name] = compare_set(entry, expected_scores(table, index5, alt), n_boot, seed)
    return results


def fmt_diff(d: dict) -> str:
    ci = d.get("ci95")
    return f"{d['difference']:+.4f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def print_comparison(results: dict) -> None:
    for name, r in results.items():
        print(f"\n{name} ({r['n_corrected']}/{r['n']} SNVs with a context): raw -> corrected, "
              f"difference [paired 95% interval]")
        rows = [("AUROC", r["raw"]["auroc"], r["corrected"]["auroc"], r["difference"]["auroc"])]
        rows += [(key, r["raw"]["contrasts"][key], r["corrected"]["contrasts"][key], r["difference"][key])
                 for key, _, _ in CONTRASTS if key in r["difference"]]
        for label, a, b, d in rows:
            print(f"  {label:<30} {fmt_ci(a):>25} -> {fmt_ci(b):>25}   {fmt_diff(d)}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--background", default=str(HELDOUT), help="held-out FASTA (not BRCA1)")
    ap.add_argument("--positions", type=int, default=2000, help="background positions (x3 alts)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="table JSON (default runs/quality/<model>/calibration.json)")
    ap.add_argument("--table", help="use this saved table instead of building one")
    ap.add_argument("--harness-json", help="zero_shot.py --json of the same model: compare raw and corrected")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", dest="json_out", help="write the comparison here")
    args = ap.parse_args(argv)
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        ap.error(f"model directory '{model_dir}' does not exist")
    from mergedna_cli.errors import MergeDNAError
    try:
        return run(args, model_dir)
    except MergeDNAError as exc:
        raise SystemExit(f"error: {exc}") from None


def obtain_table(args, model_dir: Path, sha: str) -> tuple[np.ndarray, dict]:
    """The --table given (it must be this model's), or one built now and saved to --out."""
    if args.table:
        table, record = load_table(Path(args.table))
        if record.get("weights_sha256") != sha:
            raise SystemExit(f"error: {args.table} was built for weights {record.get('weights_sha256')}, "
                             f"not {model_dir}'s {sha}")
        return table, record
    table, record = build_table(model_dir, args.background, args.positions, args.seed,
                                args.threads, args.batch_size, args.device)
    out = Path(args.out or REPO / "runs" / "quality" / model_dir.resolve().name / "calibration.json")
    save_table(out, table, record)
    table, record = load_table(out)  # what is applied is what was stored (6 decimals)
    print(f"wrote {out} (table sha256 {record['table_sha256'][:12]}..., prior weight "
          f"{record['prior_weight']:g}, CV MSE {record['cv_mse']})")
    return table, record


def read_harness(path: str, sha: str) -> dict:
    try:
        harness = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read harness JSON {path}: {exc}") from None
    if (harness.get("model_info") or {}).get("weights_sha256") != sha:
        raise SystemExit(f"error: {path} is not a harness run of these weights ({sha[:12]}...)")
    return harness


def run(args, model_dir: Path) -> dict:
    from mergedna_cli.model.files import WEIGHTS_FILE, weights_sha256
    if not (model_dir / WEIGHTS_FILE).is_file():
        raise SystemExit(f"error: model directory '{model_dir}' has no {WEIGHTS_FILE}")
    sha = weights_sha256(model_dir)
    harness = read_harness(args.harness_json, sha) if args.harness_json else None
    table, record = obtain_table(args, model_dir, sha)
    results = {"table": {k: v for k, v in record.items() if k != "table"}}
    if harness is not None:
        results["sets"] = evaluate(harness, table, args.bootstrap, harness.get("seed", 0))
        print_comparison(results["sets"])
    if args.json_out:
        write_json(args.json_out, results)
    return results


if __name__ == "__main__":
    main()
