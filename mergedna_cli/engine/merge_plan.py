"""Merge decisions that do not depend on the runtime.

The learned tokenizer merges the best-scoring neighbour pairs up to a budget: a discrete choice
made by comparing float32 scores. Two runtimes (PyTorch and ONNX Runtime, CPU and CUDA, even one
runtime at another batch size) compute those scores with different kernels, so where two
candidate merges score within float32 rounding of each other they can choose differently, and
the window's tokens, embeddings and scores with them. (On 1 Mb of BRCA1, both strands, about 1
window in 700 tokenized differently between PyTorch and ONNX Runtime before this module.)

Every graph therefore reports, per row, the smallest gap between a merge it made and one it did
not (`merge_margin`, model/merging.py) and the merges themselves (`merge_plan`). A row whose gap is
at least CERTAIN_MARGIN made the decisions exact arithmetic would make: float32 error in a score
is far smaller (see CERTAIN_MARGIN). For the other rows a float64 copy of the tokenizer (the
"plan" graph) decides, and any row whose float32 plan differs from the float64 one is run again
following the float64 plan. Every runtime thus makes the float64 tokenizer's decisions, whose
own rounding (~1e-16) matters only for gaps no real score pair has been seen to reach.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

# A merge gap below which the float32 decision is checked against the float64 one. On the shipped
# mergedna-small (2,344 BRCA1 windows, both strands; `token_agreement.py --audit`), every float32
# decision that differed from float64 rested on a gap of at most 3.9e-6, in PyTorch and in ONNX
# Runtime alike; about one window in five has a gap below 1e-5. The bound is measured, not proven.
CERTAIN_MARGIN = 1e-5


def no_plan(ids: np.ndarray) -> np.ndarray:
    """A plan input that lets every row decide its own merges."""
    return np.full((ids.shape[0], max(ids.shape[1] - 1, 0)), -1, dtype=np.int64)


def certified_run(run: Callable, reference_plan: Callable[[np.ndarray], np.ndarray],
                  ids: np.ndarray, query: np.ndarray | None = None):
    """run(ids, query, plan) -> BackendOutput, with every row's merges equal to the float64 plan.

    The float64 plan is computed only for rows whose merge margin is below CERTAIN_MARGIN, and
    only the rows whose float32 plan differs from it run again, following it."""
    out = run(ids, query, no_plan(ids))
    unsure = np.flatnonzero(out.merge_margin < CERTAIN_MARGIN)
    if unsure.size == 0:
        return out
    reference = reference_plan(ids[unsure])
    differs = (reference != out.merge_plan[unsure]).any(1)
    if not differs.any():
        return out
    rows = unsure[differs]
    again = run(ids[rows], None if query is None else query[rows], reference[differs])
    return _with_rows(out, rows, again)


def _with_rows(out, rows: np.ndarray, again):
    """`out` with rows `rows` replaced by the rows of `again` (every array of a batch has the
    same shape after its first axis: the token layout depends on the window length only)."""
    fields = {}
    for name, value in vars(out).items():
        if value is not None:
            value = value.copy()
            value[rows] = getattr(again, name)
        fields[name] = value
    return type(out)(**fields)


class ReferencePlans:
    """The float64 tokenizer of a backend, built on first use (most batches never need it) and
    once even when several threads run slices of a batch."""

    def __init__(self, build: Callable):
        self._build, self._graph, self._lock = build, None, threading.Lock()

    def graph(self):
        if self._graph is None:
            with self._lock:
                if self._graph is None:
                    self._graph = self._build()
        return self._graph
