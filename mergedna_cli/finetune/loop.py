"""The fine-tuning loop: AdamW, linear warm-up then cosine decay, early stopping on validation.

Two modes. `full` trains the encoder's token path (embedding, local encoder with its merge
projections, latent encoder) together with the head; the decoders are unused by classification
and stay frozen. `freeze_encoder` computes every pooled embedding once and trains the head alone,
which is what makes it cheap. Model selection and early stopping look at the validation split
only: the headline metric (MCC, or Pearson r for regression), ties broken by validation loss.
Under torchrun each rank trains on its own slice of every epoch's shuffled order (DDP).
With `rc_augment` (for strand-symmetric labels such as enhancers) every training sequence is
read from a random strand each time, and validation averages both strands, as `predict` then does.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .batching import length_sorted_batches, pad_rows, reverse_complements
from .head import SequenceModel
from .metrics import headline, task_metrics
from .task import TaskSpec

BALANCE = ("weights", "sampling", "none")


@dataclass
class FinetuneSettings:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of all steps
    patience: int = 3  # epochs without a better validation score before stopping
    freeze_encoder: bool = False
    balance: str = "weights"
    grad_clip: float = 1.0
    seed: int = 0
    rc_augment: bool = False  # train on a random strand per sequence; predict on both, averaged


@dataclass
class Split:
    ids: list[np.ndarray]
    targets: np.ndarray  # class indices or standardised values

    @property
    def bases(self) -> int:
        return int(sum(len(x) for x in self.ids))


ENCODER_PARTS = ("embed", "local_encoder", "local_group", "latent_encoder")


def trainable_parameters(model: SequenceModel, freeze_encoder: bool) -> list[nn.Parameter]:
    """The head, plus (unless frozen) the backbone parts that classification runs through."""
    model.backbone.requires_grad_(False)
    if not freeze_encoder:
        for name in ENCODER_PARTS:
            getattr(model.backbone, name).requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def class_weights(task: TaskSpec, targets: np.ndarray) -> torch.Tensor | None:
    """Inverse class frequency, mean 1 over the training examples."""
    counts = np.bincount(targets, minlength=task.n_outputs).astype(np.float64)
    weights = np.where(counts > 0, len(targets) / (task.n_outputs * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def epoch_order(split: Split, task: TaskSpec, settings: FinetuneSettings, epoch: int,
                rank: int, world: int) -> list[np.ndarray]:
    """This rank's training batches for an epoch: the same seeded permutation on every rank,
    wrapped to a whole number of global batches and dealt out by rank."""
    rng = np.random.default_rng([settings.seed, epoch])
    n = len(split.ids)
    if settings.balance == "sampling" and task.kind == "classification":
        counts = np.bincount(split.targets, minlength=task.n_outputs)
        p = 1.0 / counts[split.targets]
        order = rng.choice(n, size=n, replace=True, p=p / p.sum())
    else:
        order = rng.permutation(n)
    per_step = settings.batch_size * world
    steps = max(1, math.ceil(n / per_step))
    order = np.resize(order, steps * per_step).reshape(steps, world, settings.batch_size)
    return list(order[:, rank])


class _Features:
    """Inputs of the trainable module: id batches (full) or cached pooled embeddings (frozen),
    for the forward strand or, where `flip` is set, the reverse complement."""

    def __init__(self, model: SequenceModel, split: Split, frozen: bool, device, batch_size: int,
                 both_strands: bool):
        self.split, self.device = split, device
        self.strands = [split.ids] + ([reverse_complements(split.ids)] if both_strands else [])
        self.caches = [embed_all(model, ids, device, batch_size) for ids in self.strands] if frozen else None

    def __call__(self, index: np.ndarray, flip: np.ndarray | None = None) -> torch.Tensor:
        flip = np.zeros(len(index), dtype=bool) if flip is None else flip
        if self.caches is not None:
            rows = torch.from_numpy(index)
            out = self.caches[0][rows]
            if flip.any():
                out[torch.from_numpy(flip)] = self.caches[1][rows[torch.from_numpy(flip)]]
            return out.to(self.device)
        rows = [self.strands[int(f)][i] for i, f in zip(index, flip)]
        return torch.from_numpy(pad_rows(rows)).to(self.device)


@torch.no_grad()
def embed_all(model: SequenceModel, ids: list[np.ndarray], device, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.empty(len(ids), model.head.shape["d_in"])
    for index in length_sorted_batches(ids, batch_size):
        out[torch.from_numpy(index)] = model.embed(torch.from_numpy(pad_rows([ids[i] for i in index])).to(device)).float().cpu()
    model.train(was_training)
    return out


@torch.no_grad()
def predict_outputs(model: SequenceModel, task: TaskSpec, features: _Features, n: int,
                    batch_size: int, frozen: bool) -> np.ndarray:
    """Class probabilities (n, C) or standardised predictions (n,), in input order, averaged over
    the strands the features hold."""
    was_training = model.training
    model.eval()
    out = np.zeros((n, task.n_outputs), dtype=np.float32)
    n_strands = len(features.strands)
    for index in length_sorted_batches(features.split.ids, batch_size):
        for strand in range(n_strands):
            x = features(index, np.full(len(index), bool(strand)))
            logits = model.head(x) if frozen else model(x)
            y = logits.float().softmax(-1) if task.kind == "classification" else logits.float()
            out[index] += y.cpu().numpy() / n_strands
    model.train(was_training)
    return out if task.kind == "classification" else out[:, 0]


def _loss_fn(task: TaskSpec, weights: torch.Tensor | None) -> Callable:
    if task.kind == "classification":
        ce = nn.CrossEntropyLoss(weight=weights)
        return lambda logits, y: ce(logits.float(), y)
    return lambda out, y: nn.functional.mse_loss(out.float()[:, 0], y)


def _validation_loss(task: TaskSpec, outputs: np.ndarray, targets: np.ndarray) -> float:
    if task.kind == "classification":
        p = outputs[np.arange(len(targets)), targets]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())
    return float(np.mean((outputs - targets) ** 2))


def _better(score: tuple[float, float], best: tuple[float, float] | None) -> bool:
    return best is None or score > best


def run_finetune(model: SequenceModel, task: TaskSpec, train: Split, val: Split,
                 settings: FinetuneSettings, device: torch.device, save: Callable[[dict], None],
                 metrics_path: Path | None, report: Callable[[str], None] = lambda msg: None,
                 on_step: Callable[[int, int, float], None] = lambda done, total, loss: None) -> dict:
    """Train, validate every epoch, call `save(record)` (rank 0) whenever validation improves.
    Returns the summary: best epoch, its validation metrics, per-epoch history, throughput."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    torch.manual_seed(settings.seed)
    frozen = settings.freeze_encoder
    params = trainable_parameters(model, frozen)
    model.to(device).train()
    eval_batch = max(settings.batch_size, 64)

    t0 = time.perf_counter()
    both = settings.rc_augment
    train_features = _Features(model, train, frozen, device, eval_batch, both)
    val_features = _Features(model, val, frozen, device, eval_batch, both)
    embed_seconds = time.perf_counter() - t0 if frozen else 0.0

    module: nn.Module = model.head if frozen else model
    trainable = module
    if world > 1:
        trainable = nn.parallel.DistributedDataParallel(module)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = len(epoch_order(train, task, settings, 0, rank, world))
    total = steps_per_epoch * settings.epochs
    warmup = max(1, round(settings.warmup * total))
    weights = class_weights(task, train.targets) if (task.kind == "classification"
                                                       and settings.balance == "weights") else None
    loss_fn = _loss_fn(task, weights.to(device) if weights is not None else None)
    targets = torch.from_numpy(train.targets)
    lengths = np.fromiter((len(x) for x in train.ids), dtype=np.int64, count=len(train.ids))
    autocast = device.type == "cuda"

    history, best, best_row, stale, step = [], None, None, 0, 0
    train_seconds = 0.0
    for epoch in range(1, settings.epochs + 1):
        t_epoch = time.perf_counter()
        losses, bases = [], 0
        flips = np.random.default_rng([settings.seed, epoch, rank, 1])
        for index in epoch_order(train, task, settings, epoch, rank, world):
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * lr_factor(step, total, warmup)
            flip = flips.random(len(index)) < 0.5 if both else None
            x, y = train_features(index, flip), targets[torch.from_numpy(index)].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(trainable(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            bases += int(lengths[index].sum())
            on_step(step - (epoch - 1) * steps_per_epoch, steps_per_epoch, losses[-1])
        seconds = time.perf_counter() - t_epoch
        train_seconds += seconds

        outputs = predict_outputs(model, task, val_features, len(val.ids), eval_batch, frozen)
        metrics = task_metrics(task, val.targets, outputs)
        val_loss = _validation_loss(task, outputs, val.targets)
        key = headline(task)
        score = (metrics[key] if metrics[key] is not None else -math.inf, -val_loss)
        improved = _better(score, best)
        row = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": float(np.mean(losses)), "val_loss": val_loss,
               **{f"val_{k}": v for k, v in metrics.items()},
               "seconds": round(seconds, 2), "sequences_per_s": round(len(losses) * settings.batch_size * world / seconds, 1),
               "bases_per_s": round(bases * world / seconds, 1), "best": improved}
        history.append(row)
        if improved:
            best, best_row, stale = score, row, 0
            if rank == 0:
                save({"best_epoch": epoch, "validation": metrics | {"loss": val_loss}})
        else:
            stale += 1
        if rank == 0:
            if metrics_path is not None:
                with open(metrics_path, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
            shown = metrics[key]
            report(f"epoch {epoch}/{settings.epochs}: train loss {row['train_loss']:.4f}, val loss "
                   f"{val_loss:.4f}, val {key} {shown if shown is None else round(shown, 4)}"
                   f"{' (best)' if improved else ''}, {row['bases_per_s']:,.0f} bases/s")
        if world > 1:  # every rank must take rank 0's decision, or the next all-reduce hangs
            decision = [stale]
            dist.broadcast_object_list(decision, src=0)
            stale = decision[0]
        if stale >= settings.patience:
            if rank == 0:
                report(f"early stop: no better validation {key} for {settings.patience} epochs")
            break
    return {"best_epoch": best_row["epoch"], "best": best_row, "epochs_run": len(history),
            "history": history, "train_seconds": round(train_seconds, 2),
            "embed_seconds": round(embed_seconds, 2), "settings": asdict(settings), "world_size": world}
