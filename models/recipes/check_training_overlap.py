#!/usr/bin/env python3
"""32-mer overlap of training FASTA files with the held-out human chr20 file and with BRCA1 +-50 kb
(the region of models/recipes/exclude_brca1_locus.bed): a copied stretch shows as a long run of
shared 32-mers; repeats (Alu ~300 bp, L1 fragments) give short runs and a few percent.

    python models/recipes/check_training_overlap.py ../shared/data/pretrain_human_more/*.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mergedna_cli.alphabet import encode  # noqa: E402
from mergedna_cli.training.corpus import fasta_records  # noqa: E402

K = 32
DATA = REPO.parent / "shared" / "data" / "pretrain_corpus"
CHR20 = DATA / "human_GRCh37_chr20_1Mb_vg1kgp.fa.gz"
CHR17 = DATA / "human_GRCh38_chr17_42425000-43600000.fa.gz"
BRCA1 = (569294, 750484)  # exclude_brca1_locus.bed, in the coordinates of CHR17's record


def canonical_kmers(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-bit packed canonical 32-mers at every position and whether they hold a non-ACGT base."""
    n = len(ids) - K + 1
    fwd, rev, bad = np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, bool)
    for j in range(K):
        x = ids[j:j + n].astype(np.uint64) & np.uint64(3)
        fwd |= x << np.uint64(2 * j)
        rev |= (np.uint64(3) - x) << np.uint64(2 * (K - 1 - j))
        bad |= ids[j:j + n] >= 4
    return np.minimum(fwd, rev), bad


def sequence(path, lo=None, hi=None) -> np.ndarray:
    return np.concatenate([encode(seq)[lo:hi] for _, seq in fasta_records(path)])


def main() -> None:
    refs = {}
    for name, ids in (("chr20", sequence(CHR20)), ("brca1", sequence(CHR17, *BRCA1))):
        kmers, bad = canonical_kmers(ids)
        refs[name] = np.unique(kmers[~bad])
    for path in sys.argv[1:]:
        headers = [name for name, _ in fasta_records(path)]
        kmers, bad = canonical_kmers(sequence(path))
        parts = []
        for name, ref in refs.items():
            hit = np.isin(kmers, ref) & ~bad
            edges = np.diff(np.concatenate(([0], hit.astype(np.int8), [0])))
            runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
            parts.append(f"{name}: {hit.sum() / max(1, (~bad).sum()):.2%} of 32-mers shared, "
                         f"longest run {runs.max() if len(runs) else 0}")
        print(f"{Path(path).name} {headers} | " + "; ".join(parts))


if __name__ == "__main__":
    main()
