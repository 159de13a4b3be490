"""Package a training run as a shipped model: weights, config, training record, evaluation,
loss curve and MODEL_CARD.md.

    python models/recipes/make_model_card.py --run runs/mergedna-small \
        --eval runs/pretrain_eval.json --out models/mergedna-small

`--eval` is the JSON written by `benchmarks/pretrain_eval.py --json`. A run started with
`pretrain --init-from MODEL` is a later stage of that model: pass `--previous MODEL` (its packaged
directory) and the record, metrics and card cover all stages, with totals over them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mergedna_cli.model.files import load_config, weights_sha256  # noqa: E402


STAGE_KEYS = ("settings", "step", "bases_seen", "train_seconds", "this_run_wall_seconds", "world_size",
              "device", "hardware", "torch")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def split_metrics(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    return [r for r in rows if "total" in r], [r for r in rows if "val_masked_acc" in r]


def precision_of(stage: dict) -> str:
    """What `pretrain --precision` resolved to (auto: bf16 autocast on CUDA and on AVX-512 CPUs,
    which the project's development machine has)."""
    chosen = stage["settings"].get("precision", "auto")
    if chosen == "fp32":
        return "fp32 (TF32 matmuls)" if "cuda" in str(stage.get("device")) else "fp32"
    return "bf16 autocast"


def stages_of(record: dict) -> list[dict]:
    return record.get("stages") or [{k: record[k] for k in STAGE_KEYS if k in record}]


def chain(previous_dir: Path, run: Path) -> tuple[dict, list[dict]]:
    """training.json and metrics rows of `run` appended to those of the model it started from:
    steps and bases seen continue from the previous totals; sources keep the first stage's paths."""
    before, after = json.loads((previous_dir / "training.json").read_text()), json.loads((run / "training.json").read_text())
    stages = stages_of(before) + stages_of(after)
    paths = {Path(src["path"]).name: src["path"] for src in before["sources"]}
    record = {**after, "sources": [{**src, "path": paths.get(Path(src["path"]).name, src["path"])}
                                   for src in after["sources"]],
              "exclude_bed": before["exclude_bed"], "val_fasta": before["val_fasta"], "stages": stages,
              "step": sum(st["step"] for st in stages), "bases_seen": sum(st["bases_seen"] for st in stages),
              "train_seconds": round(sum(st["train_seconds"] for st in stages), 1),
              "hardware": "; ".join(dict.fromkeys(st["hardware"] for st in stages))}
    record.pop("init_from", None)
    rows = read_rows(previous_dir / "metrics.jsonl")
    step0, bases0 = before["step"], before["bases_seen"]
    rows += [{**row, "step": row["step"] + step0, "bases_seen": row["bases_seen"] + bases0,
              "stage": len(stages)} for row in read_rows(run / "metrics.jsonl")]
    return record, rows


def plot(train: list[dict], val: list[dict], kmer: dict, out: Path) -> None:
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    seen = [r["bases_seen"] / 1e6 for r in train]
    for key, label in (("total", "total"), ("mtr", "MTR"), ("latent_mtr", "latent MTR"), ("amtm", "AMTM")):
        ax1.plot(seen, [r[key] for r in train], label=label, lw=1)
    ax1.set(xlabel="bases seen (M)", ylabel="training loss", title="pre-training losses")
    ax1.legend()
    vseen = [r["bases_seen"] / 1e6 for r in val]
    ax2.plot(vseen, [r["val_masked_acc"] for r in val], "o-", ms=3, label="MergeDNA (validation subset)")
    ax3.plot(vseen, [r["val_masked_ce"] for r in val], "o-", ms=3, label="MergeDNA (validation subset)")
    if kmer:
        ax2.axhline(kmer["accuracy"], color="gray", ls="--", label=f"k-mer baseline (k={kmer['k']}, full held-out)")
        ax3.axhline(kmer["cross_entropy"], color="gray", ls="--", label=f"k-mer baseline (k={kmer['k']}, full held-out)")
    ax2.set(xlabel="bases seen (M)", ylabel="masked-base accuracy", title="held-out human chr20")
    ax3.set(xlabel="bases seen (M)", ylabel="masked-base CE (nats)", title="held-out human chr20")
    ax2.legend(fontsize=8)
    ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--wall-hours", type=float, help="wall time of all training runs, if known")
    ap.add_argument("--history", help="markdown file appended as the card's 'Training history'")
    ap.add_argument("--hardware", help="hardware description (default: training.json's)")
    ap.add_argument("--previous", help="packaged model directory this run was --init-from")
    args = ap.parse_args()
    run, out = Path(args.run), Path(args.out)
    if args.previous:  # read before `out` (often the same directory) is overwritten
        training, metric_rows = chain(Path(args.previous), run)
    else:
        training, metric_rows = json.loads((run / "training.json").read_text()), read_rows(run / "metrics.jsonl")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(run / name, out / name)
    (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metric_rows))
    evaluation = json.loads(Path(args.eval).read_text())
    model_ev, kmer = evaluation.get("model", {}), evaluation.get("kmer", {})
    both_ev = evaluation.get("model_both_strands")
    rows = [{"model": "MergeDNA", "accuracy": model_ev["accuracy"], "cross_entropy": model_ev["cross_entropy"],
             "bases": model_ev["bases"]}] + ([
            {"model": "MergeDNA, both strands averaged", "accuracy": both_ev["accuracy"],
             "cross_entropy": both_ev["cross_entropy"], "bases": both_ev["bases"]}] if both_ev else []) + [
            {"model": f"{kmer['k']}-mer baseline", "accuracy": kmer["accuracy"],
             "cross_entropy": kmer["cross_entropy"], "bases": kmer["bases"]}]
    (out / "evaluation.json").write_text(json.dumps({"rows": rows, "protocol": {
        k: evaluation[k] for k in ("heldout", "context", "windows", "spacing", "phases", "margin")},
        "kmer_selection": kmer.get("selection")}, indent=2) + "\n")
    train, val = split_metrics(metric_rows)
    plot(train, val, kmer, out / "loss_curve.png")
    config = load_config(out)
    sha = weights_sha256(out)
    last = train[-1]
    n_params = None
    try:
        import torch

        from mergedna_cli.model import MergeDNA
        with torch.device("meta"):
            n_params = sum(p.numel() for p in MergeDNA(config).parameters())
    except Exception:  # the card is still useful without the count
        pass
    settings = training["settings"]
    stages = training.get("stages") or [training]
    stage_rows = "\n".join(
        f"| {i} | {st['hardware']} | {st['world_size']} | {st['world_size'] * st['settings']['batch_size']} | "
        f"{st['settings']['lr']:g} | {st['step']:,} | {st['bases_seen']:,} | {st['train_seconds'] / 3600:.2f} | "
        f"{precision_of(st)} |"
        for i, st in enumerate(stages, 1))
    sources = "\n".join(f"| {Path(s['path']).name} | {s['bases']:,} | {s['weight']:g} |"
                        for s in training["sources"])
    human = sum(s["bases"] * s["weight"] for s in training["sources"] if Path(s["path"]).name.startswith("human_"))
    total = sum(s["bases"] * s["weight"] for s in training["sources"])
    wall = f"{args.wall_hours:.2f} h over all stages and resumed runs" if args.wall_hours else "see training.json"
    def beats_kmer(ev: dict | None) -> bool:
        return bool(ev) and ev["accuracy"] > kmer["accuracy"] and ev["cross_entropy"] < kmer["cross_entropy"]

    verdict = ("MergeDNA beats the k-mer baseline on both measures, on the forward strand alone."
               if beats_kmer(model_ev) else
               "MergeDNA beats the k-mer baseline on both measures with both strands averaged (how "
               "`score` uses it by default), not on the forward strand alone." if beats_kmer(both_ev) else
               "**MergeDNA does not (yet) beat the k-mer baseline on both measures**; see the numbers above.")
    both_row = (f"| MergeDNA {config.name}, both strands averaged | {both_ev['accuracy']:.4f} | "
                f"{both_ev['cross_entropy']:.4f} | {both_ev['bases']:,} |\n") if both_ev else ""
    card = f"""# {out.name}

MergeDNA (arXiv 2511.14806) as implemented by this project, pre-trained from scratch by this
project. No official MergeDNA weights exist; these are not them.

| | |
|---|---|
| preset | {config.name}: D={config.d_model}, {config.n_heads} heads, blocks {config.n_local_encoder} local enc / {config.n_latent_encoder} latent enc / {config.n_latent_decoder} latent dec / {config.n_local_decoder} local dec |
| parameters | {n_params:,} |
| context | {config.context} bases; inference compression {config.compression} (L = N/2 tokens) |
| weights | `model.safetensors`, sha256 `{sha}` |

## Training data

Real genomes from the project's shared data (see their PROVENANCE.md files). Per-base sampling
weights: human files x10 (human sequence is scarce here: {sum(s['bases'] for s in training['sources'] if Path(s['path']).name.startswith('human_')):,} of
{sum(s['bases'] for s in training['sources']):,} bases), so about {100 * human / total:.0f}% of training windows are human.
The BRCA1 gene +-50 kb (GRCh38 chr17:42,994,295-43,175,483) is excluded (`recipes/exclude_brca1_locus.bed`),
so the zero-shot BRCA1 benchmarks score sequence the model never trained on. Human chr20
(GRCh37, 1 Mb, `human_GRCh37_chr20_1Mb_vg1kgp.fa.gz`) is held out entirely for validation.

| file | bases | weight |
|---|---|---|
{sources}

## Training

{len(stages)} stage(s), each a `mergedna pretrain` run (the recipes are in `recipes/`; a later stage
starts from the previous stage's weights with `--init-from`, a new AdamW state and a new schedule):
AdamW (betas {settings['betas'][0]}, {settings['betas'][1]}), weight decay {settings['weight_decay']:g}, linear warm-up then cosine
to {settings['min_lr_ratio']:g} x the peak lr, gradient clip {settings['grad_clip']}, windows of {config.context} bases.

| stage | hardware | processes | windows per step | peak lr | steps | bases seen | hours of training steps | precision |
|---|---|---|---|---|---|---|---|---|
{stage_rows}

| | |
|---|---|
| steps done | {training['step']:,} |
| bases seen | {training['bases_seen']:,} |
| training time | {training['train_seconds'] / 3600:.2f} h of training steps (excluding validation); wall: {wall} |
| hardware | {args.hardware or training['hardware']} |
| final losses (mean of the last {settings['log_every']} steps) | total {last['total']:.3f}, MTR {last['mtr']:.3f}, latent MTR {last['latent_mtr']:.3f}, AMTM {last['amtm']:.3f} (masked-base CE {last['masked_ce']:.3f}, acc {last['masked_acc']:.3f}) |

![loss curve](loss_curve.png)

## Held-out results (human chr20, never trained on)

Single bases masked {evaluation['spacing']} apart in {evaluation['windows']} non-overlapping {evaluation['context']}-base windows ({evaluation['phases']} phases),
every A/C/G/T truth scored; the k-mer baseline (predict the centre base from k bases on each
side, backoff-smoothed, k chosen on a validation split of the training data, fitted on exactly
the same training data and weights) is scored on exactly the same bases
(`benchmarks/pretrain_eval.py`).

| model | masked-base accuracy | cross-entropy (nats/base) | bases |
|---|---|---|---|
| MergeDNA {config.name}, forward strand | {model_ev['accuracy']:.4f} | {model_ev['cross_entropy']:.4f} | {model_ev['bases']:,} |
{both_row}| bidirectional {kmer['k']}-mer | {kmer['accuracy']:.4f} | {kmer['cross_entropy']:.4f} | {kmer['bases']:,} |

{verdict} (Both strands: the mean of the probabilities predicted from the window and from its
reverse complement; the k-mer baseline counts both strands.)

## Limits

A {n_params / 1e6:.1f} M-parameter model: its zero-shot scores are a research baseline, not a
clinical tool. Human sequence in training is ~4.5 Mb from three loci.
"""
    if args.history:
        card += "\n## Training history\n\n" + Path(args.history).read_text()
    (out / "MODEL_CARD.md").write_text(card)
    print(f"wrote {out} (sha256 {sha})")


if __name__ == "__main__":
    main()
