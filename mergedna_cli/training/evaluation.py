"""Held-out masked-base accuracy and cross-entropy, the pre-training quality measure.

Single bases are masked `spacing` apart (one masked token each, as in zero-shot scoring), the
model predicts them from both sides, and accuracy / CE (nats per base) are averaged over every
masked A/C/G/T base. With `both_strands` the prediction is the mean of the probabilities from the
window and from its reverse complement (as `score --strand both` uses the model).
`masked_positions` is shared with the k-mer baseline (benchmarks/kmer_baseline.py) so both models
are scored on exactly the same bases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..alphabet import MASK, N_BASES, reverse_complement
from ..model import MergeDNA


@dataclass
class MaskedEval:
    accuracy: float
    cross_entropy: float  # nats per masked base
    n_bases: int


def masked_positions(length: int, spacing: int, phase: int, margin: int) -> np.ndarray:
    """Positions phase, phase + spacing, ... inside [margin, length - margin)."""
    start = margin + (phase - margin) % spacing
    return np.arange(start, length - margin, spacing)


def held_out_windows(ids: np.ndarray, context: int, max_windows: int) -> np.ndarray:
    """Non-overlapping windows (W, context) evenly spread over an encoded sequence."""
    n_windows = len(ids) // context
    pick = np.linspace(0, n_windows - 1, min(max_windows, n_windows)).round().astype(np.int64)
    return ids[: n_windows * context].reshape(n_windows, context)[pick]


@torch.no_grad()
def masked_base_eval(model: MergeDNA, windows: np.ndarray, spacing: int = 32, phases: int = 1,
                     margin: int = 16, batch_size: int = 32, both_strands: bool = False) -> MaskedEval:
    """Mask every `spacing`-th base (for each phase), predict it, report accuracy and CE."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct, ce_sum, count = 0, 0.0, 0
    for phase in range(phases):
        pos = masked_positions(windows.shape[1], spacing, phase * spacing // phases, margin)
        for lo in range(0, len(windows), batch_size):
            batch = torch.from_numpy(windows[lo:lo + batch_size].astype(np.int64)).to(device)
            truth = batch[:, pos]
            masked = batch.clone()
            masked[:, pos] = MASK
            logp = model(masked).logits[:, pos].float().log_softmax(-1)  # (b, P, 4)
            if both_strands:  # the reverse strand predicts the complement at the mirrored position
                rc = torch.from_numpy(reverse_complement(masked.cpu().numpy()).astype(np.int64)).to(device)
                n = windows.shape[1]
                logp_rc = model(rc).logits[:, n - 1 - pos].float().log_softmax(-1).flip(-1)  # A<->T, C<->G
                logp = torch.logaddexp(logp, logp_rc) - np.log(2.0)
            scored = truth < N_BASES
            nll = -logp.gather(-1, truth.clamp(max=N_BASES - 1)[..., None])[..., 0]
            correct += int(((logp.argmax(-1) == truth) & scored).sum())
            ce_sum += float((nll * scored).sum())
            count += int(scored.sum())
    model.train(was_training)
    return MaskedEval(correct / max(count, 1), ce_sum / max(count, 1), count)
