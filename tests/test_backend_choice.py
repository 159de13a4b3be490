"""--backend auto, --device, --batch-size auto (engine/load.py, cli/options.py): what
they resolve to, on this CPU machine and with CUDA availability simulated, and the one-line error
(exit 2) when CUDA is asked for and missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer

from mergedna_cli.cli.options import BackendChoice, parse_batch_size
from mergedna_cli.engine import load as factory
from mergedna_cli.engine.load import choose, make_backend, resolve_batch_size
from mergedna_cli.engine.parallel import SlicedBackend
from mergedna_cli.errors import ModelError, UsageError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FASTA = REPO / "docs" / "example" / "brca1_chr17.fa.gz"
EXAMPLE_VCF = REPO / "docs" / "example" / "clinvar_brca1.vcf.gz"
cpu_only = pytest.mark.skipif(factory._torch_cuda_count() > 0 or factory._onnx_cuda(),
                              reason="this machine has a CUDA device")


@pytest.fixture
def gpu(monkeypatch):
    """Simulate what torch and ONNX Runtime report about CUDA."""
    def set_gpu(torch_devices: int = 0, onnx_cuda: bool = False):
        monkeypatch.setattr(factory, "_torch_cuda_count", lambda files_first=False: torch_devices)
        monkeypatch.setattr(factory, "_onnx_cuda", lambda: onnx_cuda)
    return set_gpu


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MERGEDNA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_auto_on_cpu_is_onnx_and_explicit_choices_stay(gpu):
    gpu(0, False)
    assert choose("auto", "auto") == ("onnx", "cpu")
    assert choose("auto", "cpu") == ("onnx", "cpu")
    assert choose("torch", "auto") == ("torch", "cpu")
    assert choose("onnx", "auto") == ("onnx", "cpu")
    assert choose(BackendChoice.auto, "auto") == ("onnx", "cpu")  # the CLI passes the enum


def test_auto_on_cuda_is_torch_or_whichever_has_cuda(gpu):
    gpu(2, True)
    assert choose("auto", "auto") == ("torch", "cuda")
    assert choose("auto", "cuda:1") == ("torch", "cuda:1")
    assert choose("onnx", "cuda") == ("onnx", "cuda")
    assert choose("auto", "cpu") == ("onnx", "cpu")
    gpu(0, True)  # onnxruntime-gpu with a CPU-only torch: only an explicit CUDA device uses it
    assert choose("auto", "cuda") == ("onnx", "cuda")
    assert choose("auto", "auto") == ("onnx", "cpu")


def test_the_table_decides(gpu, monkeypatch):
    gpu(1, True)
    monkeypatch.setitem(factory.AUTO_BACKEND, "cpu", "torch")
    monkeypatch.setitem(factory.AUTO_BACKEND, "cuda", "onnx")
    assert choose("auto", "cpu") == ("torch", "cpu")
    assert choose("auto", "cuda") == ("onnx", "cuda")


def test_a_required_backend(gpu):
    gpu(0, False)
    assert choose("auto", "auto", require="torch") == ("torch", "cpu")
    assert choose("torch", "cpu", require="torch") == ("torch", "cpu")
    with pytest.raises(UsageError, match="need --backend torch"):
        choose("onnx", "cpu", require="torch")


@pytest.mark.parametrize("backend", ["auto", "torch", "onnx"])
def test_missing_cuda_is_a_usage_error(gpu, backend):
    gpu(0, False)
    with pytest.raises(UsageError, match="--device cuda") as error:
        choose(backend, "cuda")
    assert error.value.exit_code == 2 and "\n" not in str(error.value)


def test_bad_device_and_cuda_index(gpu):
    gpu(1, False)
    with pytest.raises(UsageError, match="auto, cpu, cuda or cuda:N"):
        choose("auto", "gpu")
    with pytest.raises(UsageError, match="sees 1 CUDA device"):
        choose("torch", "cuda:1")


def test_batch_size_option_parsing():
    assert parse_batch_size("auto") == "auto" and parse_batch_size("12") == 12 and parse_batch_size(32) == 32
    for bad in ("0", "-3", "x", "1.5", 0):
        with pytest.raises(typer.BadParameter):
            parse_batch_size(bad)
    assert f"{BackendChoice.onnx}" == "onnx" and BackendChoice.torch == "torch"


class _Fake:
    def __init__(self, name, device):
        self.name, self.device = name, device


def test_resolve_batch_size():
    assert resolve_batch_size(7, _Fake("torch", "cuda:0")) == 7
    assert resolve_batch_size("auto", _Fake("onnx", "cpu"), None) == factory.AUTO_BATCH_CPU == 32
    assert resolve_batch_size("auto", _Fake("onnx", "cuda:0")) == factory.ONNX_CUDA_BATCH


def test_no_cpu_slices_on_cuda(gpu, monkeypatch):
    gpu(1, True)
    built = []

    def single(model, name, device, threads, log, part, compression=None):
        built.append((name, device, threads))
        return _Fake(name, device)
    monkeypatch.setattr(factory, "_single_backend", single)
    assert not isinstance(make_backend(None, "auto", "auto", threads=4), SlicedBackend)
    assert not isinstance(make_backend(None, "onnx", "cuda:0", threads=4), SlicedBackend)
    assert isinstance(make_backend(None, "auto", "cpu", threads=4), SlicedBackend)
    assert built == [("torch", "cuda", 4), ("onnx", "cuda:0", 4), ("onnx", "cpu", 1)]


def test_cuda_batch_size_from_measured_memory(monkeypatch):
    """The arithmetic of the CUDA probe, with torch.cuda's memory counters simulated: PROBE_ROWS
    rows took `peak` bytes; half the free memory, 2 rows per window, a power of two, capped."""
    import torch

    from mergedna_cli.engine.backends import BackendOutput

    class Probe:
        name, device, part = "torch", "cuda:0", "masked"
        config = type("Config", (), {"context": 512})

        def __init__(self):
            self.shapes = []

        def run(self, ids, query=None):
            self.shapes.append((ids.shape, query.shape))
            return BackendOutput(None, None, None, None, None)

    def simulate(peak: int, free: int):
        for name, value in {"synchronize": lambda d=None: None, "memory_allocated": lambda d=None: 0,
                            "reset_peak_memory_stats": lambda d=None: None,
                            "max_memory_allocated": lambda d=None: peak, "memory_reserved": lambda d=None: 0,
                            "mem_get_info": lambda d=None: (free, free)}.items():
            monkeypatch.setattr(torch.cuda, name, value)

    probe = Probe()
    simulate(peak=16 * 10 * 2**20, free=4 * 2**30)  # 10 MiB per row, 4 GiB free: 2 GiB / 20 MiB = 102
    assert factory.cuda_batch_size(probe) == 64
    assert probe.shapes == [((factory.PROBE_ROWS, 512), (factory.PROBE_ROWS, 64))]
    simulate(peak=16 * 10 * 2**20, free=140 * 2**30)
    assert factory.cuda_batch_size(probe) == factory.CUDA_BATCH_MAX
    simulate(peak=16 * 10 * 2**20, free=2**20)
    assert factory.cuda_batch_size(probe) == 1
    assert resolve_batch_size("auto", probe, _Fake("onnx", "cpu")) == 1


@cpu_only
def test_torch_backend_refuses_cuda_without_it(tiny_model_dir):
    from mergedna_cli.engine.backends import TorchBackend
    with pytest.raises(UsageError, match="--device cuda"):
        TorchBackend(tiny_model_dir, device="cuda")


def test_backends_carry_name_and_device(tiny_model_dir, cache, gpu):
    gpu(0, False)
    auto = make_backend(str(tiny_model_dir), "auto", "auto", threads=2, part="tokens")
    assert isinstance(auto, SlicedBackend) and (auto.name, auto.device) == ("onnx", "cpu")
    single = make_backend(str(tiny_model_dir), "auto", "cpu", threads=1, part="tokens")
    assert (single.name, single.device) == ("onnx", "cpu")
    torch_backend = make_backend(str(tiny_model_dir), "torch", "cpu", threads=2, part="tokens")
    assert (torch_backend.name, torch_backend.device) == ("torch", "cpu")
    ids = np.random.default_rng(0).integers(0, 4, (3, auto.config.context))
    assert np.array_equal(auto.run(ids).token_sizes, single.run(ids).token_sizes)


def test_auto_falls_back_to_torch_when_the_graph_cannot_be_used(tiny_model_dir, cache, gpu, monkeypatch):
    gpu(0, False)
    from mergedna_cli.engine import onnx_export

    def failing_export(*args, **kwargs):
        raise ModelError("parity check failed")
    monkeypatch.setattr(onnx_export, "export_onnx", failing_export)
    messages = []
    backend = make_backend(str(tiny_model_dir), "auto", "cpu", threads=1, part="embedding", log=messages.append)
    assert backend.name == "torch" and "using PyTorch" in messages[-1]
    with pytest.raises(ModelError):  # an explicit --backend onnx is not replaced
        make_backend(str(tiny_model_dir), "onnx", "cpu", threads=1, part="embedding")


@cpu_only
@pytest.mark.parametrize("backend", ["auto", "torch", "onnx"])
def test_cli_cuda_without_cuda_is_one_line_exit_2(run_cli, tmp_path, backend):
    region = ["--fasta", EXAMPLE_FASTA, "--region", "chr17:43,045,001-43,045,600"]
    cache = {"MERGEDNA_CACHE": tmp_path}
    runs = [run_cli("tracks", *region, "-o", tmp_path / "t", "--device", "cuda", "--backend", backend,
                    env=cache, timeout=300),
            run_cli("score", "--fasta", EXAMPLE_FASTA, "--vcf", EXAMPLE_VCF, "-o", tmp_path / "s.vcf",
                    "--device", "cuda", "--backend", backend, env=cache, timeout=300)]
    for run in runs:
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mergedna: error: --device cuda"), run.stderr
    assert not list(tmp_path.glob("t.*")) and not (tmp_path / "s.vcf").exists()


def test_cli_bad_batch_size_and_backend(run_cli, tmp_path):
    region = ["--fasta", EXAMPLE_FASTA, "--region", "chr17:43,045,001-43,045,600", "-o", tmp_path / "t"]
    for option, value in (("--batch-size", "0"), ("--batch-size", "many"), ("--backend", "gpu")):
        run = run_cli("tracks", *region, option, value, env={"MERGEDNA_CACHE": tmp_path}, timeout=300)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert option in run.stderr


def test_gpu_benchmark_dry_run_on_cpu(tmp_path):
    """benchmarks/gpu_inference.py runs every phase with --device cpu --quick (on a machine with a GPU,
    benchmarks/device_session.sh runs it with --device cuda); PyTorch on the CPU reproduces its own CPU reference exactly."""
    out = tmp_path / "dry.json"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_inference.py"), "--device", "cpu", "--quick",
                          "--backends", "torch,onnx", "--no-cli", "--cpu-threads", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MERGEDNA_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    import json
    result = json.loads(out.read_text())
    runs = {r["backend"]: r for r in result["runs"]}
    assert set(runs) == {"torch", "onnx"} and all(r["device"] == "cpu" for r in runs.values())
    for r in runs.values():
        assert r["score_sge"]["snvs"] > 0 and r["score_synthetic"]["snvs"] == result["inputs"]["synthetic_snvs"]
        assert r["tracks"]["bases"] == r["tracks_pipeline"]["bases"] == result["inputs"]["tracks_bases"]
        assert r["tracks_pipeline"]["backend_recorded"] == r["backend"] and r["embed"]["bases_per_s"] > 0
    same = runs["torch"]["agreement_vs_cpu_torch"]
    assert same["sge_max_abs_score_diff"] == 0 and same["synthetic_max_abs_score_diff"] == 0
    assert same["token_starts"]["differing_starts"] == 0 and same["embed_max_abs_diff"] == 0
    onnx = runs["onnx"]["agreement_vs_cpu_torch"]
    assert onnx["token_starts"]["fraction"] <= 0.01 and onnx["embed_max_abs_diff"] < 1e-3
    assert [s["batch_size"] for s in result["sweep"]] == [8, 16]
    for entry in result["sweep"]:  # batch size changes no token start and no score beyond rounding
        assert entry["token_starts_vs_first_size"]["differing_starts"] == 0
        assert entry["max_abs_score_diff_vs_first_size"] < 1e-4
    assert "goals" in run.stdout


@cpu_only
def test_auto_on_cpu_never_imports_torch(tmp_path):
    """--backend auto on a machine without a GPU runs ONNX Runtime without importing torch (start-up
    per pipeline job), for the shipped model, whose graphs are shipped."""
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "from mergedna_cli.cli.app import main\n"
            f"sys.argv = ['mergedna', 'tracks', '--fasta', {str(EXAMPLE_FASTA)!r}, '--region',"
            f" 'chr17:43,045,001-43,045,600', '-o', {str(tmp_path / 't')!r}, '--threads', '1', '--quiet']\n"
            "main()\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MERGEDNA_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr
    import json
    meta = json.loads((tmp_path / "t.tracks.json").read_text())
    assert (meta["backend"], meta["device"]) == ("onnx", "cpu")
