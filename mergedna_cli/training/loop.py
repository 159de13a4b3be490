"""The pre-training loop: AdamW, warm-up then cosine, clipping, validation, checkpoints, DDP.

Runs the same on one CPU, one GPU, or N processes under torchrun (each rank samples its own
windows; gradients are averaged by DistributedDataParallel).

On CUDA a step never waits for the host: windows are drawn on the GPU (DeviceWindowSampler),
losses and the gradient norm stay device tensors until a log step, AdamW is fused, and the three
passes run under bf16 autocast and (by default) torch.compile. Two compile scopes:

- "step": the whole three-pass objective is one graph (no host sync anywhere in it; merging.py's
  `_layout` takes the static length while compiling). Graphs have static shapes and the merge
  layout depends on the compression, so with this scope the per-step compression comes from three
  fixed values with the configured mean, sd and range (`compression_choices`) instead of a
  clipped normal: three graphs, no recompiles. Compiling it takes the longest.
- "blocks": every transformer block's attention and MLP halves are compiled (one graph shared by
  all blocks, dynamic token counts), merging and losses run eagerly. Compiles in seconds, but each
  eager merge step reads its layout length from the GPU (one sync per merge step).
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
from ..model.layers import Block
from .checkpoint import save_checkpoint
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
    repeat_weight: float = 1.0    # loss weight of lower-case (soft-masked repeat) bases
    compile: bool | None = None   # torch.compile the three passes; None: on CUDA only
    compile_scope: str = "step"   # step (whole objective) | blocks (each block's halves)
    sampler: str = "auto"         # host | device | auto (device on CUDA)
    # > 0: wall seconds for this run's steps. The loop measures its step time during warm-up
    # (the lr there does not depend on the total) and then sets `steps` so the cosine completes.
    time_budget: float = 0.0

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


def optimizer_options(device: torch.device) -> dict:
    """Fused AdamW on CUDA (one kernel for all parameters); torch's default elsewhere."""
    return {"fused": True} if torch.device(device).type == "cuda" else {}


def make_optimizer(model: nn.Module, settings: PretrainSettings) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    device = next(model.parameters()).device
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=settings.lr, betas=tuple(settings.betas), **optimizer_options(device))


def use_compile(settings: PretrainSettings, device: torch.device) -> bool:
    return device.type == "cuda" if settings.compile is None else bool(settings.compile)


def compile_objective(objective: nn.Module, model: MergeDNA, scope: str, backend: str = "inductor"):
    """The objective to call, compiled in `scope` ("step" or "blocks"; see the module docstring)."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):  # three compressions x sub-graphs, blocks
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(64, getattr(dynamo_config, name)))
    if scope == "step":
        return torch.compile(objective, backend=backend)
    if scope != "blocks":
        raise ValueError(f"compile scope must be 'step' or 'blocks', got '{scope}'")
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:  # instance attributes shadow the methods; Block.forward calls both halves
        block.attend = torch.compile(block.attend, backend=backend, dynamic=True)
        block.feed_forward = torch.compile(block.feed_forward, backend=backend, dynamic=True)
    return objective


def use_device_sampler(settings: PretrainSettings, device: torch.device) -> bool:
    return device.type == "cuda" if settings.sampler == "auto" else settings.sampler == "device"


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

    def forward(self, ids: torch.Tensor, compression: float, base_weight: torch.Tensor | None = None):
        return pretraining_losses(self.model, ids, compression, base_weight=base_weight)


def sample_compression(model: MergeDNA, rng: np.random.Generator) -> float:
    mean, sd, low, high = model.config.train_compression
    return float(np.clip(rng.normal(mean, sd), low, high))


def compression_choices(train_compression) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(values, probabilities): low, mean, high, with P(low) = P(high) set so the mean and sd are
    those of the configured normal (before clipping), capped at 1/3 each."""
    mean, sd, low, high = train_compression
    values = tuple(sorted({round(low, 4), round(mean, 4), round(high, 4)}))
    if len(values) == 1:
        return values, (1.0,)
    if len(values) == 2:
        return values, (0.5, 0.5)
    # P(low) * (mean - low)^2 + P(high) * (high - mean)^2 = sd^2 and P(low)(mean - low) = P(high)(high - mean)
    p_low = min(1 / 3, sd * sd / ((mean - low) * (high - low)))
    p_high = p_low * (mean - low) / (high - mean)
    return values, (p_low, 1 - p_low - p_high, p_high)


def sample_compression_fixed(model: MergeDNA, rng: np.random.Generator) -> float:
    values, p = compression_choices(model.config.train_compression)
    return float(values[rng.choice(len(values), p=p)])


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
                    sampler, out_dir: Path, val_windows: np.ndarray | None,
                    start_state: dict | None, reporter) -> dict:
    """Train until settings.steps; returns the final trainer state. `reporter` shows progress.

    `sampler`: WindowSampler or DeviceWindowSampler (both have sample_tensors, rng and state)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = next(model.parameters()).device
    objective: nn.Module = PretrainObjective(model)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)
    compiled = use_compile(settings, device)
    if compiled:
        objective = compile_objective(objective, model, settings.compile_scope)
    fixed = compiled and settings.compile_scope == "step"
    draw_compression = sample_compression_fixed if fixed else sample_compression
    state = dict(start_state or {"step": 0, "bases_seen": 0, "train_seconds": 0.0})
    if "sampler" in state:
        sampler.set_state(state["sampler"][rank] if isinstance(state["sampler"], list) else state["sampler"])
    metrics = MetricsLog(out_dir / "metrics.jsonl", rank == 0)
    if rank == 0:
        truncate_metrics(metrics.path, state["step"])
    bf16 = use_bf16(settings, device)
    weighted = settings.repeat_weight != 1.0
    bases_per_step = settings.batch_size * sampler.context * world
    step = state["step"]

    def batch():
        ids, soft = sampler.sample_tensors(settings.batch_size, device)
        weight = torch.where(soft, settings.repeat_weight, 1.0) if weighted else None
        return ids, weight

    def forward(ids, compression, weight):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return objective(ids, compression, weight)

    def validate(record: bool = True) -> None:
        if val_windows is None or rank != 0:
            return
        result = masked_base_eval(model, val_windows, spacing=32, phases=2)
        if not record:
            return
        row = {"step": step, "bases_seen": state["bases_seen"], "val_masked_acc":
               round(result.accuracy, 5), "val_masked_ce": round(result.cross_entropy, 5),
               "val_bases": result.n_bases}
        metrics.write(row)
        reporter.validation(step, row)

    # time budget (counted from here, so compiling is inside it): probe the step time between two
    # steps inside warm-up, then fix the number of steps
    budget_end = time.perf_counter() + settings.time_budget if settings.time_budget > 0 else None
    if compiled:  # compile every graph now, not inside the timed steps; no optimizer step
        t0 = time.perf_counter()
        ids, weight = batch()
        values = compression_choices(model.config.train_compression)[0]
        for compression in values if fixed else values[::2]:  # blocks: both ends fix the dynamic dims
            forward(ids, compression, weight).total.backward()
        optimizer.zero_grad(set_to_none=True)
        state["compile_seconds"] = round(state.get("compile_seconds", 0.0) + time.perf_counter() - t0, 1)

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

    probe_from = step + min(5, max(1, settings.warmup_steps // 4))
    probe_to = step + max(probe_from - step + 1, min(settings.warmup_steps, 30))
    probe_t0 = None

    reporter.start(total=settings.steps, completed=step)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)  # schedulers send SIGTERM: save, then stop
    window_start, window_bases, window_steps, data_seconds = time.perf_counter(), 0, 0, 0.0
    sums: dict[str, torch.Tensor] = {}
    try:
        while step < settings.steps:
            t0 = time.perf_counter()
            compression = draw_compression(model, sampler.rng)
            ids, weight = batch()
            data_seconds += time.perf_counter() - t0
            for group in optimizer.param_groups:
                group["lr"] = settings.lr_at(step)
            losses = forward(ids, compression, weight)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip, foreach=True)
            optimizer.step()
            step += 1
            state["step"] = step
            window_bases += bases_per_step
            window_steps += 1
            state["bases_seen"] += bases_per_step
            # device tensors: summed without waiting for the GPU, read at log steps only
            for key in ("total", "mtr", "latent_mtr", "amtm", "masked_ce", "masked_acc"):
                value = getattr(losses, key).detach().float()
                sums[key] = sums[key] + value if key in sums else value
            sums["grad_norm"] = sums["grad_norm"] + grad_norm.detach() if "grad_norm" in sums else grad_norm.detach().float()
            if budget_end is not None and step in (probe_from, probe_to):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if step == probe_from:
                    probe_t0 = time.perf_counter()
                else:
                    step_seconds = (time.perf_counter() - probe_t0) / (probe_to - probe_from)
                    # one validation and one checkpoint now, timed: the rest of the run has more.
                    # Validation twice, the second timed: the first may compile eval-mode graphs.
                    probe_overhead = time.perf_counter()
                    validate(record=False)
                    t0 = time.perf_counter()
                    validate()
                    val_seconds = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    checkpoint()
                    ckpt_seconds = time.perf_counter() - t0
                    settings.steps = fit_steps(step, budget_end - time.perf_counter(), step_seconds,
                                               val_seconds, ckpt_seconds, settings, world)
                    state["time_budget"] = {"probe_step_seconds": round(step_seconds, 5),
                                            "val_seconds": round(val_seconds, 2),
                                            "checkpoint_seconds": round(ckpt_seconds, 2),
                                            "steps": settings.steps, "at_step": step}
                    bar = getattr(reporter, "_progress", None)  # the progress bar learns the new total
                    if bar is not None:
                        bar.update(reporter._task, total=settings.steps)
                    window_start += time.perf_counter() - probe_overhead  # not in the logged rate
            if step % settings.log_every == 0 or step == settings.steps:
                values = {k: float(v) / window_steps for k, v in sums.items()}  # the one host sync
                elapsed = time.perf_counter() - window_start
                row = {"step": step, "bases_seen": state["bases_seen"], "lr": settings.lr_at(step - 1),
                       **{k: round(v, 5) for k, v in values.items()},
                       "bases_per_s": round(window_bases / elapsed, 1),
                       "data_fraction": round(data_seconds / elapsed, 4)}
                misses = getattr(sampler, "n_filter_misses", None)
                if misses is not None and int(misses):
                    row["n_filter_misses"] = int(misses)
                state["train_seconds"] += elapsed
                metrics.write(row)
                reporter.update(step, row)
                window_start, window_bases, window_steps, data_seconds = time.perf_counter(), 0, 0, 0.0
                sums = {}
            if step % settings.val_every == 0 or step == settings.steps:
                validate()
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


def fit_steps(step: int, seconds_left: float, step_seconds: float, val_seconds: float,
              ckpt_seconds: float, settings: PretrainSettings, world: int) -> int:
    """Total steps whose training, validations and checkpoints (at their cadence, plus the final
    ones) fit 95 % of the time left; every rank takes rank 0's number."""
    per_step = step_seconds + val_seconds / settings.val_every + ckpt_seconds / settings.checkpoint_every
    usable = 0.95 * seconds_left - val_seconds - ckpt_seconds
    steps = step + max(1, int(usable / per_step))
    if world > 1:
        total = torch.tensor([steps], device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.broadcast(total, 0)
        steps = int(total)
    return steps


def saved_bytes_per_window(model: MergeDNA, device: torch.device, bf16: bool) -> int:
    """Bytes autograd keeps for backward from one window's three passes (one window measured)."""
    total, seen = [0], set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, 4, (1, model.config.context), device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        pretraining_losses(model, ids, model.config.compression)
    return total[0]


def fit_batch(model: MergeDNA, device: torch.device, bf16: bool, fraction: float = 0.45,
              max_bases: int = 1 << 19) -> int:
    """Windows per step for a GPU: the largest power of two whose saved activations take at most
    `fraction` of the device memory (the rest: temporaries, weights, allocator slack), capped at
    `max_bases` bases per step. 2 off CUDA."""
    if device.type != "cuda":
        return 2
    per_window = saved_bytes_per_window(model, device, bf16)
    fits = int(fraction * torch.cuda.get_device_properties(device).total_memory / per_window)
    cap = max(1, max_bases // model.config.context)
    return 1 << max(0, min(fits, cap).bit_length() - 1)
