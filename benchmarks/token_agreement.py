"""How often ONNX Runtime and PyTorch tokenize a window differently, and how reproducible each is.

Merges are discrete: two candidate merges whose scores differ by less than the float rounding
noise between the two runtimes (different matmul kernels sum in different orders) can be chosen
the other way. The backends therefore follow the float64 tokenizer's plan wherever a merge gap is
below CERTAIN_MARGIN (engine/merge_plan.py). This counts, over every window of a real region on
both strands, the windows whose token map (base -> token) differs between the backends as
inference runs them ("torch vs onnx") and as the float32 graphs alone decide ("raw"), the share
of windows checked against the float64 plan and the share run again; then repeats each backend
on the same windows to check it agrees with itself: at one intra-op thread (what inference uses
on CPU), and at --threads and another batch size for ONNX Runtime.

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


def raw_outputs(backend, ids: np.ndarray, batch: int):
    """(token maps, merge margins, merge plans) of the float32 graph deciding every merge itself."""
    from mergedna_cli.engine.merge_plan import no_plan

    outs = [backend.run_with_plan(ids[i:i + batch], None, no_plan(ids[i:i + batch])) for i in range(0, len(ids), batch)]
    return (np.concatenate([o.base2tok for o in outs]), np.concatenate([o.merge_margin for o in outs]),
            np.concatenate([o.merge_plan for o in outs]))


def audit(torch_backend, onnx_backend, forward: np.ndarray, batch: int, certain: float) -> None:
    from mergedna_cli.alphabet import reverse_complement

    print(f"{'strand':8}{'windows':>9}{'backend':>9}{'f32 plan != f64':>17}{'largest f32 gap among them':>28}"
          f"{'checked':>9}")
    for strand, ids in (("forward", forward), ("reverse", reverse_complement(forward))):
        reference = np.concatenate([torch_backend.reference_plan(ids[i:i + batch]) for i in range(0, len(ids), batch)])
        for name, backend in (("torch", torch_backend), ("onnx", onnx_backend)):
            _, margin, plan = raw_outputs(backend, ids, batch)
            wrong = (plan != reference).any(1)
            worst = f"{margin[wrong].max():.2e}" if wrong.any() else "-"
            print(f"{strand:8}{len(ids):>9}{name:>9}{int(wrong.sum()):>17}{worst:>28}{np.mean(margin < certain):>9.1%}",
                  flush=True)


def differing(a: np.ndarray, b: np.ndarray) -> list[int]:
    return [int(i) for i in np.nonzero((a != b).any(1))[0]]


def main() -> None:
    from mergedna_cli.alphabet import reverse_complement
    from mergedna_cli.engine.backends import OnnxBackend, TorchBackend
    from mergedna_cli.engine.merge_plan import CERTAIN_MARGIN
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
    ap.add_argument("--audit", action="store_true",
                    help="instead: the float64 plan of every window, and for each backend the windows whose "
                         "float32 plan differs from it and the largest float32 merge gap among them (the "
                         "check is sound while that stays below CERTAIN_MARGIN)")
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
          f"{len(forward)} windows of {context} per strand | graph {graph} | "
          f"CERTAIN_MARGIN {CERTAIN_MARGIN:g}")
    if args.audit:
        return audit(torch_1, onnx_1, forward, args.batch_size, CERTAIN_MARGIN)
    print(f"{'strand':8}{'windows':>9}{'torch vs onnx':>15}{'raw':>6}{'checked':>9}{'rerun':>7}{'torch x2':>10}"
          f"{'onnx x2':>9}{'onnx @' + str(args.threads) + ' thr':>13}{'onnx b' + str(args.batch_size // 4):>9}"
          "  windows that differ (torch vs onnx; raw)")
    for strand, ids in (("forward", forward), ("reverse", reverse_complement(forward))):
        t1, o1 = token_maps(torch_1, ids, args.batch_size), token_maps(onnx_1, ids, args.batch_size)
        cross = differing(t1, o1)
        raw_t, margin, plan32 = raw_outputs(torch_1, ids, args.batch_size)
        raw_o = raw_outputs(onnx_1, ids, args.batch_size)[0]
        raw = differing(raw_t, raw_o)
        checked = np.flatnonzero(margin < CERTAIN_MARGIN)
        rerun = int((torch_1.reference_plan(ids[checked]) != plan32[checked]).any(1).sum()) if checked.size else 0
        t_repeat = len(differing(t1, token_maps(torch_1, ids, args.batch_size)))
        o_repeat = len(differing(o1, token_maps(onnx_1, ids, args.batch_size)))
        n_threads = len(differing(t1, token_maps(onnx_n, ids, args.batch_size)))
        n_batch = len(differing(t1, token_maps(onnx_1, ids, max(1, args.batch_size // 4))))
        print(f"{strand:8}{len(ids):>9}{len(cross):>15}{len(raw):>6}{checked.size / len(ids):>9.1%}"
              f"{rerun / len(ids):>7.2%}{t_repeat:>10}{o_repeat:>9}{n_threads:>13}{n_batch:>9}  {cross[:10]}; {raw[:10]}")
    print("raw: the float32 graphs deciding every merge; checked: windows whose merge gap was below "
          "CERTAIN_MARGIN (float64 plan computed); rerun: windows whose float32 plan differed from it "
          "(torch's float32). torch x2 / onnx x2: windows whose token map changed when the same windows "
          "ran again; onnx @N thr and onnx bK: ONNX Runtime at N intra-op threads, at batch K, vs torch")


if __name__ == "__main__":
    main()
