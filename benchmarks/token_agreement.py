"""How often ONNX Runtime and PyTorch tokenize a window differently, and how reproducible each is.

Merges are discrete: two candidate merges whose scores differ by less than the float rounding
noise between the two runtimes (different matmul kernels sum in different orders) can be chosen
the other way. This counts, over every window of a real region on both strands, the windows whose
token map (base -> token) differs between the backends, with the "tokens" graph (the learned
tokenizer alone), then repeats each backend on the same windows to check it agrees with itself:
at one intra-op thread (what inference uses on CPU), and at --threads for ONNX Runtime.

    python benchmarks/token_agreement.py [--model models/mergedna-small] [--start 42500000]
        [--bases 1000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from inference_speed import DEFAULT_FASTA, window_ids  # noqa: E402


def token_maps(backend, ids: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([backend.run(ids[i:i + batch]).base2tok for i in range(0, len(ids), batch)])


def differing(a: np.ndarray, b: np.ndarray) -> list[int]:
    return [int(i) for i in np.nonzero((a != b).any(1))[0]]


def main() -> None:
    from mergedna_cli.alphabet import reverse_complement
    from mergedna_cli.engine.backends import OnnxBackend, TorchBackend
    from mergedna_cli.engine.onnx_export import cached_onnx_path
    from mergedna_cli.io.reference import Reference
    from mergedna_cli.model_dirs import resolve_model_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    ap.add_argument("--fasta", default=str(DEFAULT_FASTA))
    ap.add_argument("--contig", default="chr17")
    ap.add_argument("--start", type=int, default=42_500_000, help="0-based region start")
    ap.add_argument("--bases", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of the multi-thread check")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--graph", default=None, help="tokens graph to test (default: the model's own)")
    args = ap.parse_args()

    model = str(resolve_model_dir(args.model))
    graph = Path(args.graph) if args.graph else cached_onnx_path(model, "tokens")
    if not graph.is_file():
        sys.exit(f"no tokens graph at {graph}: run `mergedna export-onnx` or any --backend onnx command first")
    torch_1 = TorchBackend(model, device="cpu", threads=1, part="tokens")
    onnx_1 = OnnxBackend(graph, torch_1.config, "cpu", threads=1)
    onnx_n = OnnxBackend(graph, torch_1.config, "cpu", threads=args.threads)
    context = torch_1.config.context
    reference = Reference(args.fasta)
    forward = window_ids(reference, args.contig, args.start, args.start + args.bases, context).astype(np.int64)
    print(f"model {model} | {args.contig}:{args.start + 1:,}-{args.start + args.bases:,} | "
          f"{len(forward)} windows of {context} per strand | graph {graph}")
    print(f"{'strand':8}{'windows':>9}{'torch vs onnx':>15}{'share':>9}{'torch x2':>10}{'onnx x2':>9}"
          f"{'onnx x2 @' + str(args.threads) + ' thr':>16}  windows that differ (torch vs onnx)")
    for strand, ids in (("forward", forward), ("reverse", reverse_complement(forward))):
        t1, o1 = token_maps(torch_1, ids, args.batch_size), token_maps(onnx_1, ids, args.batch_size)
        cross = differing(t1, o1)
        t_repeat = len(differing(t1, token_maps(torch_1, ids, args.batch_size)))
        o_repeat = len(differing(o1, token_maps(onnx_1, ids, args.batch_size)))
        n_first = token_maps(onnx_n, ids, args.batch_size)
        n_repeat = len(differing(n_first, token_maps(onnx_n, ids, args.batch_size)))
        print(f"{strand:8}{len(ids):>9}{len(cross):>15}{len(cross) / len(ids):>9.2%}{t_repeat:>10}"
              f"{o_repeat:>9}{n_repeat:>16}  {cross[:10]}")
    print("torch x2 / onnx x2: windows whose token map changed when the same windows ran again "
          "(one intra-op thread, as inference runs on CPU)")


if __name__ == "__main__":
    main()
