"""Embedding speed on this CPU: PyTorch eager vs ONNX Runtime, at several batch sizes, in one run.

Two measurements per backend and batch size, on real GRCh38 sequence (chr17, BRCA1 region):

  raw    backend.run on the windows the engine would cut from the region, timed around run() only:
         bases/s = windows x context / seconds (flanks included: every base the model sees).
  embed  Engine.embed over the region (fetch, tile, batch, run, unmerge, pool), for strands
         'forward' and 'both' (both runs the model on 2x the windows): bases/s = region bases / s.

Both backends run the same windows and are checked against each other (max |diff| of per-base
log-probabilities, token vectors and pooled embeddings, token maps identical). Peak RSS is the
process peak so far (ru_maxrss), which covers both backends when both are loaded; run with
--backends torch or --backends onnx for the RSS of one backend alone (torch is imported either
way: the package imports it even for the ONNX backend).

    python benchmarks/inference_speed.py [--model DIR] [--threads 2] [--batch-sizes 1,4,16,32]
        [--bases 200000] [--repeats 1] [--json OUT]

`--ort-variants` times extra ONNX Runtime session settings (graph optimisation level, thread
spinning) next to the package default, and `--profile-ort N` profiles N batches with ONNX
Runtime's profiler and prints the op types that dominate; neither changes the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FASTA = (REPO.parent / "shared" / "data" / "grch38_chr17_brca1_region"
                 / "GRCh38_chr17_brca1_region.fa.gz")


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


# -- inputs -----------------------------------------------------------------------------------
def window_ids(reference, contig: str, start: int, end: int, context: int) -> np.ndarray:
    """The (windows, context) uint8 ids Engine.embed runs for [start, end) on the forward strand."""
    from mergedna_cli.engine.windows import default_flank, tile

    windows = tile(contig, start, end, context, default_flank(context))
    return np.stack([reference.fetch_ids(w.contig, w.start, w.end) for w in windows])


def regions_for(contig: str, start: int, bases: int, region_size: int):
    from mergedna_cli.io.regions import Region

    size = region_size or bases
    return [Region(contig, lo, min(lo + size, start + bases), f"r{i}")
            for i, lo in enumerate(range(start, start + bases, size))]


# -- backends ---------------------------------------------------------------------------------
TRUNK_OUTPUTS = ["token_vectors", "token_sizes", "token_mask", "base2tok"]


def trunk_onnx(path: str) -> str:
    """The exported graph cut down to what `embed` uses (tokenizer + latent encoder), as a
    temporary file (removed at exit). ONNX Runtime runs every node of a graph whatever outputs are
    fetched (onnxruntime issues #16483, #27615), so skipping the decoders needs another graph."""
    import atexit

    import onnx.utils

    out = Path(tempfile.gettempdir()) / f"mergedna_bench_trunk_{os.getpid()}.onnx"
    if not out.is_file():
        onnx.utils.extract_model(path, str(out), ["ids"], TRUNK_OUTPUTS)
        atexit.register(out.unlink, missing_ok=True)
    return str(out)


class _TrunkSession:
    """Wraps an ORT session of the trunk graph so that OnnxBackend.run gets the 5 outputs it
    expects (log_probs is an empty (B, 0, 4) array: `embed` never reads it)."""

    def __init__(self, session):
        self.session = session

    def run(self, _names, feed):
        vectors, sizes, mask, base2tok = self.session.run(TRUNK_OUTPUTS, feed)
        return [np.zeros((len(vectors), 0, 4), np.float32), vectors, sizes, mask, base2tok]


class TorchTrunk:
    """PyTorch eager, embedding path only: tokenizer + latent encoder, no decoders (what an
    embedding-only graph would run). Mirrors MergeDNA.forward's outputs."""

    name = "torch[trunk]"

    def __init__(self, base):
        self.model, self.config, self.device = base.model, base.config, base.device

    def run(self, ids: np.ndarray):
        import torch

        from mergedna_cli.engine.backends import BackendOutput

        with torch.inference_mode():
            tokens = self.model.tokenize(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)))
            h, _ = self.model.encode_latent(tokens)
            valid = tokens.state.valid
            sizes = torch.where(valid, tokens.state.size, torch.zeros_like(tokens.state.size)).round().long()
            base2tok = tokens.base2tok.masked_fill(~tokens.base_valid, -1)
        return BackendOutput(np.zeros((len(ids), 0, 4), np.float32), h.float().numpy(), sizes.numpy(),
                             valid.numpy(), base2tok.numpy())


def ort_variant(base, threads: int, variant: str):
    """An OnnxBackend on the same graph with other settings (the package is not changed).

    variant: dash-joined words among
      all          graph_optimization_level = ORT_ENABLE_ALL (set explicitly; it is also ORT's
                   default, which the package leaves in place)
      extended     ORT_ENABLE_EXTENDED
      basic        ORT_ENABLE_BASIC (no fusions such as SimplifiedLayerNormalization)
      nospin       session.intra_op.allow_spinning = 0 (idle pool threads sleep instead of spinning)
      trunk        the graph cut to the outputs `embed` uses (no decoders); compared with torch[trunk]
    e.g. nospin, basic, trunk, trunk-nospin. Everything else as the package: intra_op = threads,
    inter_op = 1, CPU provider.
    """
    import onnxruntime as ort

    from mergedna_cli.engine.backends import OnnxBackend

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    words = variant.split("-")
    unknown = set(words) - set(levels) - {"nospin", "trunk"}
    if unknown:
        raise SystemExit(f"--ort-variants: unknown setting(s) {', '.join(sorted(unknown))} in '{variant}'")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for word in words:
        if word in levels:
            options.graph_optimization_level = levels[word]
    if "nospin" in words:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = trunk_onnx(base.onnx_path) if "trunk" in words else base.onnx_path
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    backend = OnnxBackend.__new__(OnnxBackend)
    backend.session = _TrunkSession(session) if "trunk" in words else session
    backend.config = base.config
    backend.name = f"onnx[{variant}]"
    backend.onnx_path = path
    return backend


def load_backends(model_dir, names: list[str], threads: int, variants: list[str]):
    """name -> backend. The ONNX graph is exported (and parity-checked) on first use; that time is
    reported, not counted in any speed."""
    from mergedna_cli.engine.onnx_export import cached_onnx_path
    from mergedna_cli.pipelines.backend_factory import make_backend

    backends, info = {}, {}
    for name in names:
        if name == "onnx":
            path = cached_onnx_path(model_dir)
            info["onnx_path"], info["onnx_exported_now"] = str(path), not path.is_file()
        start = time.perf_counter()
        backends[name] = make_backend(str(model_dir), name, "cpu", threads,
                                      log=lambda msg: print(f"  {msg}", flush=True))
        info[f"{name}_load_s"] = round(time.perf_counter() - start, 2)
        if name == "onnx":
            backends[name].onnx_path = str(path)
        info[f"rss_after_{name}_load_mb"] = round(rss_now_mb(), 1)
    if variants:
        if "onnx" not in backends:
            raise SystemExit("--ort-variants needs onnx among --backends")
        if "torch" in backends and any("trunk" in v.split("-") for v in variants):
            backends["torch[trunk]"] = TorchTrunk(backends["torch"])
        for variant in variants:
            backends[f"onnx[{variant}]"] = ort_variant(backends["onnx"], threads, variant)
    return backends, info


def baseline_for(name: str, backends) -> str | None:
    """What a backend is compared with: torch, or torch[trunk] for the trunk-only graphs."""
    if name.startswith("torch"):
        return None
    trunk = "trunk" in name.strip("]").split("[")[-1].split("-")
    base = "torch[trunk]" if trunk else "torch"
    return base if base in backends else None


# -- timing -----------------------------------------------------------------------------------
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


def time_embed(backend, reference, regions, batch: int, strands: str) -> tuple[float, float, np.ndarray]:
    from mergedna_cli.engine.engine import Engine

    engine = Engine(backend, reference, batch_size=batch, strands=strands)
    w0, c0 = time.perf_counter(), time.process_time()
    embeddings = np.stack([item.embedding for item in engine.embed(regions)])
    return time.perf_counter() - w0, time.process_time() - c0, embeddings


def compare_raw(a, b, ids: np.ndarray, batch: int) -> dict:
    """Run every window through both backends (in batches of `batch`): max |diff| of per-base
    log-probabilities and real token vectors, and how many windows got a different token map.

    The tokenizer makes discrete choices (which adjacent pairs merge), so a near-tie between two
    merge scores can flip on float rounding; such windows then legitimately differ by much more
    than rounding. Diffs are reported over all windows and over windows with identical tokens."""
    lp = vec = lp_same = vec_same = 0.0
    differ = []
    for lo in range(0, len(ids), batch):
        x, y = a.run(ids[lo:lo + batch]), b.run(ids[lo:lo + batch])
        same = ((x.base2tok == y.base2tok).all(1) & (x.token_sizes == y.token_sizes).all(1)
                & (x.token_mask == y.token_mask).all(1))
        if x.log_probs.shape == y.log_probs.shape and x.log_probs.size:
            d_lp = np.abs(x.log_probs - y.log_probs).max(axis=(1, 2))
        else:  # a trunk-only graph has no log-probabilities
            d_lp = np.zeros(len(x.base2tok))
        d_vec = (np.abs(x.token_vectors - y.token_vectors) * x.token_mask[..., None]).max(axis=(1, 2))
        lp, vec = max(lp, float(d_lp.max())), max(vec, float(d_vec.max()))
        if same.any():
            lp_same = max(lp_same, float(d_lp[same].max()))
            vec_same = max(vec_same, float(d_vec[same].max()))
        differ += [lo + int(i) for i in np.flatnonzero(~same)]
    return {"windows": len(ids), "windows_tokens_differ": len(differ), "differing_windows": differ[:20],
            "max_abs_log_prob": lp, "max_abs_token_vector": vec,
            "max_abs_log_prob_same_tokens": lp_same, "max_abs_token_vector_same_tokens": vec_same}


# -- ONNX Runtime profile -----------------------------------------------------------------------
def profile_ort(onnx_backend, ids: np.ndarray, batch: int, threads: int, batches: int, top: int = 15) -> list:
    """Run `batches` batches under ONNX Runtime's profiler; total kernel time per op type."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(onnx_backend.onnx_path, options,
                                       providers=["CPUExecutionProvider"])
        feed = lambda lo: {"ids": np.ascontiguousarray(ids[lo:lo + batch], dtype=np.int64)}  # noqa: E731
        session.run(None, feed(0))  # warm-up, excluded below by counting only the last runs
        for i in range(batches):
            session.run(None, feed((i * batch) % max(1, len(ids) - batch + 1)))
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(runs) > 1:  # drop the warm-up run's kernels
        first = runs[1]["ts"]
        events = [e for e in events if e.get("ts", 0) >= first]
        total_run = sum(e["dur"] for e in runs[1:])
    else:
        total_run = sum(e["dur"] for e in runs)
    per_op, count = defaultdict(float), defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] += e["dur"]
            count[op] += 1
    kernels = sum(per_op.values())
    rows = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    print(f"\nONNX Runtime profile: {batches} run(s) at batch {batch}, {threads} thread(s): "
          f"run time {total_run / 1e3:.1f} ms, kernel time {kernels / 1e3:.1f} ms "
          f"({100 * kernels / max(total_run, 1):.0f}% of run; the rest is scheduling/allocation)")
    print(f"  {'op type':<30}{'ms':>10}{'% kernels':>11}{'calls/run':>11}")
    out = []
    for op, dur in rows:
        print(f"  {op:<30}{dur / 1e3:>10.1f}{100 * dur / max(kernels, 1):>10.1f}%"
              f"{count[op] / max(batches, 1):>11.0f}")
        out.append({"op": op, "ms": dur / 1e3, "share": dur / max(kernels, 1),
                    "calls_per_run": count[op] / max(batches, 1)})
    return out


def torch_profile(torch_backend, ids: np.ndarray, batch: int, batches: int, top: int = 15) -> None:
    """Same for PyTorch eager (self CPU time per aten op), for comparison with the ORT profile."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch_backend.run(ids[:batch])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(batches):
            lo = (i * batch) % max(1, len(ids) - batch + 1)
            torch_backend.run(ids[lo:lo + batch])
    print(f"\nPyTorch eager profile: {batches} run(s) at batch {batch}, {torch.get_num_threads()} thread(s)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=34))


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
    parser.add_argument("--bases", type=int, default=200_000, help="region length (default: %(default)s)")
    parser.add_argument("--region-size", type=int, default=0,
                        help="cut the region into regions of this many bases for `embed` (0: one region)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1,4,16,32")
    parser.add_argument("--repeats", type=int, default=1, help="timings per cell; the best is kept")
    parser.add_argument("--backends", default="torch,onnx", help="torch,onnx or one of them")
    parser.add_argument("--strands", default="forward,both", help="embed strands to time (forward,both)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw backend.run timing")
    parser.add_argument("--no-embed", action="store_true", help="skip the end-to-end Engine.embed timing")
    parser.add_argument("--ort-variants", default="",
                        help="extra ONNX Runtime settings to time, comma-separated, each dash-joined "
                             "words among all, extended, basic, nospin, trunk (e.g. nospin,basic,trunk); "
                             "trunk also adds torch[trunk], the same cut in PyTorch")
    parser.add_argument("--profile-ort", type=int, default=0, metavar="N",
                        help="profile N batches (at the largest batch size) with ORT's and torch's profilers")
    parser.add_argument("--json", default=None, help="write all numbers to this JSON file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)  # also for the ONNX export's parity check
    import onnxruntime as ort

    from mergedna_cli.engine.windows import default_flank, tile
    from mergedna_cli.io.reference import Reference
    from mergedna_cli.model_dirs import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    batch_sizes = parse_ints(args.batch_sizes)
    names = [n for n in args.backends.split(",") if n]
    variants = [v for v in args.ort_variants.split(",") if v]
    strands = [s for s in args.strands.split(",") if s]
    reference = Reference(args.fasta)
    contig = reference.require(args.contig)
    end = args.start + args.bases
    if end > reference.lengths[contig]:
        raise SystemExit(f"{contig}:{args.start}-{end} runs past the contig end "
                         f"({reference.lengths[contig]})")

    print(f"model {model_dir} | {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} thread(s) | torch {torch.__version__}, onnxruntime {ort.__version__} (default "
          f"graph_optimization_level {ort.SessionOptions().graph_optimization_level.name})")
    backends, info = load_backends(model_dir, names, args.threads, variants)
    config = next(iter(backends.values())).config
    ids = window_ids(reference, contig, args.start, end, config.context)
    regions = regions_for(args.contig, args.start, args.bases, args.region_size)
    flank = default_flank(config.context)
    embed_windows = sum(len(list(tile(contig, r.start, r.end, config.context, flank))) for r in regions)
    print(f"region {contig}:{args.start + 1:,}-{end:,} ({args.bases:,} bases, {len(regions)} region(s)); "
          f"context {config.context}, {len(ids)} windows per strand = {ids.size:,} model bases; "
          f"loaded: " + ", ".join(f"{k}={v}" for k, v in info.items() if k.endswith("_s")))
    if info.get("onnx_exported_now"):
        print(f"  (ONNX graph exported and parity-checked now, cached at {info['onnx_path']})")

    rows: list[dict] = []
    embeddings: dict[tuple, np.ndarray] = {}

    def record(backend: str, batch: int, mode: str, wall: float, cpu: float, bases: int,
               windows: int) -> None:
        rows.append({"backend": backend, "batch": batch, "mode": mode, "seconds": wall, "bases": bases,
                     "windows": windows, "bases_per_s": bases / wall, "windows_per_s": windows / wall,
                     "cpu_seconds": cpu, "cpu_per_wall": cpu / wall, "bases_per_cpu_s": bases / cpu,
                     "peak_rss_mb": peak_rss_mb(), "rss_now_mb": rss_now_mb()})
        r = rows[-1]
        print(f"  {backend:<22}{batch:>6}  {mode:<14}{wall:>8.2f}{r['windows_per_s']:>10,.1f}"
              f"{r['bases_per_s']:>12,.0f}{r['cpu_per_wall']:>9.2f}{r['bases_per_cpu_s']:>12,.0f}"
              f"{r['peak_rss_mb']:>9.0f}", flush=True)

    print("\n  raw: bases = windows x context (flanks included); embed: bases = region bases "
          "(embed-both runs 2x the windows);\n  cpu/wall: process CPU seconds per second (ideal = "
          "threads; lower = waiting or competing); peak MB = process peak so far")
    print(f"  {'backend':<22}{'batch':>6}  {'mode':<14}{'seconds':>8}{'windows/s':>10}{'bases/s':>12}"
          f"{'cpu/wall':>9}{'bases/cpu-s':>12}{'peak MB':>9}")
    # Repeats are the outer loop, so every backend's samples spread over the whole run (other load
    # on the machine then biases no backend); each cell keeps its best (shortest) sample.
    samples: dict[tuple, list] = defaultdict(list)
    for rep in range(args.repeats):
        last = rep == args.repeats - 1
        if args.repeats > 1:
            print(f"  -- pass {rep + 1}/{args.repeats}" + (" (best of all passes below)" if last else ""),
                  flush=True)
        for batch in batch_sizes:
            for name, backend in backends.items():  # one backend at a time: no thread-pool overlap
                if not args.no_raw:
                    samples[(name, batch, "raw")].append(time_raw(backend, ids, batch))
                    if last:
                        wall, cpu = min(samples[(name, batch, "raw")], key=lambda t: t[0])
                        record(name, batch, "raw", wall, cpu, ids.size, len(ids))
                        rows[-1]["all_seconds"] = [t[0] for t in samples[(name, batch, "raw")]]
                for strand in ([] if args.no_embed else strands):
                    key = (name, batch, f"embed-{strand}")
                    samples[key].append(time_embed(backend, reference, regions, batch, strand))
                    if last:
                        wall, cpu, emb = min(samples[key], key=lambda t: t[0])
                        embeddings[(name, batch, strand)] = emb
                        record(name, batch, f"embed-{strand}", wall, cpu, args.bases,
                               embed_windows * (2 if strand == "both" else 1))
                        rows[-1]["all_seconds"] = [t[0] for t in samples[key]]
                        samples[key] = [(w, c) for w, c, _ in samples[key]]  # keep no embeddings

    # -- agreement ------------------------------------------------------------------------------
    agreement: dict = {"raw": [], "embed": []}
    pairs = [(n, baseline_for(n, backends)) for n in backends]
    pairs = [(n, b) for n, b in pairs if b is not None]
    if pairs:
        check_batch = max(batch_sizes)
        print(f"\nagreement with PyTorch: raw = all {len(ids)} forward windows at batch {check_batch} "
              f"(log p: 0 for trunk graphs, which have none); embed = pooled embeddings of all "
              f"{len(regions)} region(s)")
        for other, ref_name in pairs:
            entry = {"backend": other, "vs": ref_name, "batch": check_batch,
                     **compare_raw(backends[ref_name], backends[other], ids, check_batch)}
            agreement["raw"].append(entry)
            print(f"  {other:<22} raw: token maps differ in {entry['windows_tokens_differ']}/"
                  f"{entry['windows']} windows; max |log p diff| {entry['max_abs_log_prob']:.1e} "
                  f"({entry['max_abs_log_prob_same_tokens']:.1e} where tokens agree), max |token vector "
                  f"diff| {entry['max_abs_token_vector']:.1e} "
                  f"({entry['max_abs_token_vector_same_tokens']:.1e})")
            for batch in batch_sizes:
                for strand in strands:
                    a, b = embeddings.get((ref_name, batch, strand)), embeddings.get((other, batch, strand))
                    if a is not None and b is not None:
                        agreement["embed"].append({"backend": other, "vs": ref_name, "batch": batch,
                                                   "strands": strand,
                                                   "max_abs_embedding": float(np.abs(a - b).max())})
            cells = [e for e in agreement["embed"] if e["backend"] == other]
            if cells:
                print(f"  {other:<22} embed: max |embedding diff| " + ", ".join(
                    f"b{e['batch']}/{e['strands']} {e['max_abs_embedding']:.1e}" for e in cells))
    if len(batch_sizes) > 1 and embeddings:  # same backend, other batch size: batch invariance
        for name in backends:
            diffs = [float(np.abs(embeddings[(name, b, s)] - embeddings[(name, batch_sizes[0], s)]).max())
                     for b in batch_sizes[1:] for s in strands if (name, b, s) in embeddings]
            if diffs:
                print(f"  {name:<22} max |embedding diff| across batch sizes: {max(diffs):.1e}")

    # -- ratios ---------------------------------------------------------------------------------
    ratios = []
    compared = [(n, baseline_for(n, backends)) for n in backends]
    compared = [(n, b) for n, b in compared if b is not None]
    if compared:
        modes = list(dict.fromkeys(r["mode"] for r in rows))
        for key, title in (("bases_per_s", "speed-up over PyTorch eager, wall clock (goal >= 1.5x)"),
                           ("bases_per_cpu_s", "the same per process CPU-second (less sensitive to other "
                                               "load on the machine, but counts spin-waiting threads)")):
            speed = {(r["backend"], r["batch"], r["mode"]): r[key] for r in rows}
            print(f"\n{title}")
            print(f"  {'backend':<22}{'vs':<14}{'batch':>6}" + "".join(f"{m:>15}" for m in modes))
            for name, base in compared:
                for batch in batch_sizes:
                    cells = {m: speed[(name, batch, m)] / speed[(base, batch, m)] for m in modes
                             if (name, batch, m) in speed and (base, batch, m) in speed}
                    ratios.append({"backend": name, "vs": base, "batch": batch, "metric": key, **cells})
                    print(f"  {name:<22}{base:<14}{batch:>6}" + "".join(
                        f"{cells[m]:>14.2f}x" if m in cells else f"{'-':>15}" for m in modes))
    print(f"\nprocess peak RSS {peak_rss_mb():.0f} MB (ru_maxrss: the peak of this whole process, "
          f"all backends loaded: {', '.join(backends)}); RSS now {rss_now_mb():.0f} MB")

    profile = None
    if args.profile_ort and "onnx" in backends:
        batch = max(batch_sizes)
        profile = profile_ort(backends["onnx"], ids, batch, args.threads, args.profile_ort)
        if "torch" in backends:
            torch_profile(backends["torch"], ids, batch, args.profile_ort)

    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": str(model_dir), "fasta": args.fasta, "region": f"{contig}:{args.start}-{end}",
            "bases": args.bases, "regions": len(regions), "windows_per_strand": len(ids),
            "context": config.context, "threads": args.threads, "cpus": os.cpu_count(),
            "repeats": args.repeats, "torch": torch.__version__, "onnxruntime": ort.__version__,
            "load": info, "rows": rows, "ratios": ratios, "agreement": agreement,
            "process_peak_rss_mb": peak_rss_mb(), "ort_profile": profile}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
