"""Run each batch as slices on several threads, every operator on one core.

The model's operators are small (D = 64-128, windows of 512 bases): spread over N intra-op
threads, each one ends in a barrier, and when another process takes a core the barrier waits for
the descheduled thread. N Python threads that each run a slice of the batch with one intra-op
thread synchronise once per batch instead (torch and ONNX Runtime release the GIL inside
operators). Measured on 2 CPU cores (`benchmarks/slicing_speed.py`, masked graph): idle,
1.01-1.03x (torch) and 1.08-1.10x (ONNX Runtime) the windows/s of one call on 2 threads; with one
competing busy process, 2.3-2.6x (torch), the case of parallel pipeline jobs. Rows are
independent, so slicing never changes a result.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backends import BackendOutput, concat_outputs


def cpu_workers(threads: int | None) -> int:
    """--threads N, or every core this process may use."""
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SlicedBackend:
    """A backend whose `run` splits the batch into `workers` slices run concurrently."""

    def __init__(self, inner, workers: int):
        self.inner, self.workers = inner, workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="mergedna-slice")

    @property
    def name(self) -> str:  # "torch" or "onnx": what output headers record
        return self.inner.name

    @property
    def device(self) -> str:
        return self.inner.device

    @property
    def config(self):  # the wrapped model's: context, width, compression
        return self.inner.config

    @property
    def part(self) -> str:  # the inference graph it runs
        return self.inner.part

    def run(self, ids: np.ndarray, query: np.ndarray | None = None) -> BackendOutput:
        n = min(self.workers, len(ids))
        if n < 2:
            return self.inner.run(ids, query)
        bounds = np.linspace(0, len(ids), n + 1).astype(int)
        parts = [self.pool.submit(self.inner.run, ids[a:b], None if query is None else query[a:b])
                 for a, b in zip(bounds[:-1], bounds[1:])]
        return concat_outputs([part.result() for part in parts])
