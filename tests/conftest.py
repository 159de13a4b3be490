"""Shared fixtures and helpers for the model / tokenizer tests.

Everything here is small and seeded: the tests run on a 2-core CPU with the tiny preset while
other work is going on, so every test must finish in a few seconds and be deterministic.
"""

from __future__ import annotations

import os

# Threads stay at torch's default. But with a training run busy on the same 2 cores, OpenMP's
# default spin-waiting makes every tiny op wait for a descheduled worker (measured: ~100x slower,
# 9.6 s instead of 0.08 s per tiny-preset pre-training step). Passive waiting keeps the thread count
# and removes the stall. libgomp reads this once when torch loads, so it must be set before the
# first `import torch`; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from mergedna_cli.alphabet import MASK, PAD  # noqa: E402
from mergedna_cli.model import MergeDNA, MergeDNAConfig  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared data sits next to the repository checkout: <repo>/../shared/data
SHARED_DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()


def round_half_up(value: Fraction | float | int) -> int:
    """round() as the model's budgets use it: halves round up (not Python's banker's rounding)."""
    frac = Fraction(value)
    return int((frac + Fraction(1, 2)).__floor__())


def expected_tokens(compression: float, n_real: int) -> int:
    """Tokens the tokenizer must keep for a row of n_real bases: round(c * n), at least 1."""
    return max(1, round_half_up(Fraction(str(compression)) * n_real))


def random_ids(batch: int, length: int, seed: int, lengths: list[int] | None = None,
               with_n: bool = True) -> torch.Tensor:
    """Random ACGT ids (a few N), right-padded with PAD to `lengths` per row if given."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 4, (batch, length), generator=gen)
    if with_n:
        n_mask = torch.rand(batch, length, generator=gen) < 0.02
        ids = ids.masked_fill(n_mask, 4)
    if lengths is not None:
        assert len(lengths) == batch
        for row, n in enumerate(lengths):
            ids[row, n:] = PAD
    return ids


def tiny_config(**overrides) -> MergeDNAConfig:
    return MergeDNAConfig.preset("tiny", **overrides)


def build_model(config: MergeDNAConfig, seed: int = 0) -> MergeDNA:
    torch.manual_seed(seed)
    return MergeDNA(config)


# A deeper tokenizer than the tiny preset (4 merge steps, so window offsets alternate twice),
# still tiny in width so it runs in milliseconds.
FOUR_STEP_CONFIG = dict(d_model=32, n_heads=2, n_local_encoder=4, n_latent_encoder=1,
                        n_latent_decoder=0, n_local_decoder=1, d_group=16, context=256,
                        latent_merge_blocks=1)


@pytest.fixture
def tiny_model() -> MergeDNA:
    """A freshly initialised, seeded tiny-preset model in eval mode (function scope: tests may
    train or modify it)."""
    return build_model(tiny_config(), seed=0).eval()


@pytest.fixture
def four_step_model() -> MergeDNA:
    return build_model(MergeDNAConfig(**FOUR_STEP_CONFIG), seed=1).eval()


@pytest.fixture(params=["tiny", "four_step"])
def any_tokenizer_model(request) -> MergeDNA:
    if request.param == "tiny":
        return build_model(tiny_config(), seed=0).eval()
    return build_model(MergeDNAConfig(**FOUR_STEP_CONFIG), seed=1).eval()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data relative to the repository; tests that need it skip when it is absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared data directory not found at {SHARED_DATA_DIR} "
                    "(expected ../shared/data next to the repository)")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def pretrain_corpus_dir(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "pretrain_corpus"
    if not path.is_dir():
        pytest.skip(f"pre-training corpus not found at {path}")
    return path


__all__ = ["MASK", "PAD", "random_ids", "expected_tokens", "round_half_up", "tiny_config",
           "build_model", "FOUR_STEP_CONFIG", "SHARED_DATA_DIR"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved random tiny model (config.json + model.safetensors) for CLI and pipeline tests."""
    from mergedna_cli.model import save_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(build_model(MergeDNAConfig.preset("tiny"), seed=0), path)
    return path
