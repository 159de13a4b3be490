"""Throughput of MergeDNA vs a plain per-base transformer of the same width and depth, on this CPU.

Prints inference and training bases/s, FLOPs counted by torch's FlopCounterMode, achieved
GFLOP/s, and the fraction of a measured fp32 matmul peak. Both models run in the same process,
one after the other, with the same threads.

    python benchmarks/model_throughput.py [--preset small] [--batch 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mergedna_cli.model import MergeDNA, MergeDNAConfig, pretraining_losses
from mergedna_cli.model.layers import Block, RMSNorm


class PerBaseTransformer(nn.Module):
    """The baseline: one token per base, full attention, as many blocks as MergeDNA in total."""

    def __init__(self, cfg: MergeDNAConfig):
        super().__init__()
        depth = cfg.n_local_encoder + cfg.n_latent_encoder + cfg.n_latent_decoder + cfg.n_local_decoder
        self.embed = nn.Embedding(7, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.hidden, None, cfg.rope_base)
                                    for _ in range(depth))
        self.norm, self.head = RMSNorm(cfg.d_model), nn.Linear(cfg.d_model, 4)

    def forward(self, ids):
        B, N = ids.shape
        pos = torch.arange(N, dtype=torch.float32).expand(B, N)
        valid = torch.ones(B, N, dtype=torch.bool)
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, pos, valid)
        return self.head(self.norm(x))

    def mlm_loss(self, ids):
        masked = ids.clone()
        pick = torch.rand(ids.shape) < 0.15
        masked[pick] = 6
        return F.cross_entropy(self(masked)[pick], ids[pick])


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(threads: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = timed(lambda: a @ b, 10)
    return 2 * 2048 ** 3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = MergeDNAConfig.preset(args.preset)
    ids = torch.randint(0, 4, (args.batch, cfg.context))
    bases = ids.numel()
    peak = matmul_peak(args.threads)

    merge, plain = MergeDNA(cfg), PerBaseTransformer(cfg)
    merge_opt = torch.optim.AdamW(merge.parameters(), 1e-4)
    plain_opt = torch.optim.AdamW(plain.parameters(), 1e-4)

    def merge_train():
        loss = pretraining_losses(merge, ids, cfg.compression).total
        merge_opt.zero_grad(); loss.backward(); merge_opt.step()

    def plain_train():
        loss = plain.mlm_loss(ids)
        plain_opt.zero_grad(); loss.backward(); plain_opt.step()

    @torch.no_grad()
    def merge_infer():
        merge.eval(); merge(ids)

    @torch.no_grad()
    def plain_infer():
        plain.eval(); plain(ids)

    rows = []
    for name, infer, train, model in [("MergeDNA", merge_infer, merge_train, merge),
                                      ("per-base transformer", plain_infer, plain_train, plain)]:
        for mode, fn in (("inference", infer), ("training step", train)):
            if mode == "training step":
                model.train()
            flops = count_flops(fn)
            seconds = timed(fn, args.repeats)
            rows.append((name, mode, bases / seconds, flops / bases, flops / seconds))

    print(f"preset {cfg.name}: D={cfg.d_model}, blocks {cfg.n_local_encoder}/{cfg.n_latent_encoder}/"
          f"{cfg.n_latent_decoder}/{cfg.n_local_decoder}, context {cfg.context}, batch {args.batch}, "
          f"threads {args.threads}, params {sum(p.numel() for p in merge.parameters()) / 1e6:.2f}M")
    print(f"measured fp32 matmul peak (2048^3): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':<22}{'mode':<15}{'bases/s':>10}{'MFLOP/base':>12}{'GFLOP/s':>10}{'% peak':>8}")
    for name, mode, rate, per_base, fps in rows:
        print(f"{name:<22}{mode:<15}{rate:>10.0f}{per_base / 1e6:>12.2f}{fps / 1e9:>10.1f}"
              f"{100 * fps / peak:>8.1f}")
    speedup = rows[0][2] / rows[2][2]
    print(f"MergeDNA / per-base inference speed: {speedup:.2f}x "
          f"(training step {rows[1][2] / rows[3][2]:.2f}x; MergeDNA's step runs 3 passes)")


if __name__ == "__main__":
    main()
