"""The shipped default model: it loads without --model, its card matches its weights, and ONNX
Runtime matches PyTorch on it within 1e-4."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE_FASTA, EXAMPLE_VCF

from mergedna_cli.model.files import weights_sha256
from mergedna_cli.model_dirs import resolve_model_dir


@pytest.fixture(scope="module")
def shipped() -> Path:
    return resolve_model_dir(None)


def test_card_names_the_weights(shipped):
    card = (shipped / "MODEL_CARD.md").read_text()
    assert weights_sha256(shipped) in card
    assert (shipped / "loss_curve.png").stat().st_size > 10_000
    size_mb = (shipped / "model.safetensors").stat().st_size / 1e6
    assert size_mb < 25


def test_the_larger_shipped_model_loads_by_name(run_cli):
    base = resolve_model_dir("mergedna-base")
    assert weights_sha256(base) in (base / "MODEL_CARD.md").read_text()
    assert (base / "model.safetensors").stat().st_size / 1e6 < 25
    run = run_cli("info", "--model", "mergedna-base", timeout=120)
    assert run.returncode == 0, run.stderr
    facts = dict(line.split("\t", 1) for line in run.stdout.splitlines())
    assert facts["preset"] == "base" and facts["weights sha256"] == weights_sha256(base)


def test_info_defaults_to_the_shipped_model(run_cli, shipped):
    run = run_cli("info", timeout=120)
    assert run.returncode == 0, run.stderr
    facts = dict(line.split("\t", 1) for line in run.stdout.splitlines())
    assert facts["weights sha256"] == weights_sha256(shipped)
    assert facts["name"] == "mergedna-small" and re.match(r"[\d,]+$", facts["bases seen"])


def test_onnx_matches_torch_on_the_shipped_model(shipped):
    from mergedna_cli.engine.backends import OnnxBackend, TorchBackend
    from mergedna_cli.engine.onnx_export import parity_check
    from mergedna_cli.io.reference import Reference
    from mergedna_cli.model.files import load_config

    config = load_config(shipped)
    onnx_path = shipped / "model.onnx"
    assert onnx_path.is_file(), "the shipped model should carry its exported ONNX graph"
    reference = Reference(EXAMPLE_FASTA)  # real sequence 43,020,001-43,150,000
    starts = np.arange(43_044_000, 43_044_000 + 24 * 4_000, 4_000)
    windows = np.stack([reference.fetch_ids("chr17", s, s + config.context) for s in starts]).astype(np.int64)
    report = parity_check(TorchBackend(shipped, device="cpu", threads=1),
                          OnnxBackend(onnx_path, config, device="cpu", threads=1),
                          [windows[:1], windows[:8], windows[8:24]])
    assert report.tokens_identical
    assert report.max_abs_log_prob <= 1e-4 and report.max_abs_vector <= 1e-4, report


def test_every_norm_is_fused_in_the_shipped_graphs(shipped):
    """Each RMSNorm is one SimplifiedLayerNormalization node (layers.RMSNorm), none left as the
    Pow/ReduceMean/Add/Sqrt/Div/Mul chain (nothing else in the graphs takes a mean)."""
    onnx = pytest.importorskip("onnx")

    def ops(name: str) -> list[str]:
        return [node.op_type for node in onnx.load(str(shipped / name)).graph.node]

    for name in ("model.tokens.onnx", "model.embedding.onnx", "model.onnx", "model.masked.onnx"):
        assert ops(name).count("SimplifiedLayerNormalization") > 0 and "ReduceMean" not in ops(name), name


def test_onnx_inference_runs_without_torch(run_cli, shipped, tmp_path):
    """`--backend onnx` on the shipped model needs only config.json, the weights' sha256 and the
    shipped graphs: score, embed and tracks must not import torch (~1.5 s of start-up per job)."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "torch.py").write_text('raise ImportError("torch is blocked in this test")\n')
    out = tmp_path / "scored.vcf.gz"
    env = {"PYTHONPATH": str(blocked)}
    run = run_cli("score", "--fasta", EXAMPLE_FASTA, "--vcf", EXAMPLE_VCF, "-o", out, "--backend", "onnx",
                  "--device", "cpu", "--threads", "2", timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "scored 284 records (ok 284)" in run.stderr + run.stdout
    embed = run_cli("embed", "--fasta", EXAMPLE_FASTA, "--region", "chr17:43,044,295-43,050,000",
                    "-o", tmp_path / "e.npz", "--backend", "onnx", "--device", "cpu", timeout=300, env=env,
                    cwd=tmp_path)
    assert embed.returncode == 0, embed.stderr
    tracks = run_cli("tracks", "--fasta", EXAMPLE_FASTA, "--region", "chr17:43,044,295-43,050,000",
                     "-o", tmp_path / "t", "--backend", "onnx", "--quiet", timeout=300, env=env, cwd=tmp_path)
    assert tracks.returncode == 0, tracks.stderr  # --device auto: ONNX Runtime, not torch, is asked about GPUs
