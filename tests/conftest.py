"""Shared fixtures and helpers: tiny seeded models, the example and test data, `run_cli`.

Data: every test runs on what the repository holds, the README's example inputs in docs/example/
(the BRCA1 slice of chr17, ClinVar SNVs, a regions BED) and tests/data/ (see its PROVENANCE.md).
The larger ../shared/data (the project's shared data folder, next to the checkout) is used only by
tests marked `@pytest.mark.extended`; without it those are skipped and the run says how many.

Everything here is small and seeded: every test must be deterministic and quick on a CPU that may
be busy with other work (CI runners, a training run on the same cores).
"""

from __future__ import annotations

import os
import subprocess
import sys

# Threads stay at torch's default. But when other processes keep the cores busy, OpenMP's default
# spin-waiting makes every tiny op wait for a descheduled worker (measured: ~100x slower, 9.6 s
# instead of 0.08 s per tiny-preset pre-training step). Passive waiting keeps the thread count and
# removes the stall. libgomp reads this once when torch loads, so it must be set before the first
# `import torch`; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from mergedna_cli.alphabet import MASK, PAD  # noqa: E402
from mergedna_cli.model import MergeDNA, MergeDNAConfig  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# The README's example inputs: GRCh38 chr17 at full length, real sequence for
# chr17:43,020,001-43,150,000 (BRCA1 with ~25 kb each side), N elsewhere; 284 ClinVar SNVs.
EXAMPLE_DIR = REPO_ROOT / "docs" / "example"
EXAMPLE_FASTA = EXAMPLE_DIR / "brca1_chr17.fa.gz"
EXAMPLE_VCF = EXAMPLE_DIR / "clinvar_brca1.vcf.gz"
EXAMPLE_BED = EXAMPLE_DIR / "brca1_regions.bed"
EXAMPLE_FIRST_REAL = 43_020_000  # 0-based first real base of EXAMPLE_FASTA; N before it
CHR17_LENGTH = 83_257_441
# Small real data cut for the tests (tests/data/PROVENANCE.md)
TEST_DATA_DIR = REPO_ROOT / "tests" / "data"
YEAST_FASTA = TEST_DATA_DIR / "yeast_R64_chrI_1-120000.fa.gz"  # the first 120 kb of yeast chrI
# The shared data sits next to the repository checkout: <repo>/../shared/data. Only tests marked
# `extended` may use it.
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


# ----------------------------------------------------------------------------- extended tests
# The `extended` marker is registered in pyproject.toml.

EXTENDED_REASON = f"../shared/data not found (looked for {SHARED_DATA_DIR})"


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA_DIR.is_dir():
        return
    skip = pytest.mark.skip(reason=f"extended: {EXTENDED_REASON}")
    for item in items:
        if item.get_closest_marker("extended") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line naming how many extended tests were skipped, and why."""
    count = sum(1 for report in terminalreporter.stats.get("skipped", [])
                if isinstance(report.longrepr, tuple) and f"extended: {EXTENDED_REASON}" in report.longrepr[2])
    if count:
        terminalreporter.write_line(f"{count} extended tests skipped: {EXTENDED_REASON}", yellow=True)


@pytest.fixture
def shared_data_dir(request) -> Path:
    """../shared/data relative to the repository, for tests marked `extended` only (the others
    run on docs/example and tests/data, so a plain clone tests every command)."""
    if request.node.get_closest_marker("extended") is None:
        pytest.fail(f"{request.node.nodeid} uses ../shared/data: mark it @pytest.mark.extended")
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"extended: {EXTENDED_REASON}")
    return SHARED_DATA_DIR


# ----------------------------------------------------------------------------- run_cli

class CliRun:
    """`python -m mergedna_cli ARGS` as a subprocess, in this environment, with stdout and stderr
    captured (text unless `text=False`) and the ONNX cache in this session's temporary folder.

    `env` entries are added to the environment (a value of None removes the variable); `check`
    raises with the command's stderr on a non-zero exit; other keywords go to subprocess.run."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir

    @staticmethod
    def command(*args) -> list[str]:
        return [sys.executable, "-m", "mergedna_cli", *map(str, args)]

    def env(self, extra: dict | None = None) -> dict:
        env = {**os.environ, "MERGEDNA_CACHE": str(self.cache_dir),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    def __call__(self, *args, env: dict | None = None, check: bool = False, text: bool = True,
                 timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(*args), capture_output=True, text=text, timeout=timeout,
                              env=self.env(env), **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"mergedna {' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def popen(self, *args, env: dict | None = None, **kwargs) -> subprocess.Popen:
        """The command started, not waited for (tests that signal or kill it)."""
        return subprocess.Popen(self.command(*args), env=self.env(env), **kwargs)


@pytest.fixture(scope="session")
def run_cli(tmp_path_factory) -> CliRun:
    return CliRun(tmp_path_factory.mktemp("mergedna-cache"))


__all__ = ["MASK", "PAD", "random_ids", "expected_tokens", "round_half_up", "tiny_config",
           "build_model", "FOUR_STEP_CONFIG", "SHARED_DATA_DIR", "EXAMPLE_DIR", "EXAMPLE_FASTA",
           "EXAMPLE_VCF", "EXAMPLE_BED", "EXAMPLE_FIRST_REAL", "CHR17_LENGTH", "TEST_DATA_DIR",
           "YEAST_FASTA", "CliRun"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved random tiny model (config.json + model.safetensors) for CLI and pipeline tests."""
    from mergedna_cli.model import save_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(build_model(MergeDNAConfig.preset("tiny"), seed=0), path)
    return path
