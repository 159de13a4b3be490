"""Inference speed on this CPU: PyTorch eager vs ONNX Runtime, at several batch sizes, in one run.

Per backend (torch, onnx) and batch size, on real GRCh38 sequence (chr17, BRCA1 region):

  raw-full       backend.run with the "full" graph (log-probabilities too) on the windows the
                 engine cuts from the region, timed around run() only:
                 bases/s = windows x context / seconds (flanks included: every base the model sees).
  raw-embedding  the same with the "embedding" graph (stops after the latent encoder).
  embed-forward  Engine.embed over the region with the "embedding" graph (what `mergedna embed`
  embed-both     runs: fetch, tile, batch, run, unmerge, pool) for strands forward and both
                 (both runs the model on 2x the windows): bases/s = region bases / seconds.

Agreement, torch vs onnx (all forward windows, at the largest batch size): max |diff| of per-base
log-probabilities (full graph), of real token vectors (both graphs), windows whose token maps
differ; and max |diff| of the pooled embeddings from every embed cell. Peak RSS is the process
peak so far (ru_maxrss), which covers every backend loaded so far; run with --backends torch or
--backends onnx for one backend alone (torch is imported either way: the package imports it even
for ONNX). The ONNX graphs are exported (and parity-checked) on first use, cached under
$MERGEDNA_CACHE; that time is reported, not counted in any speed.

    python benchmarks/inference_speed.py [--model DIR] [--threads 2] [--batch-sizes 1,16,32]
        [--bases 100000] [--repeats 1] [--json OUT]

`--ort-variants nospin,all,...` also times the ONNX graphs under other ONNX Runtime session
settings (fresh sessions on the same files; the package is not changed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FASTA = (REPO.parent / "shared" / "data" / "grch38_chr17_brca1_region"
                 / "GRCh38_chr17_brca1_region.fa.gz")
PARTS = ("full", "embedding")
MODES = ("raw-full", "raw-embedding", "embed-forward", "embed-both")


# -- memory -----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Process peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def rss_now_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return float("nan")


# -- backends ---------------------------------------------------------------------------------
class OrtVariant:
    """The package's ONNX graph in a fresh ONNX Runtime session with other settings; runs exactly
    as OnnxBackend does (same .session/.config/.outputs, same run()).

    variant: dash-joined words among
      all, extended, basic  graph_optimization_level (the package uses extended)
      sln                   keep the RMSNorm fusion (SimplifiedLayerNormFusion) the package disables
      nospin                session.intra_op.allow_spinning = 0 (idle pool threads sleep)
    e.g. nospin, basic, all-sln. Otherwise as the package: intra_op = threads, inter_op = 1, CPU.
    """

    def __init__(self, onnx_path: Path, config, threads: int, variant: str):
        import onnxruntime as ort

        from mergedna_cli.engine.backends import DISABLED_OPTIMIZERS, OUTPUTS

        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
        words = variant.split("-")
        unknown = set(words) - set(levels) - {"nospin", "sln"}
        if unknown:
            raise SystemExit(f"--ort-variants: unknown setting(s) {', '.join(sorted(unknown))} "
                             f"in '{variant}'")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        for word in words:
            if word in levels:
                options.graph_optimization_level = levels[word]
        if "nospin" in words:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        disabled = [name for name in DISABLED_OPTIMIZERS
                    if not ("sln" in words and name == "SimplifiedLayerNormFusion")]
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=disabled or None)
        self.config = config
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        self.part = next(part for part, names in OUTPUTS.items() if tuple(names) == self.outputs)

    def run(self, ids: np.ndarray):
        from mergedna_cli.engine.backends import OnnxBackend

        return OnnxBackend.run(self, ids)


def load_backends(model_dir: Path, names: list[str], threads: int, variants: list[str]):
    """{name: {part: backend}} and load info (seconds, RSS after each load, ONNX paths)."""
    from mergedna_cli.engine.onnx_export import cached_onnx_path
    from mergedna_cli.engine.load import make_backend

    backends: dict[str, dict] = {}
    info: dict = {}
    for name in names:
        backends[name] = {}
        for part in PARTS:
            key = f"{name}/{part}"
            if name == "onnx":
                path = cached_onnx_path(model_dir, part)
                info[f"onnx_path/{part}"], info[f"onnx_exported_now/{part}"] = str(path), not path.is_file()
            start = time.perf_counter()
            backends[name][part] = make_backend(str(model_dir), name, "cpu", threads, part=part,
                                                log=lambda msg: print(f"  {msg}", flush=True))
            info[f"load_s/{key}"] = round(time.perf_counter() - start, 2)
            info[f"rss_after_load_mb/{key}"] = round(rss_now_mb(), 1)
    if variants:
        if "onnx" not in backends:
            raise SystemExit("--ort-variants needs onnx among --backends")
        for variant in variants:
            backends[f"onnx[{variant}]"] = {
                part: OrtVariant(Path(info[f"onnx_path/{part}"]), backends["onnx"][part].config,
                                 threads, variant) for part in PARTS}
    return backends, info


# -- inputs and timing ------------------------------------------------------------------------
def window_ids(reference, contig: str, start: int, end: int, context: int) -> np.ndarray:
    """The (windows, context) ids Engine.embed runs for [start, end) on the forward strand."""
    from mergedna_cli.engine.windows import default_flank, tile

    windows = tile(contig, start, end, context, default_flank(context))
    return np.stack([reference.fetch_ids(w.contig, w.start, w.end) for w in windows])


def time_raw(backend, ids: np.ndarray, batch: int) -> tuple[float, float]:
    """Wall and CPU seconds spent inside backend.run over all windows in batches of `batch`."""
    backend.run(ids[:batch])  # warm-up at this shape (ONNX Runtime plans memory per shape)
    wall = cpu = 0.0
    for lo in range(0, len(ids), batch):
        chunk = ids[lo:lo + batch]
        w0, c0 = time.perf_counter(), time.process_time()
        backend.run(chunk)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return wall, cpu


def time_embed(backend, reference, region, batch: int, strands: str) -> tuple[float, float, np.ndarray]:
    from mergedna_cli.engine.engine import Engine

    engine = Engine(backend, reference, batch_size=batch, strands=strands)
    w0, c0 = time.perf_counter(), time.process_time()
    embedding = next(iter(engine.embed([region]))).embedding
    return time.perf_counter() - w0, time.process_time() - c0, embedding


def compare_raw(a, b, ids: np.ndarray, batch: int) -> dict:
    """Run every window through both backends: max |diff| of per-base log-probabilities (when
    both have them) and of real token vectors, and how many windows got a different token map.

    The tokenizer makes discrete choices (which adjacent pairs merge), so a near-tie between two
    merge scores can flip on float rounding; such windows then legitimately differ by much more
    than rounding. Diffs are reported over all windows and over windows with identical tokens."""
    lp = vec = lp_same = vec_same = 0.0
    has_lp = True
    differ = []
    for lo in range(0, len(ids), batch):
        x, y = a.run(ids[lo:lo + batch]), b.run(ids[lo:lo + batch])
        same = ((x.base2tok == y.base2tok).all(1) & (x.token_sizes == y.token_sizes).all(1)
                & (x.token_mask == y.token_mask).all(1))
        has_lp = has_lp and x.log_probs is not None and y.log_probs is not None
        d_lp = (np.abs(x.log_probs - y.log_probs).max(axis=(1, 2)) if has_lp
                else np.zeros(len(x.base2tok)))
        d_vec = (np.abs(x.token_vectors - y.token_vectors) * x.token_mask[..., None]).max(axis=(1, 2))
        lp, vec = max(lp, float(d_lp.max())), max(vec, float(d_vec.max()))
        if same.any():
            lp_same = max(lp_same, float(d_lp[same].max()))
            vec_same = max(vec_same, float(d_vec[same].max()))
        differ += [lo + int(i) for i in np.flatnonzero(~same)]
    out = {"windows": len(ids), "windows_tokens_differ": len(differ), "differing_windows": differ[:20],
           "max_abs_token_vector": vec, "max_abs_token_vector_same_tokens": vec_same}
    if has_lp:
        out.update(max_abs_log_prob=lp, max_abs_log_prob_same_tokens=lp_same)
    return out


# -- main -------------------------------------------------------------------------------------
def parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="model directory (default: the shipped model, models/mergedna-small)")
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA), help="reference FASTA (default: %(default)s)")
    parser.add_argument("--contig", default="chr17")
    parser.add_argument("--start", type=int, default=43_000_000,
                        help="0-based region start (real sequence spans chr17:42,425,000-43,600,000)")
    parser.add_argument("--bases", type=int, default=100_000, help="region length (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1,16,32")
    parser.add_argument("--repeats", type=int, default=1, help="timings per cell; the best is kept")
    parser.add_argument("--backends", default="torch,onnx", help="torch,onnx or one of them")
    parser.add_argument("--ort-variants", default="",
                        help="extra ONNX Runtime settings to time, comma-separated, each dash-joined "
                             "words among all, extended, basic, sln, nospin (e.g. nospin,basic)")
    parser.add_argument("--json", default=None, help="write all numbers to this JSON file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)  # also for the ONNX export's parity check
    import onnxruntime as ort

    from mergedna_cli.io.reference import Reference
    from mergedna_cli.io.regions import Region
    from mergedna_cli.model_dirs import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    batch_sizes = parse_ints(args.batch_sizes)
    names = [n for n in args.backends.split(",") if n]
    if set(names) - {"torch", "onnx"}:
        raise SystemExit("--backends: torch, onnx or both")
    variants = [v for v in args.ort_variants.split(",") if v]
    reference = Reference(args.fasta)
    contig = reference.require(args.contig)
    end = args.start + args.bases
    if end > reference.lengths[contig]:
        raise SystemExit(f"{contig}:{args.start}-{end} runs past the contig end "
                         f"({reference.lengths[contig]})")
    region = Region(args.contig, args.start, end, "bench")

    print(f"model {model_dir} | {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} thread(s) | torch {torch.__version__}, onnxruntime {ort.__version__}", flush=True)
    t_load = time.perf_counter()
    backends, info = load_backends(model_dir, names, args.threads, variants)
    load_s = time.perf_counter() - t_load
    config = next(iter(backends.values()))["full"].config
    ids = window_ids(reference, contig, args.start, end, config.context)
    print(f"region {contig}:{args.start + 1:,}-{end:,} ({args.bases:,} bases); context {config.context}, "
          f"{len(ids)} windows per strand = {ids.size:,} model bases; loading took {load_s:.1f} s ("
          + ", ".join(f"{k.split('/', 1)[1]} {v}" for k, v in info.items() if k.startswith("load_s/")) + ")")
    for part in PARTS:
        if info.get(f"onnx_exported_now/{part}"):
            print(f"  (ONNX {part} graph exported and parity-checked now, cached at "
                  f"{info[f'onnx_path/{part}']})")

    rows: list[dict] = []
    embeddings: dict[tuple, np.ndarray] = {}

    def record(backend: str, batch: int, mode: str, wall: float, cpu: float, bases: int,
               windows: int, all_seconds: list) -> None:
        rows.append({"backend": backend, "batch": batch, "mode": mode, "seconds": wall, "bases": bases,
                     "windows": windows, "bases_per_s": bases / wall, "windows_per_s": windows / wall,
                     "cpu_seconds": cpu, "cpu_per_wall": cpu / wall,
                     "bases_per_cpu_s": bases / max(cpu, 1e-9),
                     "peak_rss_mb": peak_rss_mb(), "rss_now_mb": rss_now_mb(), "all_seconds": all_seconds})
        r = rows[-1]
        print(f"  {backend:<20}{batch:>6}  {mode:<15}{wall:>8.2f}{r['windows_per_s']:>10,.1f}"
              f"{r['bases_per_s']:>12,.0f}{r['cpu_per_wall']:>9.2f}{r['bases_per_cpu_s']:>12,.0f}"
              f"{r['peak_rss_mb']:>9.0f}", flush=True)

    print("\n  raw-*: bases = windows x context (flanks included); embed-*: bases = region bases, "
          "embedding graph\n  (embed-both runs 2x the windows); cpu/wall: process CPU seconds per "
          "second (ideal = threads);\n  peak MB = process peak so far")
    print(f"  {'backend':<20}{'batch':>6}  {'mode':<15}{'seconds':>8}{'windows/s':>10}{'bases/s':>12}"
          f"{'cpu/wall':>9}{'bases/cpu-s':>12}{'peak MB':>9}")
    # Repeats are the outer loop, so every backend's samples spread over the whole run (other load
    # on the machine then biases no backend); each cell keeps its best (shortest) sample.
    samples: dict[tuple, list] = defaultdict(list)
    t_bench = time.perf_counter()
    for rep in range(args.repeats):
        last = rep == args.repeats - 1
        if args.repeats > 1:
            print(f"  -- pass {rep + 1}/{args.repeats}" + (" (best of all passes below)" if last else ""),
                  flush=True)
        for batch in batch_sizes:
            for name, parts in backends.items():  # one backend at a time: no thread-pool overlap
                for mode in MODES:
                    key = (name, batch, mode)
                    if mode.startswith("raw-"):
                        samples[key].append(time_raw(parts[mode[4:]], ids, batch))
                        bases, windows = ids.size, len(ids)
                    else:
                        strand = mode.split("-", 1)[1]
                        wall, cpu, emb = time_embed(parts["embedding"], reference, region, batch, strand)
                        samples[key].append((wall, cpu))
                        if wall <= min(w for w, _ in samples[key]):
                            embeddings[(name, batch, strand)] = emb
                        bases, windows = args.bases, len(ids) * (2 if strand == "both" else 1)
                    if last:
                        wall, cpu = min(samples[key], key=lambda t: t[0])
                        record(name, batch, mode, wall, cpu, bases, windows, [t[0] for t in samples[key]])
    bench_s = time.perf_counter() - t_bench

    # -- agreement ------------------------------------------------------------------------------
    t_agree = time.perf_counter()
    agreement: dict = {"raw": [], "embed": []}
    others = [n for n in backends if n != "torch"] if "torch" in backends else []
    if others:
        check_batch = max(batch_sizes)
        print(f"\nagreement with PyTorch: raw = all {len(ids)} forward windows at batch {check_batch}, "
              f"token vectors compared where the token mask is set; embed = pooled embeddings")
        for other in others:
            for part in PARTS:
                entry = {"backend": other, "vs": "torch", "part": part, "batch": check_batch,
                         **compare_raw(backends["torch"][part], backends[other][part], ids, check_batch)}
                agreement["raw"].append(entry)
                lp = (f"max |log p diff| {entry['max_abs_log_prob']:.1e} "
                      f"({entry['max_abs_log_prob_same_tokens']:.1e} where tokens agree), "
                      if "max_abs_log_prob" in entry else "")
                print(f"  {other:<20}{part:<10} token maps differ in {entry['windows_tokens_differ']}/"
                      f"{entry['windows']} windows; {lp}max |token vector diff| "
                      f"{entry['max_abs_token_vector']:.1e} "
                      f"({entry['max_abs_token_vector_same_tokens']:.1e})")
            for batch in batch_sizes:
                for strand in ("forward", "both"):
                    a, b = embeddings.get(("torch", batch, strand)), embeddings.get((other, batch, strand))
                    if a is not None and b is not None:
                        agreement["embed"].append({"backend": other, "vs": "torch", "batch": batch,
                                                   "strands": strand,
                                                   "max_abs_embedding": float(np.abs(a - b).max())})
            cells = [e for e in agreement["embed"] if e["backend"] == other]
            print(f"  {other:<20}{'embed':<10} max |embedding diff| " + ", ".join(
                f"b{e['batch']}/{e['strands']} {e['max_abs_embedding']:.1e}" for e in cells))
    if len(batch_sizes) > 1:  # same backend, other batch size: batch invariance
        print(f"\nbatch-size invariance: pooled embeddings at batch {', '.join(map(str, batch_sizes[1:]))} "
              f"vs batch {batch_sizes[0]}")
        for name in backends:
            diffs = [float(np.abs(embeddings[(name, b, s)] - embeddings[(name, batch_sizes[0], s)]).max())
                     for b in batch_sizes[1:] for s in ("forward", "both")]
            print(f"  {name:<20}{'embed':<10} max |embedding diff| {max(diffs):.1e}")
    agree_s = time.perf_counter() - t_agree

    # -- ratios ---------------------------------------------------------------------------------
    ratios = []
    if others:
        for key, title in (("bases_per_s", "ONNX Runtime / PyTorch eager speed, wall clock"),
                           ("bases_per_cpu_s", "the same per process CPU-second (less sensitive to other "
                                               "load on the machine, but counts spin-waiting threads)")):
            speed = {(r["backend"], r["batch"], r["mode"]): r[key] for r in rows}
            print(f"\n{title}")
            print(f"  {'backend':<20}{'batch':>6}" + "".join(f"{m:>15}" for m in MODES))
            for name in others:
                for batch in batch_sizes:
                    cells = {m: speed[(name, batch, m)] / speed[("torch", batch, m)] for m in MODES}
                    ratios.append({"backend": name, "vs": "torch", "batch": batch, "metric": key, **cells})
                    print(f"  {name:<20}{batch:>6}" + "".join(f"{cells[m]:>14.2f}x" for m in MODES))
    print(f"\nprocess peak RSS {peak_rss_mb():.0f} MB (ru_maxrss: the peak of this whole process, "
          f"all backends loaded: {', '.join(backends)}, 2 graphs each); RSS now {rss_now_mb():.0f} MB")
    print(f"time: load {load_s:.1f} s, timed cells {bench_s:.1f} s, agreement {agree_s:.1f} s")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": str(model_dir), "fasta": args.fasta, "region": f"{contig}:{args.start}-{end}",
            "bases": args.bases, "windows_per_strand": len(ids), "context": config.context,
            "threads": args.threads, "cpus": os.cpu_count(), "repeats": args.repeats,
            "torch": torch.__version__, "onnxruntime": ort.__version__, "load": info,
            "seconds": {"load": load_s, "timed": bench_s, "agreement": agree_s},
            "rows": rows, "ratios": ratios, "agreement": agreement,
            "process_peak_rss_mb": peak_rss_mb()}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
