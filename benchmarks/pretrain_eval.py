"""Held-out masked-base accuracy / cross-entropy: a MergeDNA model vs. the bidirectional k-mer
baseline, on exactly the same masked bases of the held-out human chr20 file.

    python benchmarks/pretrain_eval.py --model models/mergedna-small --json out.json

Positions: `held_out_windows` cuts non-overlapping windows of the model's context length out of
the held-out sequence; every `spacing`-th base (one per phase offset, as in
`evaluation.masked_base_eval`) at least `margin` bases from a window edge is masked. The model
sees the window with that set masked; the k-mer model sees the k <= margin bases on each side,
inside the same window (the other masked bases are `spacing` > 2k away, so no context base is
masked). Only A/C/G/T truths are scored.

k-mer training data: the files, weights and excluded BED regions recorded in
`<model>/training.json` (what the model was trained on); without that file, every *.fa.gz of
the pre-training corpus folders except the held-out file, human_* files weighted 10.
k and the per-order alphas are chosen on the last 10% of every training record, then the model is refitted
on all of the training data.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # kmer_baseline

from mergedna_cli.alphabet import encode  # noqa: E402
from mergedna_cli.io.fasta_records import iter_fasta_records  # noqa: E402
from mergedna_cli.training.corpus import Corpus, CorpusSource  # noqa: E402
from kmer_baseline import DEFAULT_ALPHAS, kmer_masked_eval, select_and_fit  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
HELDOUT = SHARED / "pretrain_corpus" / "human_GRCh37_chr20_1Mb_vg1kgp.fa.gz"
CORPUS_DIRS = [SHARED / "pretrain_corpus", SHARED / "pretrain_human_extra"]
DEFAULT_EXCLUDE = REPO / "models" / "recipes" / "exclude_brca1_locus.bed"


def _resolve(path: str, model_dir: Path) -> str:
    """A path from training.json: as given, else relative to the repo, else to the model dir."""
    for cand in (Path(path), REPO / path, model_dir / path):
        if cand.exists():
            return str(cand)
    raise SystemExit(f"error: training file '{path}' (from {model_dir / 'training.json'}) not found")


def training_sources(model_dir: Path, heldout: Path) -> tuple[list[CorpusSource], list[str], str]:
    """(sources, exclude BEDs, where they came from)."""
    record = model_dir / "training.json"
    if record.is_file():
        info = json.loads(record.read_text())
        sources = [CorpusSource(_resolve(s["path"], model_dir), float(s.get("weight", 1.0)))
                   for s in info["sources"]]
        beds = info.get("exclude_bed") or []
        beds = [beds] if isinstance(beds, str) else list(beds)
        return sources, [_resolve(b, model_dir) for b in beds], str(record)
    files = sorted(f for d in CORPUS_DIRS for f in glob.glob(str(d / "*.fa.gz"))
                   if os.path.abspath(f) != os.path.abspath(heldout))
    sources = [CorpusSource(f, 10.0 if os.path.basename(f).startswith("human_") else 1.0)
               for f in files]
    beds = [str(DEFAULT_EXCLUDE)] if DEFAULT_EXCLUDE.is_file() else []
    return sources, beds, "fallback (no training.json): corpus folders, human_* weight 10"


def fit_kmer_on_training_data(sources: list[CorpusSource], beds: list[str], cache_dir: str, ks, alphas,
                              val_fraction: float, both_strands: bool = True):
    """The k-mer baseline on exactly the model's training data (same files, weights, exclusions):
    (model, selection table, corpus, corpus seconds, fit seconds). Shared with zero_shot.py."""
    t0 = time.time()
    corpus = Corpus.build(sources, cache_dir, beds)
    arrays = [corpus.ids[r.offset:r.offset + r.length] for r in corpus.records]
    weights = [corpus.sources[r.file].weight for r in corpus.records]
    t_corpus = time.time() - t0
    t0 = time.time()
    kmer, table = select_and_fit(arrays, weights, ks, alphas, val_fraction, both_strands=both_strands)
    return kmer, table, corpus, t_corpus, time.time() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "mergedna-small"))
    ap.add_argument("--heldout", default=str(HELDOUT))
    ap.add_argument("--max-windows", type=int, default=100000, help="default: all windows")
    ap.add_argument("--spacing", type=int, default=32)
    ap.add_argument("--phases", type=int, default=4,
                    help="mask offsets per window (each a separate pass of the model)")
    ap.add_argument("--margin", type=int, default=16)
    ap.add_argument("--strands", choices=["forward", "both", "each"], default="each",
                    help="model predictions from the forward strand, the mean over both strands "
                         "(as `score` uses it), or each reported (default)")
    ap.add_argument("--ks", default="0-6", help="k values to select from, e.g. '0-6' or '2,4,6'")
    ap.add_argument("--alphas", default=",".join(str(a) for a in DEFAULT_ALPHAS))
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--one-strand", action="store_true",
                    help="count only the forward strand (default: both, as the model is trained)")
    ap.add_argument("--cache-dir", default=str(REPO / ".cache" / "corpus"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--skip-model", action="store_true", help="k-mer baseline only")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    if "-" in args.ks:
        lo, hi = args.ks.split("-")
        ks = list(range(int(lo), int(hi) + 1))
    else:
        ks = [int(x) for x in args.ks.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    if max(ks) > args.margin:
        ap.error(f"k up to {max(ks)} needs --margin >= {max(ks)}")

    t_start = time.time()
    model_dir = Path(args.model)
    model = None
    if not args.skip_model:
        import torch
        from mergedna_cli.model import load_model
        from mergedna_cli.training.evaluation import held_out_windows, masked_base_eval
        if args.threads:
            torch.set_num_threads(args.threads)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        model = load_model(model_dir, device=device)
        context = model.config.context
        model_name = f"MergeDNA {model.config.name} ({model_dir.name})"
    else:
        from mergedna_cli.training.evaluation import held_out_windows
        config = model_dir / "config.json"
        # without a model directory: the context of the shipped 'small' preset
        context = json.loads(config.read_text())["context"] if config.is_file() else 512
        model_name = None

    heldout = np.concatenate([encode(seq) for _, seq in iter_fasta_records(args.heldout)])
    windows = held_out_windows(heldout, context, args.max_windows)
    print(f"held-out: {args.heldout}: {len(heldout):,} bases -> {len(windows)} windows of {context}; "
          f"spacing {args.spacing}, phases {args.phases}, margin {args.margin}")

    results: dict = {"heldout": args.heldout, "context": context, "windows": int(len(windows)),
                     "spacing": args.spacing, "phases": args.phases, "margin": args.margin}
    rows = []
    if model is not None:
        modes = ["forward", "both"] if args.strands == "each" else [args.strands]
        for mode in modes:
            t0 = time.time()
            ev = masked_base_eval(model, windows, args.spacing, args.phases, args.margin,
                                  both_strands=mode == "both")
            t_model = time.time() - t0
            name = f"{model_name}, {'both strands' if mode == 'both' else 'forward strand'}"
            rows.append((name, ev.accuracy, ev.cross_entropy, ev.n_bases))
            key = "model" if mode == "forward" else "model_both_strands"
            results[key] = {"name": name, "dir": str(model_dir), "accuracy": ev.accuracy,
                            "cross_entropy": ev.cross_entropy, "bases": ev.n_bases,
                            "seconds": round(t_model, 1)}
            print(f"model ({mode}) evaluated in {t_model:.1f} s")

    # k-mer baseline on the model's training data
    sources, beds, origin = training_sources(model_dir, Path(args.heldout))
    print(f"k-mer training data: {origin}")
    for s in sources:
        print(f"  weight {s.weight:g}  {s.path}")
    for b in beds:
        print(f"  excluded (set to N): {b}")
    kmer, table, corpus, t_corpus, t_fit = fit_kmer_on_training_data(
        sources, beds, args.cache_dir, ks, alphas, args.val_fraction, both_strands=not args.one_strand)
    n_train = int(sum(r.length for r in corpus.records))
    t0 = time.time()
    kev = kmer_masked_eval(kmer, windows, args.spacing, args.phases, args.margin)
    t_kmer_eval = time.time() - t0
    kmer_name = f"bidirectional {kmer.k}-mer context (k={kmer.k})"
    rows.append((kmer_name, kev.accuracy, kev.cross_entropy, kev.n_bases))

    print(f"\nk selection (validation = last {args.val_fraction:.0%} of every training record, "
          f"bases weighted as in training; {'both strands' if not args.one_strand else 'forward strand'}):")
    print(f"  {'k':>2}  {'alpha_k':>7}  {'val acc':>8}  {'val CE':>7}  {'val bases':>9}")
    for r in table:
        mark = "  <- chosen" if r.k == kmer.k else ""
        print(f"  {r.k:>2}  {r.alpha:>7g}  {r.val_acc:>8.4f}  {r.val_ce:>7.4f}  {r.val_bases:>9}{mark}")
    print(f"chosen: k={kmer.k}, alpha per order 0..{kmer.k} = "
          f"{', '.join(f'{a:g}' for a in kmer.alphas)}")
    print(f"k-mer: {n_train:,} training bases; corpus {t_corpus:.1f} s, "
          f"selection + refit {t_fit:.1f} s, scoring {t_kmer_eval:.1f} s")

    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'model':<{width}}{'masked acc':>11}{'CE (nats)':>12}{'bases':>9}")
    for name, acc, ce, n in rows:
        print(f"{name:<{width}}{acc:>11.4f}{ce:>12.4f}{n:>9}")
    if len({r[3] for r in rows}) != 1:
        raise SystemExit("error: the two models were scored on different numbers of bases")
    wall = time.time() - t_start
    print(f"\nwall time {wall:.1f} s")

    results["kmer"] = {"name": kmer_name, "k": kmer.k, "alphas": list(kmer.alphas),
                       "both_strands": not args.one_strand, "accuracy": kev.accuracy,
                       "cross_entropy": kev.cross_entropy, "bases": kev.n_bases,
                       "training_bases": n_train, "training_data": origin,
                       "sources": [{"path": s.path, "weight": s.weight} for s in sources],
                       "exclude_bed": beds,
                       "selection": [r._asdict() | {"val_acc": float(r.val_acc), "val_ce": float(r.val_ce)}
                                     for r in table],
                       "seconds": {"corpus": round(t_corpus, 1), "select_and_fit": round(t_fit, 1),
                                   "score": round(t_kmer_eval, 1)}}
    results["wall_seconds"] = round(wall, 1)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return results


if __name__ == "__main__":
    main()
