"""Paired comparison of model arms from quality-harness JSONs (benchmarks/zero_shot.py --json).

    python benchmarks/ab_compare.py runs/abq/row.json runs/abq/chunk64.json runs/abq/repeat01.json

The first JSON is the control. For every other arm it prints the held-out chr20 CE difference
(both strands) and, on the same variants, the AUROC differences arm - control for the SGE and
ClinVar labels and the two grammar contrasts, each with a paired 95% bootstrap interval (the same
resample of variants for both arms), so an interval that contains 0 means "no measured
difference".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zero_shot import CONTRASTS, paired_difference_ci  # noqa: E402


def load(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def aligned(control: dict, arm: dict, set_name: str):
    """Scores of both arms on the variants both scored, in the control's order."""
    a, b = control["sets"][set_name], arm["sets"][set_name]
    index = {vid: i for i, vid in enumerate(b["ids"])}
    keep = [i for i, vid in enumerate(a["ids"]) if vid in index]
    other = [index[a["ids"][i]] for i in keep]
    pick = lambda values, rows: np.asarray(values, dtype=np.float64)[rows]  # noqa: E731
    classes = np.asarray(a["consequence"])[keep] if a.get("consequence") else None
    return (pick(a["scores"]["MergeDNA"], keep), pick(b["scores"]["MergeDNA"], other),
            np.asarray(a["labels"])[keep].astype(bool), classes)


def comparisons(control: dict, arm: dict, n_boot: int) -> list[tuple[str, dict]]:
    rows = []
    for set_name in ("sge", "clinvar"):
        if set_name not in control["sets"] or set_name not in arm["sets"]:
            continue
        base, other, labels, classes = aligned(control, arm, set_name)
        # predictor = -score: lower score = more damaging
        rows.append((f"{set_name} AUROC", paired_difference_ci(-other, -base, labels, n_boot)))
        if classes is None:
            continue
        for _, first, second in CONTRASTS:
            keep = (classes == first) | (classes == second)
            rows.append((f"{first} vs {second}",
                         paired_difference_ci(-other[keep], -base[keep], classes[keep] == first, n_boot)))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("control")
    ap.add_argument("arms", nargs="+")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)
    control = load(args.control)
    name = lambda path: Path(path).stem  # noqa: E731
    print(f"control: {name(args.control)}; differences arm - control, paired 95% bootstrap intervals")
    for path in args.arms:
        arm = load(path)
        ce = arm["heldout"]["both"]["cross_entropy"] - control["heldout"]["both"]["cross_entropy"]
        print(f"\n{name(path)}: chr20 CE both strands {arm['heldout']['both']['cross_entropy']:.4f} "
              f"({ce:+.4f} nats; {arm['heldout']['both']['bases']:,} bases)")
        for label, result in comparisons(control, arm, args.bootstrap):
            low, high = result["ci95"] or (float("nan"), float("nan"))
            print(f"  {label:<34} {result['difference']:+.4f} [{low:+.4f}, {high:+.4f}]  n={result['n']}")


if __name__ == "__main__":
    main()
