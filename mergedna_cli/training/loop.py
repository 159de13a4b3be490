"""The pre-training loop: AdamW, warm-up then cosine, clipping, validation, checkpoints, DDP.

Runs the same on one CPU, one GPU, or N processes under torchrun (each rank samples its own
windows; gradients are averaged by DistributedDataParallel).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..model import MergeDNA, pretraining_losses, save_model
from .checkpoint import save_checkpoint
from .corpus import WindowSampler
from .evaluation import masked_base_eval


@dataclass
class PretrainSettings:
    steps: int = 10_000
    batch_size: int = 16          # windows per step per process
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.1     # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 300
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    val_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 10
    precision: str = "auto"       # auto | fp32 | bf16 (auto: bf16 where the hardware has it)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


def make_optimizer(model: nn.Module, settings: PretrainSettings) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=settings.lr, betas=tuple(settings.betas))


def use_bf16(settings: PretrainSettings, device: torch.device) -> bool:
    if settings.precision != "auto":
        return settings.precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")() in ("AVX512", "AMX"))


class PretrainObjective(nn.Module):
    """Wraps the three-pass loss in `forward`, which is what DistributedDataParallel hooks into."""

    def __init__(self, model: MergeDNA):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, compression: float):
        return pretraining_losses(self.model, ids, compression)


def sample_compression(model: MergeDNA, rng: np.random.Generator) -> float:
    mean, sd, low, high = model.config.train_compression
    return float(np.clip(rng.normal(mean, sd), low, high))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def truncate_metrics(path: Path, last_step: int) -> None:
    """On resume, drop rows logged after the checkpoint (the killed run's tail is redone)."""
    if path.is_file():
        rows = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= last_step]
        path.write_text("".join(row + "\n" for row in rows))


class MetricsLog:
    """Appends one JSON object per line; only rank 0 writes."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(row) + "\n")


def run_pretraining(model: MergeDNA, optimizer: torch.optim.Optimizer, settings: PretrainSettings,
                    sampler: WindowSampler, out_dir: Path, val_windows: np.ndarray | None,
                    start_state: dict | None, reporter) -> dict:
    """Train until settings.steps; returns the final trainer state. `reporter` shows progress."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = next(model.parameters()).device
    objective: nn.Module = PretrainObjective(model)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)
    state = dict(start_state or {"step": 0, "bases_seen": 0, "train_seconds": 0.0})
    if "sampler" in state:
        sampler.set_state(state["sampler"][rank] if isinstance(state["sampler"], list) else state["sampler"])
    metrics = MetricsLog(out_dir / "metrics.jsonl", rank == 0)
    if rank == 0:
        truncate_metrics(metrics.path, state["step"])
    bf16 = use_bf16(settings, device)
    bases_per_step = settings.batch_size * sampler.context * world
    step = state["step"]
    window_start, window_bases, window_steps, data_seconds = time.perf_counter(), 0, 0, 0.0
    sums: dict[str, float] = {}

    def checkpoint() -> None:
        states = [None] * world
        if world > 1:
            dist.all_gather_object(states, sampler.state())
        else:
            states = [sampler.state()]
        if rank == 0:
            save_checkpoint(out_dir / "checkpoints", step, model, optimizer,
                            {**state, "sampler": states, "settings": asdict(settings)})
            save_model(model, out_dir)

    reporter.start(total=settings.steps, completed=step)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)  # schedulers send SIGTERM: save, then stop
    try:
        while step < settings.steps:
            t0 = time.perf_counter()
            compression = sample_compression(model, sampler.rng)
            ids = torch.from_numpy(sampler.sample(settings.batch_size).astype(np.int64)).to(device)
            data_seconds += time.perf_counter() - t0
            for group in optimizer.param_groups:
                group["lr"] = settings.lr_at(step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                losses = objective(ids, compression)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            step += 1
            state["step"] = step
            window_bases += bases_per_step
            window_steps += 1
            state["bases_seen"] += bases_per_step
            for key in ("total", "mtr", "latent_mtr", "amtm", "masked_ce", "masked_acc"):
                sums[key] = sums.get(key, 0.0) + float(getattr(losses, key).detach())
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm)
            if step % settings.log_every == 0 or step == settings.steps:
                elapsed = time.perf_counter() - window_start
                n = window_steps
                row = {"step": step, "bases_seen": state["bases_seen"], "lr": settings.lr_at(step - 1),
                       **{k: round(v / n, 5) for k, v in sums.items()},
                       "bases_per_s": round(window_bases / elapsed, 1),
                       "data_fraction": round(data_seconds / elapsed, 4)}
                state["train_seconds"] += elapsed
                metrics.write(row)
                reporter.update(step, row)
                window_start, window_bases, window_steps, data_seconds = time.perf_counter(), 0, 0, 0.0
                sums = {}
            if val_windows is not None and rank == 0 and (
                    step % settings.val_every == 0 or step == settings.steps):
                result = masked_base_eval(model, val_windows, spacing=32, phases=2)
                row = {"step": step, "bases_seen": state["bases_seen"], "val_masked_acc":
                       round(result.accuracy, 5), "val_masked_ce": round(result.cross_entropy, 5),
                       "val_bases": result.n_bases}
                metrics.write(row)
                reporter.validation(step, row)
                window_start = time.perf_counter()
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                checkpoint()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: save, and let the caller record and exit
        checkpoint()
        reporter.stop()
        state["interrupted"] = True
        return state
    reporter.stop()
    return state
