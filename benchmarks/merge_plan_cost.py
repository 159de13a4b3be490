"""What checking merges against the float64 tokenizer costs (engine/merge_plan.py).

Runs the same real windows (BRCA1, both strands; the scoring graph with one masked base per
window, as `score` runs it, and the embedding and tokens graphs) through each backend twice per
repeat, interleaved: as inference runs them (rows with a merge gap below CERTAIN_MARGIN checked
against the float64 plan, rerun where it differs) and with the check off (the float32 graph's own
decisions). Prints windows/s of both, their ratio, and the share of windows checked and rerun.

    python benchmarks/merge_plan_cost.py [--model models/mergedna-small] [--bases 100000]
        [--threads 1] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from inference_speed import DEFAULT_FASTA, window_ids  # noqa: E402


def timed(backend, ids: np.ndarray, query: np.ndarray | None, batch: int) -> float:
    t0 = time.perf_counter()
    for lo in range(0, len(ids), batch):
        backend.run(ids[lo:lo + batch], None if query is None else query[lo:lo + batch])
    return time.perf_counter() - t0


def main() -> None:
    from mergedna_cli.alphabet import MASK, reverse_complement
    from mergedna_cli.engine import merge_plan
    from mergedna_cli.engine.load import make_backend
    from mergedna_cli.io.reference import Reference
    from mergedna_cli.model_dirs import resolve_model_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--fasta", default=str(DEFAULT_FASTA))
    ap.add_argument("--start", type=int, default=43_044_294)
    ap.add_argument("--bases", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="onnx,torch")
    ap.add_argument("--parts", default="masked,embedding,tokens")
    args = ap.parse_args()

    model = str(resolve_model_dir(args.model))
    reference = Reference(args.fasta)
    checked_margin = merge_plan.CERTAIN_MARGIN
    print(f"model {model} | chr17:{args.start + 1:,}+{args.bases:,} both strands | threads {args.threads} | "
          f"batch {args.batch_size} | CERTAIN_MARGIN {checked_margin:g} | best of {args.repeats}")
    print(f"{'backend':8}{'graph':11}{'windows':>8}{'checked':>9}{'rerun':>7}{'win/s checked':>15}"
          f"{'win/s off':>11}{'ratio':>7}")
    for part in args.parts.split(","):
        for name in args.backends.split(","):
            backend = make_backend(model, name, "cpu", args.threads, part=part)
            fwd = window_ids(reference, "chr17", args.start, args.start + args.bases, backend.config.context)
            ids = np.concatenate([fwd, reverse_complement(fwd)]).astype(np.int64)
            query = None
            if part == "masked":
                query = np.full((len(ids), 1), ids.shape[1] // 2)
                ids[:, ids.shape[1] // 2] = MASK
            raw = [getattr(backend, "inner", backend).run_with_plan(ids[lo:lo + 64], None if query is None else query[lo:lo + 64],
                                                            merge_plan.no_plan(ids[lo:lo + 64]))
                   for lo in range(0, len(ids), 64)]
            margin = np.concatenate([o.merge_margin for o in raw])
            plan32 = np.concatenate([o.merge_plan for o in raw])
            unsure = np.flatnonzero(margin < checked_margin)
            inner = getattr(backend, "inner", backend)
            rerun = int((inner.reference_plan(ids[unsure]) != plan32[unsure]).any(1).sum()) if unsure.size else 0
            timed(backend, ids[:args.batch_size], None if query is None else query[:args.batch_size], args.batch_size)
            on, off = [], []
            for _ in range(args.repeats):
                merge_plan.CERTAIN_MARGIN = checked_margin
                on.append(timed(backend, ids, query, args.batch_size))
                merge_plan.CERTAIN_MARGIN = -1.0  # no gap is below it: every row decides alone
                off.append(timed(backend, ids, query, args.batch_size))
            merge_plan.CERTAIN_MARGIN = checked_margin
            rate_on, rate_off = len(ids) / min(on), len(ids) / min(off)
            print(f"{name:8}{part:11}{len(ids):>8}{unsure.size / len(ids):>9.1%}{rerun / len(ids):>7.2%}"
                  f"{rate_on:>15.1f}{rate_off:>11.1f}{rate_on / rate_off:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
