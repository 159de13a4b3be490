"""Sliced batches (engine/parallel.py): one slice per thread gives exactly the single-call result."""

from __future__ import annotations

import numpy as np
import pytest

from mergedna_cli.alphabet import N
from mergedna_cli.engine.backends import TorchBackend
from mergedna_cli.engine.parallel import SlicedBackend
from mergedna_cli.engine.load import make_backend


@pytest.mark.parametrize("part", ["full", "embedding", "masked", "tokens"])
@pytest.mark.parametrize("rows", [1, 2, 7])
def test_slices_give_the_single_call_result(tiny_model_dir, part, rows):
    single = TorchBackend(tiny_model_dir, device="cpu", threads=1, part=part)
    sliced = SlicedBackend(TorchBackend(tiny_model_dir, device="cpu", threads=1, part=part), workers=3)
    rng = np.random.default_rng(rows)
    context = single.config.context
    ids = rng.integers(0, 4, (rows, context))
    ids[-1, : context // 3] = N  # a run of N in one row
    query = rng.integers(0, context, (rows, 5)) if part == "masked" else None
    a, b = single.run(ids, query), sliced.run(ids, query)
    for name in ("log_probs", "token_vectors", "token_sizes", "token_mask", "base2tok"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.shape == y.shape and np.array_equal(x, y), name
    assert sliced.part == part and sliced.config == single.config


def test_factory_slices_on_cpu_only_with_several_threads(tiny_model_dir):
    assert isinstance(make_backend(str(tiny_model_dir), "torch", "cpu", threads=2), SlicedBackend)
    assert not isinstance(make_backend(str(tiny_model_dir), "torch", "cpu", threads=1), SlicedBackend)
