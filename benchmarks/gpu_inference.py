"""GPU inference: `score`, `embed` and `tracks` speed on CUDA (PyTorch, and ONNX Runtime's CUDA
execution provider where onnxruntime-gpu is installed), peak GPU memory, and agreement with the CPU.

    python benchmarks/gpu_inference.py --device cuda --json gpu.json            # on a GPU machine
    python benchmarks/gpu_inference.py --device cpu --quick --json dry.json     # dry run, any machine

For each model (--models; default the shipped mergedna-small and mergedna-base) and backend
(--backends torch,onnx; ONNX Runtime is skipped, with the reason, where it has no CUDA provider),
in one process, after the model is loaded and one batch has warmed it up:

- score, SGE: the BRCA1 SGE SNVs (--vcf) through the `Scorer` that `mergedna score` runs (one masked
  position per pass, both strands); SNVs/s counts scored ALT alleles.
- score, synthetic: every SNV (3 per ACGT base) of --synthetic-bases bases of the reference from
  --synthetic-start, as one multi-ALT VCF record per position (20 kb = 60,000 SNVs): large enough to
  keep a GPU busy.
- tracks: token boundaries (the "tokens" graph, forward strand, as `mergedna tracks`) over every
  stretch of the reference between runs of >= 100 N (`tracks --genome`), computed unit by unit as
  `run_tracks` does ("model" bases/s), then `run_tracks` end to end with its BED and bigWigs
  written to a temporary folder ("pipeline" bases/s).
- embed: pooled embeddings (both strands) of the same stretches cut into 64 kb regions (bases/s).
- peak GPU memory of each phase (torch.cuda.max_memory_allocated; PyTorch only, ONNX Runtime's
  allocations are not visible to it).
- agreement with PyTorch on the CPU (same model): max |score difference| on the SGE set and on
  the first --agree-positions positions of the synthetic set, the fraction of token starts that
  differ over the first --agree-bases bases of the stretches (symmetric difference / CPU starts),
  and max |embedding difference| there.
- batch sweep (first model, PyTorch, --sweep sizes): windows/s and peak GPU memory of the score
  phase (the first 5,000 synthetic positions) and the tracks phase (all stretches) per batch size:
  how memory scales with the batch (--batch-size auto's choice).
- CLI: `mergedna score` and `mergedna tracks` as users run them (--device, defaults otherwise:
  --backend auto, --batch-size auto), wall time with start-up, and the backend their headers name.

Batch size: --batch-size (default auto: what the CLI picks for the device,
engine/load.resolve_batch_size). Goals (issue 15), one H200, the default model:
>= 20,000 SNVs/s for `score` (both strands) and >= 5 Mb/s for tracks boundaries.

Data: --data DIR holds the shared files where the repository's ../shared is not there (the GPU
machine): DIR/GRCh38_chr17_brca1_region.fa.gz (+ .fai, .gzi) and DIR/variants.vcf.gz.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data"
FASTA_NAME = "GRCh38_chr17_brca1_region.fa.gz"
SHARED_FASTA = SHARED / "grch38_chr17_brca1_region" / FASTA_NAME
SHARED_VCF = SHARED / "brca1_sge_findlay2018" / "variants.vcf.gz"
EXAMPLE_FASTA = REPO / "docs" / "example" / "brca1_chr17.fa.gz"  # in the repository: 130 kb real
EXAMPLE_VCF = REPO / "docs" / "example" / "clinvar_brca1.vcf.gz"
GOAL_SNVS, GOAL_TRACKS = 20_000.0, 5_000_000.0
EMBED_REGION = 1 << 16


class Timed:
    """A backend wrapper that counts rows and times `run` (the model's share of a phase)."""

    def __init__(self, inner):
        self.inner = inner
        self.rows = self.calls = 0
        self.seconds = 0.0

    def __getattr__(self, name):  # config, part, name, device
        return getattr(self.inner, name)

    def run(self, ids, query=None):
        t0 = time.perf_counter()
        out = self.inner.run(ids, query)  # numpy out: the GPU work is finished when it returns
        self.seconds += time.perf_counter() - t0
        self.rows += len(ids)
        self.calls += 1
        return out

    def reset(self):
        self.rows = self.calls = 0
        self.seconds = 0.0


class GpuMemory:
    """Peak torch.cuda memory of a phase, in MiB (None off CUDA or for ONNX Runtime)."""

    def __init__(self, backend):
        self.device = None
        if getattr(backend, "name", None) == "torch" and str(backend.device).startswith("cuda"):
            import torch
            self.device = torch.device(backend.device)

    def __enter__(self):
        if self.device is not None:
            import torch
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.peak_mib = None
        return self

    def __exit__(self, *exc):
        if self.device is not None:
            import torch
            torch.cuda.synchronize(self.device)
            self.peak_mib = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return False


# ---------------------------------------------------------------------------------------------
# inputs

def read_variants(path: Path, limit: int | None = None) -> list:
    from mergedna_cli.io.vcf import VcfReader
    variants = []
    for v in VcfReader(str(path)):
        if limit is not None and len(variants) >= limit:
            break
        variants.append(v)
    return variants


def synthetic_vcf(reference, contig: str, start: int, bases: int, path: Path) -> int:
    """Every SNV of contig[start:start+bases] (ACGT reference bases), one record per position with
    its three ALTs; returns the number of SNVs."""
    seq = "".join("ACGTN"[min(i, 4)] for i in reference.fetch_ids(contig, start, start + bases))
    n = 0
    with open(path, "w") as out:
        out.write("##fileformat=VCFv4.2\n")
        out.write(f"##contig=<ID={contig},length={reference.lengths[contig]}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for offset, base in enumerate(seq):
            if base == "N":
                continue
            alts = [b for b in "ACGT" if b != base]
            out.write(f"{contig}\t{start + offset + 1}\t.\t{base}\t{','.join(alts)}\t.\t.\t.\n")
            n += 3
    return n


def stretches(reference, limit_bases: int | None = None) -> list[tuple[str, int, int]]:
    """`tracks --genome`'s spans (runs of >= 100 N skipped), cut to the first limit_bases."""
    from mergedna_cli.pipelines.tracks import genome_regions
    spans, total = [], 0
    for contig, lo, hi in genome_regions(reference):
        if limit_bases is not None:
            hi = min(hi, lo + limit_bases - total)
        if hi > lo:
            spans.append((contig, lo, hi))
            total += hi - lo
        if limit_bases is not None and total >= limit_bases:
            break
    return spans


def first_bases(spans, bases: int) -> list[tuple[str, int, int]]:
    out, total = [], 0
    for contig, lo, hi in spans:
        hi = min(hi, lo + bases - total)
        if hi > lo:
            out.append((contig, lo, hi))
            total += hi - lo
    return out


# ---------------------------------------------------------------------------------------------
# phases

def score_phase(backend, reference, variants, batch_size: int) -> dict:
    """Scores (NaN where not scored) in allele order, with the time and counts."""
    from mergedna_cli.pipelines.score import Scorer, ScoreOptions

    scorer = Scorer(backend, reference, ScoreOptions(strand="both", batch_size=batch_size))
    backend.reset()
    scores = []
    with GpuMemory(backend) as memory:
        t0 = time.perf_counter()
        for chunk in scorer.chunks(variants):
            for _, _, jobs in chunk:
                scores += [j.score if j.status == "ok" and j.score is not None else np.nan for j in jobs]
        seconds = time.perf_counter() - t0
    scores = np.asarray(scores, np.float64)
    n = int(np.isfinite(scores).sum())
    return {"snvs": n, "seconds": round(seconds, 4), "snvs_per_s": n / seconds, "windows": backend.rows,
            "calls": backend.calls, "model_seconds": round(backend.seconds, 4),
            "peak_gpu_mib": memory.peak_mib, "_scores": scores}


def token_starts(units_out) -> np.ndarray:
    """Sorted token starts (contig index * 2^40 + position) from _compute_unit results."""
    starts = []
    for unit, arrays in units_out:
        lengths, per_piece = arrays["token_lengths"].astype(np.int64), arrays["tokens_per_piece"]
        token = 0
        for (contig_index, lo, _hi), n in zip(unit, per_piece.tolist()):
            sizes = lengths[token:token + n]
            starts.append(contig_index * (1 << 40) + lo + np.cumsum(sizes) - sizes)
            token += n
    return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def tracks_phase(backend, reference, spans, batch_size: int) -> dict:
    """Token boundaries unit by unit, as run_tracks computes them (no files)."""
    from mergedna_cli.engine.windows import default_flank
    from mergedna_cli.pipelines.tracks import UNIT_BASES, TracksOptions, _compute_unit, plan_units

    context = backend.config.context
    flank = default_flank(context)
    options = TracksOptions(batch_size=batch_size)
    order = {name: i for i, name in enumerate(reference.contigs)}
    backend.reset()
    results = []
    with GpuMemory(backend) as memory:
        t0 = time.perf_counter()
        for unit in plan_units(spans, context - 2 * flank, UNIT_BASES):
            arrays = _compute_unit(backend, backend, reference, unit, options, context, flank, lambda: None)
            results.append(([(order[c], lo, hi) for c, lo, hi, _ in unit], arrays))
        seconds = time.perf_counter() - t0
    bases = sum(hi - lo for _, lo, hi in spans)
    return {"bases": bases, "seconds": round(seconds, 4), "bases_per_s": bases / seconds, "windows": backend.rows,
            "model_seconds": round(backend.seconds, 4), "peak_gpu_mib": memory.peak_mib,
            "_starts": token_starts(results)}


def tracks_pipeline(backend, reference, spans, batch_size: int, model_name: str) -> dict:
    """run_tracks end to end (BED and bigWigs written), start-up excluded."""
    from mergedna_cli.pipelines.tracks import TracksOptions, run_tracks

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        meta = run_tracks(backend, reference, spans, f"{tmp}/bench", TracksOptions(batch_size=batch_size),
                          model_name, "0" * 64, inputs={"benchmark": True})
        seconds = time.perf_counter() - t0
    return {"bases": meta["bases"], "seconds": round(seconds, 4), "bases_per_s": meta["bases"] / seconds,
            "backend_recorded": meta.get("backend"), "device_recorded": meta.get("device")}


def embed_phase(backend, reference, spans, batch_size: int) -> dict:
    from mergedna_cli.engine.engine import Engine
    from mergedna_cli.io.regions import Region

    regions = [Region(c, a, min(a + EMBED_REGION, hi), f"{c}:{a}") for c, lo, hi in spans
               for a in range(lo, hi, EMBED_REGION)]
    backend.reset()
    with GpuMemory(backend) as memory:
        t0 = time.perf_counter()
        vectors = [item.embedding for item in Engine(backend, reference, batch_size=batch_size,
                                                     strands="both").embed(regions)]
        seconds = time.perf_counter() - t0
    bases = sum(len(r) for r in regions)
    return {"bases": bases, "regions": len(regions), "seconds": round(seconds, 4), "bases_per_s": bases / seconds,
            "windows": backend.rows, "model_seconds": round(backend.seconds, 4), "peak_gpu_mib": memory.peak_mib,
            "_vectors": np.stack(vectors) if vectors else np.zeros((0, 0))}


def warm_up(backend) -> float:
    context = backend.config.context
    ids = np.random.default_rng(0).integers(0, 4, (8, context))
    query = np.full((8, 1), context // 2) if backend.part == "masked" else None
    t0 = time.perf_counter()
    backend.run(ids, query)
    return time.perf_counter() - t0


def max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    if a is None or b is None or len(a) != len(b) or len(a) == 0:
        return None
    ok = np.isfinite(a) & np.isfinite(b)
    if (np.isfinite(a) != np.isfinite(b)).any():
        return float("inf")  # scored on one device only
    return float(np.max(np.abs(a[ok] - b[ok]))) if ok.any() else None


def start_difference(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.setxor1d(a, b)
    return {"differing_starts": int(len(diff)), "cpu_starts": int(len(b)),
            "fraction": float(len(diff) / max(len(b), 1))}


# ---------------------------------------------------------------------------------------------

def cli_runs(args, fasta: Path, vcf: Path, region: str, out_dir: Path) -> list[dict]:
    """The CLI as users run it: --device only, everything else at its default."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    runs = []
    commands = {
        "score": ["score", "--fasta", fasta, "--vcf", vcf, "-o", out_dir / "cli.vcf.gz", "--quiet",
                  *(["--shard", "1/25"] if args.quick else [])],
        "tracks": ["tracks", "--fasta", fasta, "--region", region, "-o", out_dir / "cli", "--quiet"],
    }
    for name, command in commands.items():
        argv = [sys.executable, "-m", "mergedna_cli", *map(str, command), "--device", args.device]
        t0 = time.perf_counter()
        run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        seconds = time.perf_counter() - t0
        entry = {"command": name, "exit": run.returncode, "wall_seconds": round(seconds, 2),
                 "stderr_tail": run.stderr.strip().splitlines()[-3:]}
        if name == "tracks" and run.returncode == 0:
            meta = json.loads((out_dir / "cli.tracks.json").read_text())
            entry.update(backend=meta.get("backend"), device=meta.get("device"), bases=meta["bases"])
        if name == "score" and run.returncode == 0:
            import gzip
            with gzip.open(out_dir / "cli.vcf.gz", "rt") as handle:
                entry["header_backend_lines"] = [line.strip() for line in handle
                                                 if line.startswith("##") and "backend" in line.lower()][:3]
        runs.append(entry)
    return runs


def machine_info(device: str) -> dict:
    info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "device": device}
    try:
        import torch
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except ImportError:
        pass
    try:
        import onnxruntime as ort
        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (dry run)")
    ap.add_argument("--models", default="mergedna-small,mergedna-base")
    ap.add_argument("--backends", default="torch,onnx")
    ap.add_argument("--batch-size", default="auto", help="windows per batch, or auto (the CLI's choice)")
    ap.add_argument("--data", type=Path, default=None, help="folder with the shared files (see above)")
    ap.add_argument("--fasta", type=Path, default=None)
    ap.add_argument("--vcf", type=Path, default=None, help="SNVs to score (default: the BRCA1 SGE set)")
    ap.add_argument("--synthetic-start", type=int, default=43_050_000, help="0-based, on the first contig")
    ap.add_argument("--synthetic-bases", type=int, default=20_000)
    ap.add_argument("--agree-positions", type=int, default=1_000)
    ap.add_argument("--agree-bases", type=int, default=1 << 18)
    ap.add_argument("--sweep", default="64,256,1024,2048", help="batch sizes for the memory sweep ('' = none)")
    ap.add_argument("--cpu-threads", type=int, default=None, help="threads of the CPU reference (default all)")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI runs")
    ap.add_argument("--quick", action="store_true", help="a dry run: first model only, small inputs")
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args(argv)

    from mergedna_cli.io.reference import Reference
    from mergedna_cli.model_dirs import resolve_model_dir
    from mergedna_cli.engine.load import choose, make_backend, resolve_batch_size

    fasta = args.fasta or (args.data / FASTA_NAME if args.data else None)
    vcf = args.vcf or (args.data / "variants.vcf.gz" if args.data else None)
    fasta = fasta or (SHARED_FASTA if SHARED_FASTA.exists() else EXAMPLE_FASTA)
    vcf = vcf or (SHARED_VCF if SHARED_VCF.exists() else EXAMPLE_VCF)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    sweep = [int(s) for s in args.sweep.split(",") if s.strip()]
    limit_sge = None
    track_bases = None
    if args.quick:  # every phase runs, on a few dozen windows: the test's dry run on a busy 2-core CPU
        models, limit_sge, track_bases = models[:1], 24, 4096
        args.synthetic_bases, args.agree_positions, args.agree_bases = 40, 16, 2048
        sweep = [8, 16] if sweep else []

    reference = Reference(fasta)
    contig = reference.contigs[0]
    sge = read_variants(vcf, limit_sge)
    spans = stretches(reference, track_bases)
    agree_spans = first_bases(spans, args.agree_bases)
    work = Path(tempfile.mkdtemp(prefix="gpu-inference-"))
    synthetic_path = work / "synthetic.vcf"
    n_synthetic = synthetic_vcf(reference, contig, args.synthetic_start, args.synthetic_bases, synthetic_path)
    synthetic = read_variants(synthetic_path)
    agree_synthetic = synthetic[: args.agree_positions]
    results: dict = {
        "machine": machine_info(args.device), "fasta": str(fasta), "vcf": str(vcf), "quick": args.quick,
        "inputs": {"sge_snvs_records": len(sge), "synthetic_snvs": n_synthetic,
                   "synthetic_region": f"{contig}:{args.synthetic_start + 1}-{args.synthetic_start + args.synthetic_bases}",
                   "tracks_bases": sum(h - lo for _, lo, h in spans), "agree_bases": args.agree_bases,
                   "agree_positions": len(agree_synthetic)},
        "goals": {"score_snvs_per_s": GOAL_SNVS, "tracks_bases_per_s": GOAL_TRACKS},
        "runs": [], "skipped": [], "sweep": [], "cli": []}
    print(f"inputs: {len(sge)} SGE records, {n_synthetic} synthetic SNVs, "
          f"{results['inputs']['tracks_bases']:,} bases for tracks/embed ({fasta.name})", flush=True)

    def save():  # after every run too: a run stopped at its time limit keeps what it measured
        if args.json_out:
            args.json_out.write_text(json.dumps(results, indent=2, default=float) + "\n")

    def build(model, name, device, part, threads=None):
        return Timed(make_backend(str(resolve_model_dir(model)), name, device, threads, part=part,
                                  log=lambda m: print(f"  {m}", flush=True)))

    def cpu_reference(model: str) -> dict:
        print(f"{model}: CPU reference (torch)", flush=True)
        t0 = time.perf_counter()
        ref_masked = build(model, "torch", "cpu", "masked", args.cpu_threads)
        ref_tokens = build(model, "torch", "cpu", "tokens", args.cpu_threads)
        ref_embed = build(model, "torch", "cpu", "embedding", args.cpu_threads)
        cpu = {"sge": score_phase(ref_masked, reference, sge, 32)["_scores"],
               "synthetic": score_phase(ref_masked, reference, agree_synthetic, 32)["_scores"],
               "starts": tracks_phase(ref_tokens, reference, agree_spans, 32)["_starts"],
               "embed": embed_phase(ref_embed, reference, agree_spans, 32)["_vectors"]}
        print(f"  {time.perf_counter() - t0:.1f} s", flush=True)
        return cpu

    for model in models:
        cpu = None  # computed before the first backend that can run
        for name in backends:
            try:
                resolved = choose(name, args.device)
            except Exception as exc:  # noqa: BLE001  (a missing CUDA provider is a result, not a crash)
                results["skipped"].append({"model": model, "backend": name, "reason": str(exc)})
                print(f"{model} {name}: skipped: {exc}", flush=True)
                continue
            cpu = cpu or cpu_reference(model)
            t0 = time.perf_counter()
            masked = build(model, name, args.device, "masked")
            tokens = build(model, name, args.device, "tokens")
            embedding = build(model, name, args.device, "embedding")
            load = time.perf_counter() - t0
            warm = sum(warm_up(b) for b in (masked, tokens, embedding))
            batch = resolve_batch_size(args.batch_size, masked.inner, tokens.inner, embedding.inner)
            print(f"{model} {name} on {masked.device}: load {load:.1f} s, warm-up {warm:.2f} s, batch {batch}",
                  flush=True)
            run = {"model": model, "backend": masked.name, "device": masked.device, "resolved": resolved,
                   "batch_size": batch, "load_seconds": round(load, 2), "warmup_seconds": round(warm, 3)}
            run["score_sge"] = score_phase(masked, reference, sge, batch)
            run["score_synthetic"] = score_phase(masked, reference, synthetic, batch)
            run["tracks"] = tracks_phase(tokens, reference, spans, batch)
            run["tracks_pipeline"] = tracks_pipeline(tokens.inner, reference, spans, batch, model)
            run["embed"] = embed_phase(embedding, reference, spans, batch)
            agree_scores = score_phase(masked, reference, agree_synthetic, batch)["_scores"]
            agree_starts = tracks_phase(tokens, reference, agree_spans, batch)["_starts"]
            agree_vectors = embed_phase(embedding, reference, agree_spans, batch)["_vectors"]
            run["agreement_vs_cpu_torch"] = {
                "sge_max_abs_score_diff": max_abs(run["score_sge"]["_scores"], cpu["sge"]),
                "synthetic_max_abs_score_diff": max_abs(agree_scores, cpu["synthetic"]),
                "token_starts": start_difference(agree_starts, cpu["starts"]),
                "embed_max_abs_diff": (float(np.abs(agree_vectors - cpu["embed"]).max())
                                       if agree_vectors.shape == cpu["embed"].shape and agree_vectors.size else None),
            }
            for phase in ("score_sge", "score_synthetic", "tracks", "embed"):
                for key in [k for k in run[phase] if k.startswith("_")]:
                    del run[phase][key]
            results["runs"].append(run)
            save()
            print(f"  score SGE {run['score_sge']['snvs_per_s']:,.0f} SNVs/s, synthetic "
                  f"{run['score_synthetic']['snvs_per_s']:,.0f} SNVs/s, tracks {run['tracks']['bases_per_s']:,.0f} "
                  f"bases/s (pipeline {run['tracks_pipeline']['bases_per_s']:,.0f}), embed "
                  f"{run['embed']['bases_per_s']:,.0f} bases/s", flush=True)
            if model == models[0] and masked.name == "torch" and sweep:
                sweep_variants = synthetic[:5000]  # 10,000 rows: several calls even at 2048 windows
                first = None  # the first size's scores and starts: results must not depend on the batch
                for size in sweep:
                    s = score_phase(masked, reference, sweep_variants, size)
                    t = tracks_phase(tokens, reference, spans, size)
                    first = first or (s["_scores"], t["_starts"])
                    results["sweep"].append({
                        "model": model, "backend": masked.name, "device": masked.device, "batch_size": size,
                        "score_windows_per_s": s["windows"] / s["seconds"], "score_snvs_per_s": s["snvs_per_s"],
                        "score_peak_gpu_mib": s["peak_gpu_mib"],
                        "tracks_windows_per_s": t["windows"] / t["seconds"], "tracks_bases_per_s": t["bases_per_s"],
                        "tracks_peak_gpu_mib": t["peak_gpu_mib"],
                        "max_abs_score_diff_vs_first_size": max_abs(s["_scores"], first[0]),
                        "token_starts_vs_first_size": start_difference(t["_starts"], first[1])})
                    print(f"  sweep batch {size}: score {s['windows'] / s['seconds']:,.0f} windows/s "
                          f"(peak {s['peak_gpu_mib']} MiB), tracks {t['windows'] / t['seconds']:,.0f} windows/s "
                          f"(peak {t['peak_gpu_mib']} MiB)", flush=True)
                    save()
            del masked, tokens, embedding

    if not args.no_cli:
        region = f"{spans[0][0]}:{spans[0][1] + 1}-{min(spans[0][2], spans[0][1] + (5_000 if args.quick else 1 << 20))}"
        results["cli"] = cli_runs(args, fasta, vcf, region, work)
        for entry in results["cli"]:
            print(f"CLI {entry['command']}: exit {entry['exit']}, {entry['wall_seconds']} s"
                  + (f", {entry.get('backend')} on {entry.get('device')}" if "backend" in entry else ""), flush=True)

    print_table(results)
    if args.json_out:
        save()
        print(f"wrote {args.json_out}")
    return results


def print_table(results: dict) -> None:
    def fmt(x, spec=",.0f"):
        return "-" if x is None else format(x, spec)
    print(f"\n{'model':<16}{'backend':<8}{'device':<8}{'batch':>6}{'SGE SNV/s':>11}{'synth SNV/s':>12}"
          f"{'tracks b/s':>12}{'pipe b/s':>11}{'embed b/s':>11}{'peak MiB':>10}{'max|dS|':>9}{'starts≠':>9}"
          f"{'max|dE|':>9}")
    for r in results["runs"]:
        a = r["agreement_vs_cpu_torch"]
        peaks = [r[p]["peak_gpu_mib"] for p in ("score_sge", "score_synthetic", "tracks", "embed")]
        peak = max(peaks) if all(p is not None for p in peaks) else None
        diffs = [d for d in (a["sge_max_abs_score_diff"], a["synthetic_max_abs_score_diff"]) if d is not None]
        print(f"{r['model']:<16}{r['backend']:<8}{r['device']:<8}{r['batch_size']:>6}"
              f"{fmt(r['score_sge']['snvs_per_s']):>11}{fmt(r['score_synthetic']['snvs_per_s']):>12}"
              f"{fmt(r['tracks']['bases_per_s']):>12}{fmt(r['tracks_pipeline']['bases_per_s']):>11}"
              f"{fmt(r['embed']['bases_per_s']):>11}{fmt(peak, ',.1f'):>10}"
              f"{fmt(max(diffs) if diffs else None, '.2e'):>9}{a['token_starts']['fraction']:>9.2%}"
              f"{fmt(a['embed_max_abs_diff'], '.2e'):>9}")
    for s in results["skipped"]:
        print(f"{s['model']:<16}{s['backend']:<8}skipped: {s['reason']}")
    if results["sweep"]:
        print(f"\n{'batch':>6}{'score win/s':>13}{'score MiB':>11}{'tracks win/s':>14}{'tracks MiB':>12}"
              f"{'max|dS| vs first':>18}{'starts≠ vs first':>18}")
        for s in results["sweep"]:
            print(f"{s['batch_size']:>6}{fmt(s['score_windows_per_s']):>13}{fmt(s['score_peak_gpu_mib'], ',.1f'):>11}"
                  f"{fmt(s['tracks_windows_per_s']):>14}{fmt(s['tracks_peak_gpu_mib'], ',.1f'):>12}"
                  f"{fmt(s['max_abs_score_diff_vs_first_size'], '.2e'):>18}"
                  f"{s['token_starts_vs_first_size']['fraction']:>18.2%}")
    print(f"goals (one H200, default model): score >= {GOAL_SNVS:,.0f} SNVs/s both strands, "
          f"tracks boundaries >= {GOAL_TRACKS / 1e6:g} Mb/s")


if __name__ == "__main__":
    main()
