"""Why CPU batches run as one slice per thread (engine/parallel.py): windows/s of one backend call
with N intra-op threads vs N slices of the batch, each on one intra-op thread, interleaved.

    python benchmarks/slicing_speed.py --model models/mergedna-small --threads 2 --part masked \
        --backend torch|onnx

On an idle machine the two are close; the slices hold up when another process competes for the
cores, where OpenMP's per-operator barriers wait for a descheduled sibling thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/mergedna-small")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--part", default="masked", choices=["full", "embedding", "masked", "tokens"])
    ap.add_argument("--batch-sizes", default="16,32")
    ap.add_argument("--windows", type=int, default=128, help="windows per timed cell")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    args = ap.parse_args()

    import torch

    from mergedna_cli.engine.backends import OnnxBackend, TorchBackend
    from mergedna_cli.engine.onnx_export import onnx_file_name
    from mergedna_cli.engine.parallel import SlicedBackend
    from mergedna_cli.model.files import load_config

    if args.backend == "torch":  # one model; torch's thread count is set per timed call below
        backend = TorchBackend(args.model, device="cpu", threads=args.threads, part=args.part)
        sliced = SlicedBackend(backend, args.threads)
    else:  # ONNX Runtime fixes a session's threads when it is made: one session of each kind
        graph, config = Path(args.model) / onnx_file_name(args.part), load_config(args.model)
        backend = OnnxBackend(graph, config, "cpu", threads=args.threads)
        sliced = SlicedBackend(OnnxBackend(graph, config, "cpu", threads=1), args.threads)
    context = backend.config.context
    rng = np.random.default_rng(0)

    def rate(runner, threads: int, batch: int) -> float:
        torch.set_num_threads(threads)
        batches = [rng.integers(0, 4, (batch, context)) for _ in range(max(1, args.windows // batch))]
        query = np.full((batch, 1), context // 2) if args.part == "masked" else None
        start = time.perf_counter()
        for ids in batches:
            runner.run(ids, query)
        return len(batches) * batch / (time.perf_counter() - start)

    rate(backend, args.threads, 2)  # warm-up
    print(f"{args.model}, {args.part} graph, {args.backend}, {args.threads} threads; windows/s, "
          f"best of {args.repeats}")
    print(f"{'batch':>6} {'1 call x ' + str(args.threads) + ' threads':>22} "
          f"{str(args.threads) + ' slices x 1 thread':>22} {'ratio':>7}")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        whole, split = 0.0, 0.0
        for _ in range(args.repeats):  # interleaved, so other load hits both alike
            whole = max(whole, rate(backend, args.threads, batch))
            split = max(split, rate(sliced, 1, batch))
        print(f"{batch:>6} {whole:>22.1f} {split:>22.1f} {split / whole:>6.2f}x")


if __name__ == "__main__":
    main()
