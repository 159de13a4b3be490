"""`mergedna pretrain`: corpus -> windows -> three-pass training -> model directory."""

from __future__ import annotations

import fnmatch
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..alphabet import encode
from ..errors import InputError, UsageError
from ..model import MergeDNA, MergeDNAConfig, load_model, save_model
from ..model.files import load_config, weights_sha256
from ..training.checkpoint import latest_checkpoint, load_checkpoint
from ..training.corpus import (Corpus, CorpusSource, DeviceWindowSampler, WindowSampler, fasta_records,
                               read_bed_intervals)
from ..training.distributed import hardware_name, init_distributed
from ..training.evaluation import held_out_windows
from ..training.loop import PretrainSettings, make_optimizer, run_pretraining, use_device_sampler
from .choices import Preset
from .progress import TrainingReporter


@dataclass(frozen=True)
class PretrainRequest:
    """`mergedna pretrain`, as parsed by cli/pretrain.py. The model is the --init-from directory's,
    else the --config JSON's, else the --preset's (default small), with --context applied."""

    fasta: tuple[str, ...]
    out: str                           # the model directory to write
    settings: PretrainSettings
    preset: Preset | None = None
    config: str | None = None          # a model config JSON (overrides preset)
    context: int | None = None
    weights: tuple[str, ...] = ()      # "GLOB=W" on file names
    val_fasta: str | None = None
    val_bed: str | None = None
    val_windows: int = 64
    exclude_bed: tuple[str, ...] = ()
    resume: bool = False
    init_from: str | None = None       # model directory whose weights start a new run
    cache_dir: str | None = None
    device: str = "auto"
    threads: int | None = None
    quiet: bool = False


def model_config(request: PretrainRequest) -> MergeDNAConfig:
    """The config of the model to train, checked against the options that ask for one."""
    if request.init_from is not None and (request.resume or request.config is not None):
        raise UsageError("--init-from takes the model's own config and starts a new run: "
                         "it cannot be combined with --resume or --config")
    if request.val_fasta and request.val_bed:
        raise UsageError("give either --val-fasta or --val-bed, not both")
    if request.init_from is not None:
        config = load_config(request.init_from)
    elif request.config is not None:
        try:
            config = MergeDNAConfig.from_dict(json.loads(Path(request.config).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read --config '{request.config}': {exc}") from None
    else:
        config = MergeDNAConfig.preset(Preset(request.preset).value if request.preset else "small")
    if request.context:
        config.context = request.context
    if request.resume and (request.preset is not None or request.config is not None or request.context):
        _check_resumed_model(request, config)
    return config


def _check_resumed_model(request: PretrainRequest, config: MergeDNAConfig) -> None:
    """--resume continues the checkpoint's model: a --preset/--config/--context that asks for
    another one is an error, not silently ignored."""
    root = Path(request.out) / "checkpoints"
    existing = latest_checkpoint(root) if root.is_dir() else None
    if existing is None:
        return  # run() reports the missing checkpoint
    stored = load_config(existing)
    if stored.to_dict() == config.to_dict():
        return
    asked = " ".join(part for part in (f"--preset {request.preset}" if request.preset else "",
                                      f"--config {request.config}" if request.config else "",
                                      f"--context {request.context}" if request.context else "") if part)
    differs = sorted(k for k, v in config.to_dict().items() if stored.to_dict().get(k) != v)
    raise UsageError(f"--resume continues the model in {existing} (preset '{stored.name}', context "
                     f"{stored.context}); {asked} asks for another ({', '.join(differs)} differ): "
                     "drop it, or start a new run in another -o")


def parse_weights(paths: list[str], specs: list[str]) -> list[CorpusSource]:
    """Per-file sampling weights from 'GLOB=WEIGHT' specs matched on file names (last wins)."""
    rules = []
    for spec in specs:
        pattern, sep, value = spec.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not pattern or weight <= 0:
            raise UsageError(f"--weight expects GLOB=POSITIVE_NUMBER, got '{spec}'")
        rules.append((pattern, weight))
    sources = []
    for path in paths:
        weight = 1.0
        for pattern, value in rules:
            if fnmatch.fnmatch(os.path.basename(path), pattern):
                weight = value
        sources.append(CorpusSource(path, weight))
    return sources


def _validation_ids(request: PretrainRequest) -> np.ndarray | None:
    if request.val_fasta:
        return np.concatenate([encode(seq) for _, seq in fasta_records(request.val_fasta)])
    if request.val_bed:
        wanted = read_bed_intervals(request.val_bed)
        pieces = []
        for path in request.fasta:
            for name, seq in fasta_records(path):
                pieces += [encode(seq[s:e]) for s, e in wanted.get(name, [])]
        if not pieces:
            raise InputError(f"no interval of --val-bed '{request.val_bed}' names a record of the FASTA inputs")
        return np.concatenate(pieces)
    return None


def _init_record(model_dir: str) -> dict:
    """What a run started from: path, weights sha256, and the bases that model had seen."""
    record = {"path": model_dir, "sha256": weights_sha256(model_dir)}
    info = Path(model_dir) / "training.json"
    if info.is_file():
        previous = json.loads(info.read_text())
        record["bases_seen"] = previous.get("bases_seen", 0) + previous.get("init_from", {}).get("bases_seen", 0)
    return record


def run(request: PretrainRequest) -> dict:
    config = model_config(request)
    if request.threads:
        torch.set_num_threads(request.threads)
    out = Path(request.out)
    device, rank, world = init_distributed(request.device)
    settings = request.settings
    ckpt_root = out / "checkpoints"
    start_state, optimizer = None, None
    existing = latest_checkpoint(ckpt_root) if ckpt_root.exists() else None
    if request.resume:
        if existing is None:
            raise UsageError(f"--resume: no checkpoint in '{ckpt_root}'")
        model, optimizer, start_state = load_checkpoint(
            existing, lambda m: make_optimizer(m, settings), device)
        old = start_state.pop("settings")
        # Everything but the schedule length, logging cadence and how the steps execute (compile,
        # where windows are drawn, time budget) comes from the checkpoint.
        settings = PretrainSettings(**{**old, "steps": settings.steps, "betas": tuple(old["betas"]),
                                       "val_every": settings.val_every,
                                       "checkpoint_every": settings.checkpoint_every,
                                       "log_every": settings.log_every, "compile": settings.compile,
                                       "compile_scope": settings.compile_scope,
                                       "sampler": settings.sampler,
                                       "time_budget": settings.time_budget})
    else:
        if existing is not None:
            raise UsageError(f"'{out}' already holds checkpoints; pass --resume or choose a new -o")
        torch.manual_seed(settings.seed)
        model = (load_model(request.init_from, device) if request.init_from
                 else MergeDNA(config).to(device))
        optimizer = make_optimizer(model, settings)
    model.train()
    if settings.steps <= (start_state or {}).get("step", 0):
        raise UsageError(f"--steps {settings.steps} is not beyond the checkpoint's step "
                         f"{start_state['step']}")

    sources = parse_weights(request.fasta, request.weights)
    excluded = list(request.exclude_bed) + ([request.val_bed] if request.val_bed else [])
    cache_dir = request.cache_dir or str(out / "corpus_cache")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        corpus = Corpus.build(sources, cache_dir, excluded)
    if world > 1:
        dist.barrier()
    if rank != 0:
        corpus = Corpus.build(sources, cache_dir, excluded)
    seed = settings.seed * 1000 + rank
    sampler = (DeviceWindowSampler(corpus, model.config.context, seed, device)
               if use_device_sampler(settings, device) else WindowSampler(corpus, model.config.context, seed))
    val_ids = _validation_ids(request) if rank == 0 else None
    val_windows = (held_out_windows(val_ids, model.config.context, request.val_windows)
                   if val_ids is not None else None)
    if val_windows is not None and len(val_windows) == 0:
        raise InputError(f"validation sequence is shorter than the context ({model.config.context})")

    started = time.time()
    state = run_pretraining(model, optimizer, settings, sampler, out, val_windows, start_state,
                            TrainingReporter(quiet=request.quiet or rank != 0))
    state.pop("sampler", None)
    if rank == 0:
        lengths = corpus.file_lengths()
        summary = {
            "sources": [{"path": s.path, "weight": s.weight, "bases": int(n)}
                        for s, n in zip(sources, lengths)],
            "exclude_bed": excluded, "val_fasta": request.val_fasta, "val_bed": request.val_bed,
            "settings": asdict(settings), "repeat_weight": settings.repeat_weight,
            "sampler": type(sampler).__name__,
            "step": state["step"], "bases_seen": state["bases_seen"],
            "train_seconds": round(state["train_seconds"], 1),
            **{key: state[key] for key in ("compile_seconds", "time_budget") if key in state},
            "this_run_wall_seconds": round(time.time() - started, 1),
            "world_size": world, "device": str(device),
            "hardware": hardware_name(device),
            "torch": torch.__version__,
        }
        if request.init_from:
            summary["init_from"] = _init_record(request.init_from)
        save_model(model, out)
        (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    if world > 1 and not state.get("interrupted"):
        dist.barrier()
        dist.destroy_process_group()
    if state.get("interrupted"):
        raise KeyboardInterrupt  # exit 130 after the checkpoint and training.json are written
    return state
