"""Fine-tuned MergeDNA vs a k-mer logistic-regression baseline on the shared labelled sets.

    python benchmarks/finetune_eval.py [--datasets enhancers promoters] [--epochs 6] [--json out.json]

Each dataset is split once, stratified by label, with a fixed seed (70% train / 15% validation /
15% test) into TSV files under --work-dir; both models see exactly these files. The baseline
counts 4-, 5- and 6-mers per sequence (frequencies, max-abs scaled) and fits a logistic regression
whose C is chosen on the validation split. MergeDNA is fine-tuned with `mergedna finetune` (best
epoch chosen on the validation split) and scored with `mergedna evaluate`. The table shows
validation and test accuracy / MCC, and the fine-tuning wall time and throughput.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
DATASETS = {
    "enhancers": SHARED / "finetune_human_enhancers_ienhancer" / "sequences.tsv.gz",
    "promoters": SHARED / "finetune_promoters_umarov2017" / "sequences.tsv.gz",
}
KEEP = ("sequence", "label")


def make_splits(source: Path, out_dir: Path, seed: int) -> dict[str, Path]:
    """train/val/test TSVs (sequence, label), 70/15/15 stratified by label; written once."""
    from sklearn.model_selection import train_test_split

    paths = {name: out_dir / f"{name}.tsv" for name in ("train", "val", "test")}
    if all(p.is_file() for p in paths.values()):
        return paths
    with gzip.open(source, "rt", newline="") as handle:
        rows = [(r["sequence"], r["label"]) for r in csv.DictReader(handle, delimiter="\t")]
    labels = [label for _, label in rows]
    train, rest = train_test_split(rows, test_size=0.30, random_state=seed, stratify=labels)
    val, test = train_test_split(rest, test_size=0.50, random_state=seed, stratify=[r[1] for r in rest])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("val", val), ("test", test)):
        with open(paths[name], "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(KEEP)
            writer.writerows(part)
    return paths


def _read(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [r["sequence"] for r in rows], np.array([int(r["label"]) for r in rows])


def kmer_baseline(paths: dict[str, Path], seed: int) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, matthews_corrcoef
    from sklearn.preprocessing import MaxAbsScaler, normalize

    t0 = time.time()
    (xtr, ytr), (xva, yva), (xte, yte) = (_read(paths[n]) for n in ("train", "val", "test"))
    vec = CountVectorizer(analyzer="char", ngram_range=(4, 6), lowercase=False)
    scaler = MaxAbsScaler()
    ftr = scaler.fit_transform(normalize(vec.fit_transform(xtr), norm="l1"))
    fva = scaler.transform(normalize(vec.transform(xva), norm="l1"))
    fte = scaler.transform(normalize(vec.transform(xte), norm="l1"))
    best = None
    for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(ftr, ytr)
        mcc = matthews_corrcoef(yva, clf.predict(fva))
        if best is None or mcc > best[0]:
            best = (mcc, c, clf)
    _, c, clf = best
    pva, pte = clf.predict(fva), clf.predict(fte)
    return {"name": "4-6-mer logistic regression", "C": c, "features": len(vec.vocabulary_),
            "val": {"accuracy": accuracy_score(yva, pva), "mcc": matthews_corrcoef(yva, pva)},
            "test": {"accuracy": accuracy_score(yte, pte), "mcc": matthews_corrcoef(yte, pte)},
            "seconds": round(time.time() - t0, 1)}


def _mergedna(*args) -> None:
    proc = subprocess.run([sys.executable, "-m", "mergedna_cli", *map(str, args)], text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise SystemExit(f"mergedna {' '.join(map(str, args[:1]))} failed: {proc.stderr.strip()}")


def mergedna_finetune(paths: dict[str, Path], work: Path, args) -> dict:
    rc = work.name in args.rc_augment
    model_dir = work / f"model-{args.mode}{'-rc' if rc else ''}{args.tag}"
    if not (model_dir / "finetune.json").is_file() or args.retrain:
        if model_dir.exists():
            import shutil
            shutil.rmtree(model_dir)
        t0 = time.time()
        _mergedna("finetune", "--train", paths["train"], "--val", paths["val"], "-o", model_dir,
                  "--model", args.model, "--epochs", args.epochs, "--lr", args.lr, "--batch-size", args.batch_size,
                  "--patience", args.patience, "--seed", args.seed, f"--{args.mode}",
                  *(["--rc-augment"] if rc else []), *(
                      ["--threads", args.threads] if args.threads else []), "--quiet")
        wall = time.time() - t0
    else:
        wall = None
    info = json.loads((model_dir / "finetune.json").read_text())
    history = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    results = {}
    for split in ("val", "test"):
        out = model_dir / f"eval-{split}.json"
        _mergedna("evaluate", "--model", model_dir, "--input", paths[split], "--json", out, "--quiet",
                  *(["--threads", args.threads] if args.threads else []))
        results[split] = json.loads(out.read_text())["metrics"]
    return {"name": f"MergeDNA {info['base_model']['name']} fine-tuned ({info['mode']}"
                    f"{', both strands' if rc else ''})", "dir": str(model_dir), "settings": info["settings"],
            "base_sha256": info["base_model"]["sha256"], "best_epoch": info["best_epoch"],
            "epochs_run": info["training"]["epochs_run"], "val": results["val"], "test": results["test"],
            "train_seconds": info["training"]["train_seconds"], "command_wall_seconds": wall,
            "bases_per_s": round(float(np.mean([h["bases_per_s"] for h in history])), 1),
            "sequences_per_s": round(float(np.mean([h["sequences_per_s"] for h in history])), 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--model", default=str(REPO / "models" / "mergedna-small"))
    ap.add_argument("--mode", default="full", choices=["full", "freeze-encoder"])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rc-augment", nargs="*", default=["enhancers"], metavar="DATASET",
                    help="datasets whose labels are strand-symmetric (default: enhancers)")
    ap.add_argument("--tag", default="", help="suffix of the model directory, to keep variants apart")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--work-dir", default=str(REPO / "runs" / "finetune_eval"))
    ap.add_argument("--retrain", action="store_true", help="fine-tune again even if a model exists")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    results = {}
    for name in args.datasets:
        if not DATASETS[name].is_file():
            raise SystemExit(f"error: {DATASETS[name]} not found")
        work = Path(args.work_dir) / name
        paths = make_splits(DATASETS[name], work / "splits", args.seed)
        sizes = {k: sum(1 for _ in open(p)) - 1 for k, p in paths.items()}
        print(f"{name}: split (seed {args.seed}) train {sizes['train']:,} / val {sizes['val']:,} / "
              f"test {sizes['test']:,} in {work / 'splits'}", flush=True)
        kmer = kmer_baseline(paths, args.seed)
        print(f"  k-mer baseline done in {kmer['seconds']} s (C={kmer['C']}, {kmer['features']:,} features)",
              flush=True)
        model = mergedna_finetune(paths, work, args)
        print(f"  MergeDNA fine-tuned: best epoch {model['best_epoch']} of {model['epochs_run']}, "
              f"{model['train_seconds']} s training, {model['bases_per_s']:,.0f} bases/s", flush=True)
        results[name] = {"sizes": sizes, "kmer": kmer, "mergedna": model}

    print(f"\n{'dataset':<11}{'model':<46}{'val acc':>8}{'val MCC':>9}{'test acc':>9}{'test MCC':>9}")
    for name, r in results.items():
        for m in (r["kmer"], r["mergedna"]):
            print(f"{name:<11}{m['name']:<46}{m['val']['accuracy']:>8.4f}{m['val']['mcc']:>9.4f}"
                  f"{m['test']['accuracy']:>9.4f}{m['test']['mcc']:>9.4f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
