"""A fine-tuned model at inference: the encoder runs on the torch or ONNX backend (the
"embedding" graph), pooling and the head run in torch on CPU. A model fine-tuned with
reverse-complement augmentation (finetune.json "strand": "both") averages both strands."""

from __future__ import annotations

import numpy as np
import torch

from ..engine.load import make_backend
from .batching import length_sorted_batches, pad_rows, reverse_complements
from .checkpoint import load_head, read_info, task_of
from .head import pool_tokens


class Predictor:
    def __init__(self, model_dir, backend: str = "torch", device: str = "auto", threads: int | None = None,
                 log=lambda msg: None):
        self.info = read_info(model_dir)
        self.task = task_of(self.info)
        self.head = load_head(model_dir, self.info)
        self.backend = make_backend(str(model_dir), backend, device, threads, log=log, part="embedding")
        self.both_strands = self.info.get("strand", "forward") == "both"

    @torch.no_grad()
    def outputs(self, ids: list[np.ndarray], batch_size: int = 64, on_batch=lambda n: None) -> np.ndarray:
        """Class probabilities (n, C), or standardised regression values (n,), in input order."""
        strands = [ids] + ([reverse_complements(ids)] if self.both_strands else [])
        out = np.zeros((len(ids), self.task.n_outputs), dtype=np.float32)
        for index in length_sorted_batches(ids, batch_size):
            for strand in strands:
                run = self.backend.run(pad_rows([strand[i] for i in index]))
                pooled = pool_tokens(torch.from_numpy(run.token_vectors), torch.from_numpy(run.token_sizes))
                logits = self.head(pooled)
                y = logits.softmax(-1) if self.task.kind == "classification" else logits
                out[index] += y.numpy() / len(strands)
            on_batch(len(index))
        return out if self.task.kind == "classification" else out[:, 0]
