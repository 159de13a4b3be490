"""`mergedna pretrain`: resume, torchrun/gloo, corrupt checkpoints, corpus handling."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import YEAST_FASTA

from mergedna_cli.alphabet import N
from mergedna_cli.training.corpus import Corpus, CorpusSource, WindowSampler


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Path:
    """30 kb of real yeast sequence, soft-masked in part, as a gzip FASTA."""
    with gzip.open(YEAST_FASTA, "rt") as handle:
        seq = "".join(line.strip() for line in handle if not line.startswith(">"))[:30_000]
    path = tmp_path_factory.mktemp("genome") / "yeast30k.fa.gz"
    with gzip.open(path, "wt") as out:
        out.write(">chrI_part\n" + seq[:20_000].lower() + seq[20_000:] + "\n")
    return path


def train_args(genome: Path, out: Path, steps: int) -> list[str]:
    return ["pretrain", "--fasta", str(genome), "-o", str(out), "--preset", "tiny",
            "--context", "128", "--batch-size", "4", "--steps", str(steps), "--warmup", "2",
            "--log-every", "1", "--checkpoint-every", "2", "--val-every", "1000", "--quiet",
            "--threads", "1"]


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["total"] for r in rows if "total" in r}


def test_init_from_starts_a_new_stage_from_a_models_weights(run_cli, genome, tmp_path):
    from mergedna_cli.model import load_model
    from mergedna_cli.model.files import weights_sha256

    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli(*train_args(genome, first, 2)).returncode == 0
    args = [a for a in train_args(genome, second, 3) if a not in ("--preset", "tiny")]
    run = run_cli(*args, "--init-from", str(first), "--lr", "0")  # lr 0: the weights stay put
    assert run.returncode == 0, run.stderr
    a, b = load_model(first).state_dict(), load_model(second).state_dict()
    assert all((a[k] == b[k]).all() for k in a)
    record = json.loads((second / "training.json").read_text())
    assert record["step"] == 3 and record["init_from"]["sha256"] == weights_sha256(first)
    assert record["init_from"]["bases_seen"] == 2 * 4 * 128
    clash = run_cli(*args, "--init-from", str(first), "--resume")
    assert clash.returncode != 0 and "cannot be combined with --resume" in clash.stderr


def test_resume_continues_exactly(run_cli, genome, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_cli(*train_args(genome, straight, 4)).returncode == 0
    assert run_cli(*train_args(genome, resumed, 2)).returncode == 0
    run = run_cli(*train_args(genome, resumed, 4), "--resume")
    assert run.returncode == 0, run.stderr
    a, b = losses(straight), losses(resumed)
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        assert b[step] == pytest.approx(a[step], rel=1e-6), f"step {step} differs after resume"
    info = json.loads((resumed / "training.json").read_text())
    assert info["step"] == 4 and info["bases_seen"] == 4 * 4 * 128


def test_corrupt_checkpoint_is_a_clear_error(run_cli, genome, tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(genome, out, 2)).returncode == 0
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    blob = (latest / "optimizer.safetensors").read_bytes()
    (latest / "optimizer.safetensors").write_bytes(blob[: len(blob) // 2])
    run = run_cli(*train_args(genome, out, 4), "--resume")
    assert run.returncode == 1
    assert run.stderr.startswith("mergedna: error: checkpoint") and "corrupt" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_refuses_to_overwrite_checkpoints_without_resume(run_cli, genome, tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(genome, out, 2)).returncode == 0
    run = run_cli(*train_args(genome, out, 4))
    assert run.returncode == 2 and "--resume" in run.stderr


def test_two_process_gloo_run(run_cli, genome, tmp_path):
    out = tmp_path / "ddp"
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
         "29533", "-m", "mergedna_cli", *train_args(genome, out, 3)],
        capture_output=True, text=True, timeout=300, env=run_cli.env())
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads((out / "training.json").read_text())
    assert info["world_size"] == 2 and info["step"] == 3
    assert info["bases_seen"] == 3 * 2 * 4 * 128  # both ranks' windows count


def test_corpus_uppercases_excludes_and_skips_n(tmp_path):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">a\n" + "acgt" * 50 + "N" * 200 + "ACGT" * 50 + "\n")
    bed = tmp_path / "ex.bed"
    bed.write_text("a\t0\t8\n")
    corpus = Corpus.build([CorpusSource(str(fasta))], tmp_path / "cache", [str(bed)])
    assert (corpus.ids[:8] == N).all() and list(corpus.ids[8:12]) == [0, 1, 2, 3]
    sampler = WindowSampler(corpus, context=100, seed=1, max_n_fraction=0.1)
    batch = sampler.sample(64)
    assert batch.shape == (64, 100) and ((batch == N).mean(1) <= 0.1).all()


def test_sampling_weights_follow_files(tmp_path):
    a, b = tmp_path / "human_a.fa", tmp_path / "other_b.fa"
    a.write_text(">a\n" + "A" * 1000 + "\n")
    b.write_text(">b\n" + "C" * 1000 + "\n")
    from mergedna_cli.pipelines.pretrain import parse_weights
    sources = parse_weights([str(a), str(b)], ["human_*=9"])
    corpus = Corpus.build(sources, tmp_path / "cache")
    batch = WindowSampler(corpus, 50, seed=0, reverse_complement_prob=0.0).sample(2000)
    share_a = float((batch[:, 0] == 0).mean())
    assert 0.85 < share_a < 0.95  # 9:1 weighting


def test_sigterm_saves_checkpoint_and_record(run_cli, genome, tmp_path):
    import signal
    import time

    out = tmp_path / "killed"
    args = train_args(genome, out, 10_000)
    args[args.index("--checkpoint-every") + 1] = "100000"  # only the signal can trigger a save
    proc = run_cli.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().endswith("mergedna: error: interrupted")
    latest = (out / "checkpoints" / "latest").read_text().strip()
    step = int(latest.split("-")[1])
    record = json.loads((out / "training.json").read_text())
    assert step >= 3 and record["step"] == step and record["bases_seen"] == step * 4 * 128


# -- repeat down-weighting: the FASTA's case as a per-base loss weight ----------------------------

def _cased_fasta(tmp_path: Path) -> Path:
    """Random sequence whose A and C bases are lower case, so case is a function of the base."""
    import numpy as np

    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 3000))
    fasta = tmp_path / "cased.fa"
    fasta.write_text(">r\n" + seq.replace("A", "a").replace("C", "c") + "\n")
    return fasta


def test_corpus_keeps_the_case_and_its_cache_key_names_the_format(tmp_path, monkeypatch):
    import numpy as np

    from mergedna_cli.training import corpus as corpus_module

    fasta = tmp_path / "g.fa"
    fasta.write_text(">a\nacgtNNACGTnn\n")
    corpus = Corpus.build([CorpusSource(str(fasta))], tmp_path / "cache")
    assert list(corpus.soft) == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    assert list(corpus.ids[:4]) == [0, 1, 2, 3]  # lower case still reads as the base
    key = corpus_module._cache_key([CorpusSource(str(fasta))], [])
    monkeypatch.setattr(corpus_module, "CACHE_FORMAT", "older")
    assert corpus_module._cache_key([CorpusSource(str(fasta))], []) != key  # old caches rebuild
    assert np.asarray(corpus.soft).dtype == np.uint8


@pytest.mark.parametrize("rc", [0.0, 1.0])
def test_sampled_case_follows_the_window_and_its_reverse_complement(tmp_path, rc):
    import numpy as np

    corpus = Corpus.build([CorpusSource(str(_cased_fasta(tmp_path)))], tmp_path / "cache")
    ids, soft = WindowSampler(corpus, 100, seed=3, reverse_complement_prob=rc).sample_batch(32)
    lower = (0, 1) if rc == 0.0 else (3, 2)  # a, c; on the reverse strand their complements t, g
    assert soft.shape == ids.shape and (soft == np.isin(ids, lower)).all()


def test_repeat_weight_one_gives_exactly_the_unweighted_losses():
    import torch

    from mergedna_cli.model import MergeDNA, MergeDNAConfig, pretraining_losses

    torch.manual_seed(0)
    model = MergeDNA(MergeDNAConfig.preset("tiny"))
    ids = torch.randint(0, 5, (3, 256))
    plain = pretraining_losses(model, ids, 0.5, torch.Generator().manual_seed(1))
    ones = pretraining_losses(model, ids, 0.5, torch.Generator().manual_seed(1), base_weight=torch.ones(3, 256))
    for key in ("total", "mtr", "latent_mtr", "amtm", "masked_ce", "masked_acc"):
        assert torch.equal(getattr(plain, key), getattr(ones, key)), key


def test_repeat_weight_scales_only_the_lower_case_bases():
    """Each loss is a weighted mean sum(w c) / sum(w u) over bases (u = 1 for a unit: a scored base
    for MTR, a masked base for AMTM). From the losses with weights 1 on upper / 0 on lower case
    (mean M0 over n0 units) and the reverse (M1 over n1), weight 0.1 on lower case must give
    (n0 M0 + 0.1 n1 M1) / (n0 + 0.1 n1): the upper-case bases' contribution is unchanged."""
    import torch

    from mergedna_cli.alphabet import N_BASES
    from mergedna_cli.model import MergeDNA, MergeDNAConfig, pretraining_losses

    torch.manual_seed(0)
    cfg = MergeDNAConfig.preset("tiny")
    model = MergeDNA(cfg)
    ids = torch.randint(0, 5, (3, 256))
    lower = torch.rand(3, 256) < 0.4

    def run(weight):
        return pretraining_losses(model, ids, 0.5, torch.Generator().manual_seed(1), base_weight=weight)

    upper_only, lower_only = run((~lower).float()), run(lower.float())
    mixed = run(torch.where(lower, 0.1, 1.0))
    # the masks of the tiny preset: uniform single bases, the generator's first draw
    masked = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < cfg.random_mask_fraction)
    scored = ids < N_BASES
    units = {"mtr": scored, "latent_mtr": scored, "amtm": masked}
    for key, unit in units.items():
        n0, n1 = float((unit & ~lower).sum()), float((unit & lower).sum())
        m0, m1 = float(getattr(upper_only, key).detach()), float(getattr(lower_only, key).detach())
        expected = (n0 * m0 + 0.1 * n1 * m1) / (n0 + 0.1 * n1)
        assert float(getattr(mixed, key).detach()) == pytest.approx(expected, rel=1e-5), key
        assert abs(float(getattr(mixed, key).detach()) - float(getattr(run(None), key).detach())) > 1e-4, key


def test_repeat_weight_is_recorded(run_cli, genome, tmp_path):
    out = tmp_path / "rw"
    run = run_cli(*train_args(genome, out, 2), "--repeat-weight", "0.1")
    assert run.returncode == 0, run.stderr
    info = json.loads((out / "training.json").read_text())
    assert info["repeat_weight"] == 0.1 and info["settings"]["repeat_weight"] == 0.1
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    assert json.loads((latest / "trainer.json").read_text())["settings"]["repeat_weight"] == 0.1


def test_checkpoint_files_are_readable_by_colleagues(tmp_path):
    """Optimizer state, weights and trainer state get the umask mode (0644 here), not 0600, so a
    shared cluster's colleagues can resume or load them."""
    import stat

    import torch

    from mergedna_cli.model.config import MergeDNAConfig
    from mergedna_cli.model.network import MergeDNA
    from mergedna_cli.training.checkpoint import save_checkpoint

    model = MergeDNA(MergeDNAConfig.preset("tiny"))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(0, 4, (1, 64))).logits.sum().backward()
    optimizer.step()
    old = os.umask(0o022)
    try:
        final = save_checkpoint(tmp_path, 1, model, optimizer, {"bases_seen": 64})
    finally:
        os.umask(old)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in final.iterdir()}
    assert modes["optimizer.safetensors"] == 0o644 and modes["model.safetensors"] == 0o644, modes
