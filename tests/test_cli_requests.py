"""Each command passes its options through: cli/X.py parses them into pipelines.X's request and
calls pipelines.X.run with it (here replaced by a recorder), so these run in-process in
milliseconds. Options are given non-default values, so a dropped or swapped option shows.
`score` is tested by its own files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mergedna_cli.cli.app import app
from mergedna_cli.cli.options import DebugFlag
from mergedna_cli.cli.threads import _POOL_VARIABLES
from mergedna_cli.pipelines.choices import (
    BackendChoice,
    Balance,
    CompileScope,
    GraphPart,
    Precision,
    Preset,
    Sampler,
    StrandChoice,
    Task,
)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """--threads sets the thread-pool variables of this process: restored after each test."""
    for name in _POOL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(DebugFlag, "on", False)


def invoke(monkeypatch, module: str, args: list[str], result=None):
    """Run `mergedna ARGS` with pipelines.<module>.run recording its arguments."""
    import importlib

    pipeline = importlib.import_module(f"mergedna_cli.pipelines.{module}")
    calls = []

    def record(request, *args, **kwargs):
        calls.append((request, args, kwargs))
        return result

    monkeypatch.setattr(pipeline, "run", record)
    outcome = runner.invoke(app, [str(a) for a in args])
    assert outcome.exit_code == 0, (outcome.output, outcome.exception)
    assert len(calls) == 1
    return calls[0]


def logger_of(call):
    _, args, kwargs = call
    return args[0] if args else kwargs["log"]


def test_embed(monkeypatch):
    from mergedna_cli.pipelines.embed import EmbedRequest

    call = invoke(monkeypatch, "embed", [
        "embed", "--fasta", "ref.fa", "-o", "out.npz", "--region", "chr1:1-100", "--region", "chr2",
        "--per-token", "--model", "m", "--backend", "torch", "--device", "cpu", "--batch-size", "7",
        "--strand", "forward", "--threads", "3", "--quiet"])
    assert call[0] == EmbedRequest(
        fasta="ref.fa", out="out.npz", regions=None, region=("chr1:1-100", "chr2"), per_token=True, model="m",
        backend=BackendChoice.torch, device="cpu", batch_size=7, strand=StrandChoice.forward, threads=3)
    assert logger_of(call).quiet
    request = invoke(monkeypatch, "embed", ["embed", "--fasta", "ref.fa", "-o", "o.parquet", "--regions", "r.bed"])[0]
    assert (request.regions, request.region, request.batch_size, request.backend, request.strand) == (
        "r.bed", (), "auto", BackendChoice.auto, StrandChoice.both)


def test_tracks(monkeypatch):
    from mergedna_cli.pipelines.tracks import TracksRequest

    call = invoke(monkeypatch, "tracks", [
        "tracks", "--fasta", "ref.fa", "-o", "P", "--regions", "r.bed", "--contig", "chr1", "--contig", "chr2",
        "--signals", "--mask-spacing", "8", "--compression", "0.4", "--track-line", "--chunk-bases", "4096",
        "--restart", "--hub", "H", "--hub-genome", "hg19", "--hub-email", "a@b.c", "--model", "m",
        "--backend", "torch", "--device", "cpu", "--batch-size", "5", "--strand", "forward", "--threads", "2", "-q"])
    assert call[0] == TracksRequest(
        fasta="ref.fa", out="P", regions="r.bed", region=(), genome=False, contig=("chr1", "chr2"), signals=True,
        mask_spacing=8, compression=0.4, track_line=True, chunk_bases=4096, restart=True, hub="H",
        hub_genome="hg19", hub_email="a@b.c", model="m", backend=BackendChoice.torch, device="cpu",
        batch_size=5, strand=StrandChoice.forward, threads=2)
    assert logger_of(call).quiet
    request = invoke(monkeypatch, "tracks", ["tracks", "--fasta", "ref.fa", "-o", "P", "--genome"])[0]
    assert request == TracksRequest(fasta="ref.fa", out="P", genome=True)


def test_merge_tracks(monkeypatch):
    from mergedna_cli.pipelines.merge_tracks import MergeTracksRequest

    call = invoke(monkeypatch, "merge_tracks", ["merge-tracks", "A", "B", "--fasta", "ref.fa", "-o", "M", "-q"])
    assert call[0] == MergeTracksRequest(parts=("A", "B"), fasta="ref.fa", out="M")
    assert logger_of(call).quiet


def test_export_onnx(monkeypatch):
    from mergedna_cli.pipelines.export_onnx import ExportOnnxRequest

    call = invoke(monkeypatch, "export_onnx", [
        "export-onnx", "-o", "g/x.onnx", "--model", "m", "--tolerance", "0.001", "--part", "masked", "--quiet"])
    assert call[0] == ExportOnnxRequest(out="g/x.onnx", model="m", tolerance=0.001, part=GraphPart.masked)
    assert logger_of(call).quiet


def test_export_parts_are_the_inference_graphs():
    from mergedna_cli.engine.backends import OUTPUTS

    assert [part.value for part in GraphPart] == list(OUTPUTS)


def test_info(monkeypatch):
    from mergedna_cli.pipelines.info import InfoRequest

    call = invoke(monkeypatch, "info", ["info", "--model", "m"], result={"name": "m", "parameters": 1234})
    assert call[0] == InfoRequest(model="m")


def test_info_prints_the_facts(monkeypatch):
    from mergedna_cli.pipelines import info

    monkeypatch.setattr(info, "run", lambda request: {"name": "m", "parameters": 1234})
    assert runner.invoke(app, ["info"]).output == "name\tm\nparameters\t1,234\n"


def test_predict(monkeypatch):
    from mergedna_cli.pipelines.predict import PredictRequest

    call = invoke(monkeypatch, "predict", [
        "predict", "--model", "ft", "--input", "in.bed", "-o", "p.tsv.gz", "--fasta", "ref.fa",
        "--sequence-column", "dna", "--label-column", "5", "--backend", "onnx", "--device", "cpu",
        "--batch-size", "9", "--threads", "2", "--quiet"])
    assert call[0] == PredictRequest(
        model="ft", input="in.bed", out="p.tsv.gz", fasta="ref.fa", sequence_column="dna", label_column="5",
        backend=BackendChoice.onnx, device="cpu", batch_size=9, threads=2)
    assert logger_of(call).quiet


def test_evaluate(monkeypatch):
    from mergedna_cli.pipelines.evaluate import EvaluateRequest

    call = invoke(monkeypatch, "evaluate", [
        "evaluate", "--model", "ft", "--input", "in.tsv", "--json", "m.json", "--fasta", "ref.fa",
        "--sequence-column", "dna", "--label-column", "y", "--backend", "torch", "--device", "cpu",
        "--batch-size", "9", "--threads", "2", "--quiet"], result={"accuracy": 0.5, "n": 4})
    assert call[0] == EvaluateRequest(
        model="ft", input="in.tsv", json_out="m.json", fasta="ref.fa", sequence_column="dna", label_column="y",
        backend=BackendChoice.torch, device="cpu", batch_size=9, threads=2)
    assert logger_of(call).quiet


def test_finetune(monkeypatch):
    from mergedna_cli.finetune.loop import FinetuneSettings
    from mergedna_cli.pipelines.finetune import FinetuneRequest

    summary = {"best": {"epoch": 1, "val_loss": 0.5}, "epochs_run": 2, "train_seconds": 1.0}
    request, _, kwargs = invoke(monkeypatch, "finetune", [
        "finetune", "--train", "t.tsv", "--val", "v.tsv", "-o", "FT", "--model", "base", "--task", "regression",
        "--fasta", "ref.fa", "--sequence-column", "dna", "--label-column", "y", "--epochs", "3", "--lr", "0.01",
        "--batch-size", "8", "--warmup", "0.2", "--weight-decay", "0.1", "--patience", "2", "--freeze-encoder",
        "--balance", "sampling", "--rc-augment", "--hidden", "16", "--dropout", "0.2", "--seed", "5",
        "--device", "cpu", "--threads", "2", "--quiet"], result=summary)
    assert request == FinetuneRequest(
        train="t.tsv", val="v.tsv", out="FT", model="base", task=Task.regression, fasta="ref.fa",
        sequence_column="dna", label_column="y", hidden=16, dropout=0.2, device="cpu", threads=2,
        settings=FinetuneSettings(epochs=3, batch_size=8, lr=0.01, weight_decay=0.1, warmup=0.2, patience=2,
                                  freeze_encoder=True, balance=Balance.sampling.value, seed=5, rc_augment=True))
    assert type(request.settings.balance) is str  # stored in finetune.json as given
    assert set(kwargs) == {"log", "on_step", "warn"}


def test_pretrain(monkeypatch):
    from mergedna_cli.pipelines.pretrain import PretrainRequest
    from mergedna_cli.training.loop import PretrainSettings

    request, _, _ = invoke(monkeypatch, "pretrain", [
        "pretrain", "--fasta", "a.fa", "--fasta", "b.fa.gz", "-o", "PT", "--preset", "tiny", "--context", "128",
        "--batch-size", "4", "--steps", "20", "--lr", "0.002", "--warmup", "3", "--min-lr-ratio", "0.2",
        "--weight-decay", "0.05", "--seed", "7", "--weight", "a*=3", "--val-bed", "v.bed", "--val-windows", "8",
        "--val-every", "5", "--checkpoint-every", "6", "--log-every", "2", "--exclude", "x.bed",
        "--exclude", "y.bed", "--resume", "--precision", "fp32", "--repeat-weight", "0.5", "--compile",
        "--compile-scope", "blocks", "--sampler", "host", "--time-budget", "60", "--cache-dir", "C",
        "--device", "cpu", "--threads", "2", "--quiet"])
    assert request == PretrainRequest(
        fasta=("a.fa", "b.fa.gz"), out="PT", preset=Preset.tiny, config=None, context=128, weights=("a*=3",),
        val_fasta=None, val_bed="v.bed", val_windows=8, exclude_bed=("x.bed", "y.bed"), resume=True,
        init_from=None, cache_dir="C", device="cpu", threads=2, quiet=True,
        settings=PretrainSettings(steps=20, batch_size=4, lr=0.002, warmup_steps=3, min_lr_ratio=0.2,
                                  weight_decay=0.05, seed=7, val_every=5, checkpoint_every=6, log_every=2,
                                  precision=Precision.fp32.value, repeat_weight=0.5, compile=True,
                                  compile_scope=CompileScope.blocks.value, sampler=Sampler.host.value,
                                  time_budget=60.0))
    settings = request.settings
    assert all(type(v) is str for v in (settings.precision, settings.compile_scope, settings.sampler))
    request, _, _ = invoke(monkeypatch, "pretrain", [
        "pretrain", "--fasta", "a.fa", "-o", "PT", "--config", "c.json", "--init-from", "M", "--val-fasta", "v.fa"])
    assert (request.preset, request.config, request.init_from, request.val_fasta) == (None, "c.json", "M", "v.fa")


@pytest.mark.parametrize("args", [
    ["pretrain", "--fasta", "a.fa", "-o", "PT", "--precision", "fp16"],
    ["pretrain", "--fasta", "a.fa", "-o", "PT", "--sampler", "gpu"],
    ["pretrain", "--fasta", "a.fa", "-o", "PT", "--compile-scope", "model"],
    ["pretrain", "--fasta", "a.fa", "-o", "PT", "--preset", "huge"],
    ["finetune", "--train", "t", "--val", "v", "-o", "o", "--task", "ranking"],
    ["export-onnx", "-o", "x.onnx", "--part", "decoder"],
    ["embed", "--fasta", "r.fa", "-o", "o.npz", "--region", "c", "--strand", "reverse"],
])
def test_a_choice_outside_its_enum_is_a_usage_error(args):
    outcome = runner.invoke(app, args)
    assert outcome.exit_code == 2 and "Invalid value" in outcome.output


@pytest.mark.parametrize("args", [["--debug", "info", "--model", "m"], ["info", "--model", "m", "--debug"]])
def test_debug_before_or_after_the_command(monkeypatch, args):
    invoke(monkeypatch, "info", args, result={})
    assert DebugFlag.on


def test_no_debug(monkeypatch):
    invoke(monkeypatch, "info", ["info"], result={})
    assert not DebugFlag.on


def test_compression_is_a_make_backend_argument(monkeypatch):
    """--compression: the torch backend's model is built at it (auto picks torch), before any
    slice runs; onnx is refused."""
    from types import SimpleNamespace

    from mergedna_cli.engine import load
    from mergedna_cli.engine.parallel import SlicedBackend
    from mergedna_cli.errors import UsageError

    built = []

    def single(model, name, device, threads, log, part, compression=None):  # builds at `compression`
        built.append(name)
        return SimpleNamespace(name=name, device=device, part=part,
                               config=SimpleNamespace(compression=0.5 if compression is None else compression))

    monkeypatch.setattr(load, "_single_backend", single)
    backend = load.make_backend(None, "auto", "cpu", threads=2, part="tokens", compression=0.4)
    assert isinstance(backend, SlicedBackend) and backend.name == "torch" and backend.config.compression == 0.4
    assert load.make_backend(None, "auto", "cpu", threads=1, part="tokens").config.compression == 0.5
    assert built == ["torch", "onnx"]
    with pytest.raises(UsageError, match="--backend torch"):
        load.make_backend(None, "onnx", "cpu", part="tokens", compression=0.4)
    with pytest.raises(UsageError, match=r"--compression must be in \[0.05, 1\]"):
        load.make_backend(None, "torch", "cpu", part="tokens", compression=1.5)


def test_the_track_files_are_listed_once():
    from mergedna_cli.io.tracks_writer import track_files

    assert track_files(False) == ["tokens.bed", "boundary.bw", "token_length.bw"]
    assert track_files(True) == track_files(False) + ["entropy.bw", "llr.bw"]


def test_paths_checks_keep_their_cli_name():
    from mergedna_cli.cli import paths
    from mergedna_cli.pipelines import paths as moved

    assert paths.check_output is moved.check_output and paths.check_not_input is moved.check_not_input
    assert Path(moved.__file__).parent.name == "pipelines"
