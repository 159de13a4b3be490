"""Model ladder: one table and one plot of quality against bases seen, for several models.

    python benchmarks/model_ladder.py models/mergedna-small models/mergedna-base
    python benchmarks/model_ladder.py runs/quality/mergedna-small.json runs/quality/mergedna-base.json

Each item is a model directory or a saved harness JSON (benchmarks/zero_shot.py --json). A model
directory is looked up in --cache-dir as <name>.json first; that run is reused when it scored the
same weights (sha256) in full (not --quick / --limit), otherwise the harness runs and saves it
there. Writes docs/model_ladder.md (the table) and docs/model_ladder.png by default.

Plot, left: held-out chr20 masked-base CE against bases seen; a line per model from the
validation rows of its metrics.jsonl (`val_masked_ce`: training's validation windows, forward
strand) where the model directory has one, and the harness's final values marked (filled: forward
strand, the curve's protocol on all windows; open: both strands). Right: the BRCA1 AUROCs of the
final weights with 95% intervals, one colour per model; 0.5 = chance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from zero_shot import CONTRASTS  # noqa: E402

DEFAULT_MD = REPO / "docs" / "model_ladder.md"
DEFAULT_PNG = REPO / "docs" / "model_ladder.png"
DEFAULT_CACHE = REPO / "runs" / "quality"
# (label, set, path inside the set's MergeDNA metrics)
AUROCS = [("SGE LOF", "sge", ("auroc",)), ("ClinVar", "clinvar", ("auroc",))] + [
    (f"{first.lower()} vs {second.lower()}", "sge", ("contrasts", key)) for key, first, second in CONTRASTS]


# ---------------------------------------------------------------------------------------------
# harness results

def is_full_run(run: dict) -> bool:
    return not run.get("quick") and run.get("limit") is None


def cached_run(model_dir: Path, cache_dir: Path) -> dict | None:
    """The cached harness run of this model dir if it scored the same weights in full."""
    from mergedna_cli.model.files import weights_sha256
    path = cache_dir / f"{model_dir.resolve().name}.json"
    if not path.is_file():
        return None
    run = json.loads(path.read_text())
    if run.get("model_info", {}).get("weights_sha256") != weights_sha256(model_dir) or not is_full_run(run):
        return None
    return run


def load_item(item: str, cache_dir: Path, threads: int) -> dict:
    """A harness run for a model directory (cached or run now) or a saved harness JSON."""
    path = Path(item)
    if path.is_file():
        try:
            run = json.loads(path.read_text())
        except ValueError as exc:
            raise SystemExit(f"error: {path} is not a harness JSON: {exc}") from None
        if "model_info" not in run or "sets" not in run:
            raise SystemExit(f"error: {path} is not a zero_shot.py --json run of a model")
        return {**run, "_path": display_path(path)}
    if not (path / "config.json").is_file():
        raise SystemExit(f"error: '{item}' is neither a model directory nor a harness JSON")
    run = cached_run(path, cache_dir)
    if run is None:
        import zero_shot
        out = cache_dir / f"{path.resolve().name}.json"
        print(f"running the harness on {path} -> {out}")
        zero_shot.main(["--model", str(path), "--threads", str(threads), "--json", str(out)])
        run = json.loads(out.read_text())
    return {**run, "_path": display_path(cache_dir / f"{path.resolve().name}.json")}


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def dig(entry: dict | None, keys: tuple) -> dict | None:
    for key in keys:
        entry = entry.get(key) if isinstance(entry, dict) else None
    return entry


def auroc_result(run: dict, set_name: str, keys: tuple) -> dict | None:
    return dig(run.get("sets", {}).get(set_name, {}).get("metrics", {}).get("MergeDNA"), keys)


def validation_curve(run: dict) -> tuple[list[float], list[float]]:
    """(bases seen, val_masked_ce) from metrics.jsonl of the run's model dir, if it has one."""
    path = Path(run["model_info"]["dir"]) / "metrics.jsonl"
    if not path.is_file():
        path = REPO / path
    if not path.is_file():
        return [], []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "val_masked_ce" in r and "bases_seen" in r]
    # a run started --init-from another model counts its bases from 0: shift by what that model saw
    record = path.parent / "training.json"
    start = json.loads(record.read_text()).get("init_from", {}).get("bases_seen", 0) if record.is_file() else 0
    return [start + r["bases_seen"] for r in rows], [r["val_masked_ce"] for r in rows]


# ---------------------------------------------------------------------------------------------
# the table

def millions(n: float | None, digits: int = 1) -> str:
    return "-" if n is None else f"{n / 1e6:.{digits}f} M"


def fmt_auroc(result: dict | None) -> str:
    if not result or result.get("auroc") is None:
        return "-"
    ci = result.get("ci95")
    return f"{result['auroc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def fmt_heldout(run: dict, key: str) -> str:
    held = run.get("heldout")
    if not held:
        return "-"
    return f"{held['forward'][key]:.4f} / {held['both'][key]:.4f}"


def heldout_bases(run: dict) -> str:
    held = run.get("heldout")
    return f"{held['both']['bases']:,}" if held else "-"


def table_rows(runs: list[dict]) -> list[list[str]]:
    rows = []
    for run in runs:
        info = run["model_info"]
        flag = "" if is_full_run(run) else " (partial run)"
        rows.append([f"{info['name']}{flag}", millions(info["parameters"], 2), millions(info["bases_seen"]),
                     info.get("hardware") or "-", fmt_heldout(run, "cross_entropy"),
                     fmt_heldout(run, "accuracy"), heldout_bases(run)]
                    + [fmt_auroc(auroc_result(run, s, keys)) for _, s, keys in AUROCS]
                    + [f"`{info['weights_sha256'][:12]}`"])
    return rows


def markdown_table(runs: list[dict]) -> str:
    head = (["model", "parameters", "bases seen", "hardware", "chr20 CE fwd / both",
             "chr20 acc fwd / both", "chr20 bases"] + [f"{label} AUROC [95% CI]" for label, _, _ in AUROCS]
            + ["weights sha256"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(runs)]
    return "\n".join(lines)


def held_out_protocol(runs: list[dict]) -> str:
    held = next((r["heldout"] for r in runs if r.get("heldout")), None)
    if not held:
        return ""
    return (f"chr20: {Path(held['fasta']).name} (held out of training), windows of the model's "
            f"context evenly spread over it (all 1,953 of 512 unless fewer were asked for: see chr20 "
            f"bases), one base in {held['spacing']} masked ({held['phases']} offsets, margin "
            f"{held['margin']}); forward strand / mean of both strands; CE in nats per base.")


def run_source(run: dict) -> str:
    """Where a run came from: its JSON and, when recorded, the harness command line."""
    text = f"`{run.get('_path', '?')}`"
    if run.get("argv") is not None:
        text += " from `python benchmarks/zero_shot.py " + " ".join(run["argv"]) + "`"
    if (run.get("code") or {}).get("commit"):
        modified = ", package modified" if run["code"].get("mergedna_cli_modified") else ""
        text += f" (code {run['code']['commit'][:8]}{modified})"
    return text


def markdown(runs: list[dict], command: str, png: Path, md: Path) -> str:
    try:
        image = png.resolve().relative_to(md.resolve().parent)
    except ValueError:
        image = png.resolve()
    sets = {name: e for r in runs for name, e in r.get("sets", {}).items()}
    counts = ", ".join(f"{name} {e['n']:,} SNVs ({e['n_positive']} {e['positive']})" for name, e in sets.items())
    boot = runs[0].get("bootstrap") if runs else None
    return "\n".join([
        "# Model ladder", "",
        f"Generated by `{command}` from benchmarks/zero_shot.py runs (the quality harness; "
        "its docstring has the protocol). Do not edit by hand.", "",
        markdown_table(runs), "",
        f"- BRCA1 sets: {counts}. Score = `mergedna score`'s SNV score (both strands, one "
        "position per masked pass); AUROC of -score for the positive class; "
        f"95% intervals from {boot} bootstrap resamples of the variants. 0.5 = chance.",
        "- nonsense vs synonymous, canonical splice vs intronic: AUROC that -score ranks an SGE SNV "
        "of the first class above one of the second (no assay labels used).",
        f"- {held_out_protocol(runs)}",
        "- bases seen, hardware: from the model's training.json.",
        "- harness runs: " + "; ".join(run_source(r) for r in runs), "",
        f"![quality against bases seen]({image})", "",
    ])


# ---------------------------------------------------------------------------------------------
# the plot

def plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ce, ax_auc) = plt.subplots(1, 2, figsize=(13, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = ["o", "s", "^", "D"]
    for i, run in enumerate(runs):
        info, colour = run["model_info"], colours[i % len(colours)]
        x, y = validation_curve(run)
        if x:
            ax_ce.plot(x, y, "-", color=colour, alpha=0.8, label=f"{info['name']} (training validation)")
        held, bases = run.get("heldout"), info.get("bases_seen")
        if held and bases:
            ax_ce.plot([bases], [held["forward"]["cross_entropy"]], "o", color=colour, ms=9,
                       label=f"{info['name']} harness, forward")
            ax_ce.plot([bases], [held["both"]["cross_entropy"]], "o", color=colour, ms=9, mfc="none",
                       label=f"{info['name']} harness, both strands")
        offset = (i - (len(runs) - 1) / 2) * 0.12
        for j, (_, set_name, keys) in enumerate(AUROCS):
            r = auroc_result(run, set_name, keys)
            if not r or r.get("auroc") is None:
                continue
            ci = r.get("ci95") or [r["auroc"], r["auroc"]]
            ax_auc.errorbar([j + offset], [r["auroc"]], yerr=[[r["auroc"] - ci[0]], [ci[1] - r["auroc"]]],
                            fmt=markers[i % len(markers)], color=colour, capsize=3,
                            label=None if j else f"{info['name']} ({millions(bases)} bases)")
    ax_ce.set(xscale="log", xlabel="bases seen", ylabel="held-out chr20 masked CE (nats/base)",
              title="Masked-base cross-entropy (lower is better)")
    ax_auc.axhline(0.5, color="grey", ls="--", lw=1)
    ax_auc.set(xticks=range(len(AUROCS)), xlim=(-0.5, len(AUROCS) - 0.5), ylabel="AUROC of -score (95% CI)", ylim=(0.2, 1.0),
               title="BRCA1 zero-shot, final weights (0.5 = chance)")
    ax_auc.set_xticklabels([label.replace(" vs ", "\nvs ") for label, _, _ in AUROCS], fontsize=8)
    for ax in (ax_ce, ax_auc):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("items", nargs="+", help="model directories and/or harness JSONs")
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="harness JSONs of model dirs")
    ap.add_argument("--threads", type=int, default=2, help="for harness runs not cached")
    ap.add_argument("--md", default=str(DEFAULT_MD))
    ap.add_argument("--png", default=str(DEFAULT_PNG))
    args = ap.parse_args(argv)
    runs = [load_item(item, Path(args.cache_dir), args.threads) for item in args.items]
    runs.sort(key=lambda r: r["model_info"].get("bases_seen") or 0)
    md, png = Path(args.md), Path(args.png)
    command = "python benchmarks/model_ladder.py " + " ".join(args.items)
    plot(runs, png)
    md.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(runs, command, png, md)
    md.write_text(text)
    print(markdown_table(runs))
    print(f"wrote {md} and {png}")


if __name__ == "__main__":
    main()
