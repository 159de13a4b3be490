"""The GPU training path, checked on CPU: compile vs eager, optimizer choice, device sampling,
compression choices, sharded bf16 weights, the pysam-free FASTA reader, and a dry run of the
lent-GPU sprint command."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mergedna_cli.alphabet import N, reverse_complement
from mergedna_cli.model import MergeDNA, MergeDNAConfig, load_model, save_model
from mergedna_cli.model.files import weight_files, weights_sha256
from mergedna_cli.training.corpus import (Corpus, CorpusSource, DeviceWindowSampler, _plain_fasta_records,
                                          _pysam_records)
from mergedna_cli.training.loop import (PretrainObjective, PretrainSettings, compile_objective,
                                        compression_choices, make_optimizer, optimizer_options)

REPO = Path(__file__).resolve().parents[1]


def test_compression_choices_keep_the_mean_sd_and_range():
    values, p = compression_choices((0.5, 0.05, 0.4, 0.6))
    assert values == (0.4, 0.5, 0.6) and sum(p) == pytest.approx(1.0)
    mean = sum(v * q for v, q in zip(values, p))
    sd = sum(q * (v - mean) ** 2 for v, q in zip(values, p)) ** 0.5
    assert mean == pytest.approx(0.5) and sd == pytest.approx(0.05)


def test_time_budget_steps_fit_training_validation_and_checkpoints():
    from mergedna_cli.training.loop import fit_steps

    settings = PretrainSettings(val_every=100, checkpoint_every=400)
    # 300 s left at 0.2 s per step, 2 s per validation, 4 s per checkpoint:
    # 0.95 * 300 - 2 - 4 = 279 s over 0.2 + 0.02 + 0.01 = 0.23 s per step -> 1213 more steps
    steps = fit_steps(30, 300.0, 0.2, 2.0, 4.0, settings, world=1)
    assert steps == 30 + 1213
    run_seconds = (steps - 30) * 0.2 + ((steps - 30) // 100 + 1) * 2.0 + ((steps - 30) // 400 + 1) * 4.0
    assert run_seconds <= 300.0


def test_fused_adamw_on_cuda_default_elsewhere():
    assert optimizer_options(torch.device("cuda")) == {"fused": True}
    assert optimizer_options(torch.device("cpu")) == {}
    optimizer = make_optimizer(MergeDNA(MergeDNAConfig.preset("tiny")), PretrainSettings())
    assert not optimizer.param_groups[0]["fused"]


# Compiled and eager must give the same losses and gradients. aot_eager runs dynamo's capture and
# AOT autograd (what changes the program) without inductor's code generation, which takes minutes
# on this project's 2 CPU cores; MERGEDNA_COMPILE_BACKEND=inductor runs the full compiler.
BACKEND = os.environ.get("MERGEDNA_COMPILE_BACKEND", "aot_eager")


@pytest.mark.parametrize("scope", ["blocks", "step"])
def test_compiled_step_equals_eager(scope):
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True  # inductor draws the masks with torch's own RNG
    torch.manual_seed(0)
    model = MergeDNA(MergeDNAConfig.preset("tiny", context=128))
    ids = torch.randint(0, 5, (2, 128))
    weight = torch.where(torch.rand(2, 128) < 0.3, 0.1, 1.0)
    objective = PretrainObjective(model)
    results = []
    for compiled in (False, True):
        call = compile_objective(PretrainObjective(model), model, scope, BACKEND) if compiled else objective
        torch.manual_seed(5)
        losses = call(ids, 0.5, weight)
        losses.total.backward()
        results.append((losses, [p.grad.clone() for p in model.parameters()]))
        model.zero_grad(set_to_none=True)
        for block in model.modules():  # undo the blocks scope's instance attributes
            block.__dict__.pop("attend", None)
            block.__dict__.pop("feed_forward", None)
    (eager, g_eager), (comp, g_comp) = results
    for key in ("total", "mtr", "latent_mtr", "amtm", "masked_ce"):  # tolerance: 1e-5 relative
        assert float(getattr(comp, key).detach()) == pytest.approx(float(getattr(eager, key).detach()), rel=1e-5), key
    for a, b in zip(g_eager, g_comp):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def _n_rich_corpus(tmp_path: Path) -> Corpus:
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGTacgt"), 4000))
    seq = seq[:1000] + "N" * 1500 + seq[2500:]  # 1.5 kb of N: many windows fail the 10 % rule
    fasta = tmp_path / "n.fa"
    fasta.write_text(">r\n" + seq + "\n>s\n" + seq[::-1] + "\n")
    return Corpus.build([CorpusSource(str(fasta))], tmp_path / "cache")


def test_device_sampler_draws_valid_windows_with_the_n_rule(tmp_path):
    corpus = _n_rich_corpus(tmp_path)
    sampler = DeviceWindowSampler(corpus, 200, seed=1, device="cpu")
    ids, soft = sampler.sample_tensors(64)
    assert ids.shape == (64, 200) and ids.dtype == torch.int64 and soft.dtype == torch.bool
    assert ((ids == N).double().mean(1) <= 0.1).all() and int(sampler.n_filter_misses) == 0
    # every window is a slice of the corpus, forward (with its case) or reverse-complemented
    text = np.asarray(corpus.ids)
    case = np.asarray(corpus.soft)
    starts = np.arange(len(text) - 200 + 1)
    slices = text[starts[:, None] + np.arange(200)]
    flips = 0
    for window, lower in zip(ids.numpy().astype(np.uint8), soft.numpy()):
        fwd = np.flatnonzero((slices == window).all(1))
        if len(fwd):
            assert any((case[s:s + 200].astype(bool) == lower).all() for s in fwd)
            continue
        rev = np.flatnonzero((slices == reverse_complement(window)).all(1))
        assert len(rev), "window is no slice of the corpus"
        assert any((case[s:s + 200][::-1].astype(bool) == lower).all() for s in rev)
        flips += 1
    assert 10 < flips < 54  # about half reverse-complemented
    # the state restores the stream
    state = json.loads(json.dumps(sampler.state()))
    a = sampler.sample_tensors(8)[0]
    sampler.set_state(state)
    assert torch.equal(sampler.sample_tensors(8)[0], a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sharded_weights_round_trip(tmp_path, dtype):
    torch.manual_seed(0)
    model = MergeDNA(MergeDNAConfig.preset("tiny"))
    out = save_model(model, tmp_path / "m", dtype=dtype, max_shard_bytes=40_000)
    shards = weight_files(out)
    assert len(shards) > 2 and all(p.stat().st_size < 40_000 + 16_384 for p in shards)
    assert [p.name for p in shards] == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    assert not (out / "model.safetensors").exists()
    loaded = load_model(out)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, name  # bf16 on disk, fp32 in the model
        assert torch.equal(b, a.to(dtype).to(a.dtype)), name
    # sha256: of the shards' bytes in order, stable across calls and equal to hashing their concatenation
    import hashlib
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in shards)).hexdigest()
    assert weights_sha256(out) == weights_sha256(out) == digest
    # writing one file again removes the shards (a directory never holds both layouts)
    save_model(model, out)
    assert weight_files(out) == [out / "model.safetensors"] and not list(out.glob("model-*"))


def test_plain_fasta_reader_matches_pysam(tmp_path):
    if _pysam_records is None:
        pytest.skip("pysam not installed")
    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(">one desc here\nACGTacgtNN\nRYKM\n>two\n\n>three\nggg\n")
    assert list(_plain_fasta_records(str(path))) == list(_pysam_records(str(path)))


def test_sprint_picks_the_compile_scope_that_trains_the_most_bases(tmp_path):
    sys.path.insert(0, str(REPO / "models" / "recipes"))
    import gpu_sprint_large as sprint

    speed = tmp_path / "speed.json"
    rows = [{"preset": "large", "mode": "eager", "bases_per_s": 1e5, "warmup_seconds": 5},
            {"preset": "large", "mode": "blocks", "bases_per_s": 3e5, "warmup_seconds": 30},
            {"preset": "large", "mode": "step", "bases_per_s": 4e5, "warmup_seconds": 60},
            {"preset": "base", "mode": "step", "bases_per_s": 9e9, "warmup_seconds": 1},
            {"preset": "large", "mode": "step", "error": "boom"}]
    speed.write_text(json.dumps({"rows": rows}))
    assert sprint.choose_scope(speed, "large", 400) == "blocks"  # step: 3 x 60 s of compiling
    assert sprint.choose_scope(speed, "large", 2000) == "step"
    speed.write_text(json.dumps({"rows": rows[:1]}))
    assert sprint.choose_scope(speed, "large", 400) == "off"
    assert sprint.choose_scope(tmp_path / "missing.json", "large", 400) == "blocks"


def test_sprint_dry_run_on_cpu(tmp_path):
    """The whole device command (speed benchmark, time-budgeted pretrain, held-out evaluation,
    bf16 shards, packing) with tiny sizes on CPU."""
    sys.path.insert(0, str(REPO / "models" / "recipes"))
    import gpu_sprint_large as sprint

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for name in sprint.TRAIN + [sprint.HELD_OUT]:
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        seq = "".join(rng.choice(list("ACGTacgt"), 2000))
        with gzip.open(path, "wt") as handle:
            handle.write(f">{path.name.split('.')[0]}\n{seq}\n")
    out = tmp_path / "OUT"
    run = subprocess.run(
        [sys.executable, str(REPO / "models" / "recipes" / "gpu_sprint_large.py"), "--data", str(data),
         "--out", str(out), "--work", str(tmp_path / "work"), "--budget", "40", "--device", "cpu",
         "--preset", "tiny", "--context", "128", "--batch", "2", "--warmup", "4", "--log-every", "2",
         "--val-every", "4", "--compile-scope", "off", "--skip-zero-shot", "--eval-windows", "4",
         "--repeat-weight", "0.1",
         "--bench-seconds", "30", "--bench-args",
         "--runs tiny:eager --context 128 --batch 2 --steps 1 --warmup 1 --peak-tflops 1"],
        capture_output=True, text=True, timeout=170, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert "run.tar" in names and len(names) <= 8
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    import tarfile
    with tarfile.open(out / "run.tar") as tar:
        tar.extractall(model_dir, filter="data")
    for name in names:
        if name.startswith("model-"):
            (model_dir / name).write_bytes((out / name).read_bytes())
    model = load_model(model_dir)  # bf16 shards + index + config: a model directory
    assert model.config.name == "tiny" and next(model.parameters()).dtype == torch.float32
    training = json.loads((model_dir / "training.json").read_text())
    assert training["settings"]["time_budget"] > 0 and training["repeat_weight"] == 0.1
    # the step count came from the probe; on a busy CPU later steps can run slower than the
    # probed ones, and the hard limit then stops the run early (the model is still saved)
    assert 4 < training["step"] <= training["time_budget"]["steps"]
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    assert 0 < evaluation["model_both_strands"]["cross_entropy"] < 3
    speed = json.loads((model_dir / "speed.json").read_text())
    assert speed["rows"][0]["bases_per_s"] > 0 and speed["rows"][0]["flops_per_base"] > 0
