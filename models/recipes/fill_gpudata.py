#!/usr/bin/env python3
"""Fill `.gpudata/` (git-ignored, carried to a lent GPU) with copies of the shared data the GPU
sprint reads, in the layout of ../shared/data, and check that the travelling tree stays < 64 MiB.

    python models/recipes/fill_gpudata.py            # then run the sprint with carry [".gpudata"]

The device machine sees only the repository (../shared is not there): the sprint links
../shared/data to .gpudata on that machine, so every script's default data paths work unchanged.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
FOLDERS = ["pretrain_corpus", "pretrain_human_extra", "pretrain_human_more", "pretrain_vertebrate_extra",
           # zero-shot sets (benchmarks/zero_shot.py)
           "brca1_sge_findlay2018", "clinvar_brca1_2018", "grch38_chr17_brca1_region"]
LIMIT = 64 << 20


def travelling_bytes(carried: Path) -> int:
    """Tracked files + untracked files git does not ignore + the carried folder."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    total = sum((REPO / name.decode()).stat().st_size for name in listed
                if name and (REPO / name.decode()).is_file())
    return total + sum(p.stat().st_size for p in carried.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SHARED)
    ap.add_argument("--dest", type=Path, default=REPO / ".gpudata")
    args = ap.parse_args()
    exclude = REPO / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if "/.gpudata/" not in (exclude.read_text() if exclude.is_file() else ""):
        with open(exclude, "a") as handle:
            handle.write("/.gpudata/\n")
    for folder in FOLDERS:
        src, dst = args.source / folder, args.dest / folder
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.iterdir()):
            if path.is_file() and not (dst / path.name).is_file():
                shutil.copy2(path, dst / path.name)
    size = travelling_bytes(args.dest)
    print(f"{args.dest}: {sum(p.stat().st_size for p in args.dest.rglob('*') if p.is_file()) / 2**20:.1f} MiB; "
          f"travelling tree with it: {size / 2**20:.1f} MiB of the {LIMIT >> 20} MiB limit")
    if size >= LIMIT:
        raise SystemExit("error: the travelling tree is over the limit; carry less")


if __name__ == "__main__":
    main()
