"""Sequences of different lengths -> PAD-padded id batches.

Inference batches group sequences of similar length (stable sort by length), so a batch carries
little padding; the model's output for a sequence does not depend on its batch (PAD never
influences a real position), so the order is undone afterwards without changing results.
"""

from __future__ import annotations

import numpy as np

from ..alphabet import PAD, encode, reverse_complement


def encode_all(sequences: list[str]) -> list[np.ndarray]:
    return [encode(seq) for seq in sequences]


def pad_batch(ids: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Rows `index` of `ids` as one (B, max length) int64 array, PAD on the right."""
    return pad_rows([ids[i] for i in index])


def pad_rows(rows: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(rows), max(len(r) for r in rows)), PAD, dtype=np.int64)
    for row, seq in zip(out, rows):
        row[: len(seq)] = seq
    return out


def length_sorted_batches(ids: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Index arrays covering every sequence once, shortest first."""
    order = np.argsort(np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def reverse_complements(ids: list[np.ndarray]) -> list[np.ndarray]:
    return [reverse_complement(x) for x in ids]
