"""`--threads N` for every thread pool a command may start, not only torch's."""

from __future__ import annotations

import os

# OpenMP (torch's CPU kernels), OpenBLAS/MKL (numpy) and Arrow (parquet) size their pools from
# these when they load, so they must be set before numpy, torch or pyarrow is imported; the
# commands import those lazily, after their options are parsed. torch.set_num_threads and ONNX
# Runtime's intra-op setting are applied as well, by the backends.
_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(threads: int | None) -> None:
    if threads:
        for name in _POOL_VARIABLES:
            os.environ[name] = str(threads)
