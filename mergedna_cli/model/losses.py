"""The three pre-training passes of model.md section 3: MTR, latent MTR and AMTM.

Every loss is a weighted mean over bases. `base_weight` (B, N), if given, multiplies each base's
cross-entropy in the numerator and its count in the denominator (e.g. 0.1 for soft-masked repeat
bases, as GPN does); without it every base weighs 1, which gives exactly the unweighted losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..alphabet import MASK, N_BASES
from .merging import exact_budget_targets
from .network import MergeDNA


@dataclass
class PretrainLosses:
    total: torch.Tensor
    mtr: torch.Tensor          # merged token reconstruction, mean CE over real bases
    latent_mtr: torch.Tensor   # same after latent merging (local encoder detached)
    amtm: torch.Tensor         # masked-base CE summed, divided by the number of masked tokens
    masked_ce: torch.Tensor    # AMTM CE per masked base (for logging and comparison)
    masked_acc: torch.Tensor   # AMTM accuracy per masked base
    masked_bases: torch.Tensor


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """sum(values * weight) / sum(units): 0 when nothing is weighted (the numerator is 0 then too).
    With 0/1 weights the sums are exact integers, so weights of 1 reproduce plain means bit for bit."""
    return (values * weight).sum() / units.sum().clamp(min=1e-6)


def _reconstruction_ce(logits: torch.Tensor, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits.float().transpose(1, 2), ids.clamp(max=N_BASES - 1), reduction="none")
    return _weighted_mean(ce, weight, weight)


def _uniform(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U(0, 1) noise drawn where the generator lives (the global RNG: on the batch's device), so a
    GPU step never copies noise from the host."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def sample_masked_tokens(group_size: torch.Tensor, valid: torch.Tensor, fraction: float,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose round(fraction * n) tokens per row without replacement, P proportional to 1/g^2.

    Gumbel-top-k: the top keys of log w + Gumbel noise are a weighted sample without replacement.
    """
    weight = group_size.float().clamp(min=1).pow(-2)
    uniform = _uniform(weight.shape, generator, weight.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-9, 1 - 1e-9)))
    keys = (weight.log() + gumbel).masked_fill(~valid, float("-inf"))
    n_mask = exact_budget_targets(valid.sum(1), int(round(fraction * 1000)), 1000)
    rank = keys.argsort(dim=1, descending=True).argsort(dim=1)
    return (rank < n_mask[:, None]) & valid


def pretraining_losses(model: MergeDNA, ids: torch.Tensor, compression: float,
                       generator: torch.Generator | None = None,
                       base_weight: torch.Tensor | None = None) -> PretrainLosses:
    """Total = MTR + w * latent MTR + AMTM on a batch of ids (B, N).

    base_weight (B, N) float: each base's weight in all three losses (None: 1 everywhere).
    masked_ce and masked_acc stay unweighted, comparable with held-out evaluation."""
    cfg = model.config
    scored = (ids < N_BASES)  # N, PAD and MASK never count in a loss
    weight = scored.float() if base_weight is None else scored.float() * base_weight.float()

    # 1. MTR: full path with local merging.
    tokens = model.tokenize(ids, compression)
    h, _ = model.encode_latent(tokens)
    mtr = _reconstruction_ce(model.decode(h, tokens), ids, weight)

    # 2. Latent MTR: pass 1's tokens detached, merged globally L -> K inside the latent encoder.
    local = tokens.detach()
    h_merged, tok2lat = model.encode_latent(local, merge_ratio=cfg.latent_ratio)
    latent_mtr = _reconstruction_ce(model.decode(h_merged, local), ids, weight)

    # 3. AMTM: mask tokens (paper) or single bases (default) with P ~ 1/g^2 of their latent
    #    group size g, plus uniformly random single bases.
    valid = local.state.valid
    members = torch.zeros_like(tok2lat).scatter_add(1, tok2lat, valid.long())
    group_size = members.gather(1, tok2lat)
    if cfg.mask_unit == "token":
        masked_tok = sample_masked_tokens(group_size, valid, cfg.mask_fraction, generator)
        adaptive = masked_tok.gather(1, local.base2tok) & local.base_valid
    else:
        base_group = group_size.gather(1, local.base2tok)
        adaptive = (sample_masked_tokens(base_group, local.base_valid, cfg.mask_fraction, generator)
                    if cfg.mask_fraction > 0 else torch.zeros_like(local.base_valid))
    uniform = _uniform(ids.shape, generator, ids.device)
    single = (uniform < cfg.random_mask_fraction) & local.base_valid & ~adaptive
    masked_base = adaptive | single
    # masked units (tokens or single bases), each counted with its weight: a token weighs the
    # mean weight of its bases, a base its own (N bases count as units with weight 1, as before)
    unit_weight = torch.ones_like(weight) if base_weight is None else base_weight.float()
    if cfg.mask_unit == "token":
        tok_weight = torch.zeros_like(local.state.size).scatter_add(
            1, local.base2tok, unit_weight * local.base_valid) / local.state.size
        units = (masked_tok * tok_weight).sum() + (single * unit_weight).sum()
    else:
        units = ((adaptive | single) * unit_weight).sum()
    masked_ids = torch.where(masked_base, torch.full_like(ids, MASK), ids)
    tokens3 = model.tokenize(masked_ids, compression)
    h3, _ = model.encode_latent(tokens3)
    logits3 = model.decode(h3, tokens3).float()
    target = masked_base & scored
    ce = F.cross_entropy(logits3.transpose(1, 2), ids.clamp(max=N_BASES - 1), reduction="none")
    n_target = target.sum().clamp(min=1)
    amtm = (ce * target * unit_weight).sum() / units.clamp(min=1e-6)  # per masked token or single base
    masked_ce = (ce * target).sum() / n_target
    masked_acc = ((logits3.argmax(-1) == ids) & target).sum() / n_target

    total = mtr + cfg.latent_mtr_weight * latent_mtr + amtm
    return PretrainLosses(total, mtr, latent_mtr, amtm, masked_ce.detach(), masked_acc.detach(),
                          target.sum())
