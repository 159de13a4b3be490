"""Speed of zero-shot SNV scoring on the BRCA1 SGE set: one position per pass vs shared passes,
torch vs ONNX Runtime, and how far the faster plans move the scores.

    python benchmarks/score_speed.py --model models/mergedna-small --threads 2 --json out.json

For each backend (--backends), strand mode (--strands) and mask plan (one position per pass,
then --spacings), the SGE variants (read into memory first) go through the same `Scorer` that
`mergedna score` uses. Timed: the scoring only (classification, reference reads, model passes),
after the model is loaded and one warm-up window has run; load (for ONNX including the first-use
export, when the graph is not cached yet) and warm-up are reported separately. "windows" counts
the rows (windows of `context` bases) sent to the backend's `run`, both strands included.

Agreement: Spearman correlation and max |difference| of each configuration's scores with the
torch, one-position-per-pass scores of the same strand mode (scores at full precision).
Goal (from the issue): >= 200 SNVs/s with both strands on 2 cores, and Spearman >= 0.99
between shared passes and one position per pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from zero_shot import REFERENCE, SETS, json_safe, read_set, spearman  # noqa: E402

GOAL_RATE, GOAL_RHO = 200.0, 0.99


class CountingBackend:
    """A backend that counts what goes through `run` (calls and windows)."""

    def __init__(self, inner):
        self.inner, self.config, self.part = inner, inner.config, inner.part
        self.calls = self.windows = 0

    def run(self, ids, query=None):
        self.calls += 1
        self.windows += len(ids)
        return self.inner.run(ids, query) if query is not None else self.inner.run(ids)


def score_all(backend, reference, variants, strand: str, spacing: int | None, batch_size: int):
    """(scores, seconds, statuses) for the variants through the CLI's Scorer."""
    from mergedna_cli.pipelines.score import Scorer, ScoreOptions

    scorer = Scorer(backend, reference, ScoreOptions(strand=strand, mask_spacing=spacing,
                                                     batch_size=batch_size))
    scores, statuses = [], {}
    t0 = time.perf_counter()
    for chunk in scorer.chunks(variants):
        for _, _, jobs in chunk:
            job = jobs[0]
            statuses[job.status] = statuses.get(job.status, 0) + 1
            scores.append(job.score if job.status == "ok" and job.score is not None else np.nan)
    return np.asarray(scores, dtype=np.float64), time.perf_counter() - t0, statuses


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "mergedna-small"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime CPU threads")
    ap.add_argument("--limit", type=int, default=None, help="only the first N SGE variants")
    ap.add_argument("--batch-size", type=int, default=32, help="windows per backend call (both "
                    "strands together, as `mergedna score --batch-size`)")
    ap.add_argument("--spacings", default="32,64,128", help="shared-pass mask spacings to try "
                    "(one position per pass is always run)")
    ap.add_argument("--backends", default="torch,onnx")
    ap.add_argument("--strands", default="both", help="comma-separated strand modes: both, forward")
    ap.add_argument("--repeats", type=int, default=1, help="time each configuration this many "
                    "times and keep the fastest")
    ap.add_argument("--fasta", default=str(REFERENCE))
    ap.add_argument("--graph", choices=["masked", "full"], default="masked",
                    help="inference graph: masked (decodes only the masked bases, what score uses) or full")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    spacings = [None] + [int(s) for s in args.spacings.split(",") if s.strip() and int(s) > 0]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    strands = [s.strip() for s in args.strands.split(",") if s.strip()]
    for b in backends:
        if b not in ("torch", "onnx"):
            ap.error(f"unknown backend '{b}'")
    for s in strands:
        if s not in ("both", "forward"):
            ap.error(f"unknown strand mode '{s}'")
    if backends[0] != "torch" and "torch" in backends:
        backends.remove("torch")
        backends.insert(0, "torch")  # the reference configuration runs first

    from mergedna_cli.io.reference import Reference
    from mergedna_cli.engine.load import make_backend

    reference = Reference(args.fasta)
    _, _, variants, labels, _ = read_set(SETS["sge"][0], args.limit)
    n = len(variants)
    n_positions = len({(v.chrom, v.start) for v in variants})
    print(f"BRCA1 SGE set: {n} SNVs at {n_positions} positions"
          + (f" (--limit {args.limit}: a check, not the benchmark)" if args.limit else ""))
    results: dict = {"model": args.model, "threads": args.threads, "batch_size": args.batch_size,
                     "n_variants": n, "n_positions": n_positions, "device": args.device,
                     "backends": {}, "runs": []}
    reference_scores: dict[str, np.ndarray] = {}
    rows = []
    for name in backends:
        t0 = time.perf_counter()
        inner = make_backend(args.model, name, args.device, args.threads, log=lambda m: print(m),
                             part=args.graph)
        t_load = time.perf_counter() - t0
        backend = CountingBackend(inner)
        context = inner.config.context
        t0 = time.perf_counter()
        warm = np.zeros((1, context), dtype=np.int64)
        inner.run(warm, np.zeros((1, 1), dtype=np.int64)) if inner.part == "masked" else inner.run(warm)
        t_warm = time.perf_counter() - t0
        results["backends"][name] = {"load_seconds": round(t_load, 3), "warmup_seconds": round(t_warm, 3)}
        print(f"{name}: load {t_load:.2f} s, warm-up window {t_warm:.2f} s (context {context})")
        for strand in strands:
            for spacing in spacings:
                best = None
                for _ in range(max(1, args.repeats)):
                    backend.calls = backend.windows = 0
                    scores, secs, statuses = score_all(backend, reference, variants, strand, spacing,
                                                       args.batch_size)
                    if best is None or secs < best[1]:
                        best = (scores, secs, statuses, backend.calls, backend.windows)
                scores, secs, statuses, calls, windows = best
                if name == "torch" and spacing is None:
                    reference_scores[strand] = scores
                ref = reference_scores.get(strand)
                rho = spearman(scores, ref) if ref is not None else float("nan")
                diff = float(np.nanmax(np.abs(scores - ref))) if ref is not None else float("nan")
                run = {"backend": name, "strand": strand, "mask_spacing": spacing,
                       "seconds": round(secs, 3), "variants_per_s": n / secs, "windows": windows,
                       "calls": calls, "windows_per_s": windows / secs, "statuses": statuses,
                       "spearman_vs_torch_one_per_pass": rho, "max_abs_diff_vs_torch_one_per_pass": diff}
                results["runs"].append(run)
                rows.append(run)
                print(f"  {name:<6}{strand:<8}{str(spacing or 'none'):>6}: {secs:7.2f} s, "
                      f"{n / secs:7.1f} SNVs/s, {windows} windows", flush=True)

    print(f"\n{n} SNVs, threads {args.threads}, batch size {args.batch_size}; agreement vs torch "
          f"one-position-per-pass of the same strand mode")
    print(f"{'backend':<8}{'strand':<8}{'spacing':>8}{'seconds':>9}{'SNVs/s':>9}{'windows':>9}"
          f"{'calls':>7}{'win/s':>8}{'Spearman':>10}{'max|diff|':>11}  goal")
    fmt = lambda x, f: "-" if not np.isfinite(x) else format(x, f)  # noqa: E731
    for r in rows:
        goal = ""
        if r["strand"] == "both":
            fast = r["variants_per_s"] >= GOAL_RATE
            close = r["mask_spacing"] is None or (np.isfinite(r["spearman_vs_torch_one_per_pass"])
                                                  and r["spearman_vs_torch_one_per_pass"] >= GOAL_RHO)
            goal = "MET" if fast and close else ("slow" if not fast else "") + \
                ("" if close else (", " if not fast else "") + "rho<0.99")
        r["goal_met"] = goal == "MET" if r["strand"] == "both" else None
        print(f"{r['backend']:<8}{r['strand']:<8}{str(r['mask_spacing'] or 'none'):>8}"
              f"{r['seconds']:>9.2f}{r['variants_per_s']:>9.1f}{r['windows']:>9}{r['calls']:>7}"
              f"{r['windows_per_s']:>8.1f}{fmt(r['spearman_vs_torch_one_per_pass'], '.5f'):>10}"
              f"{fmt(r['max_abs_diff_vs_torch_one_per_pass'], '.4f'):>11}  {goal}")
    print(f"goal: >= {GOAL_RATE:g} SNVs/s with both strands, Spearman >= {GOAL_RHO} vs one position "
          f"per pass (measured with --threads {args.threads})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(json_safe(results), indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return results


if __name__ == "__main__":
    main()
