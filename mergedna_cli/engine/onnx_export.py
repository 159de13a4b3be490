"""Export the inference graph to ONNX and prove it matches PyTorch before keeping it.

The graph has dynamic batch and length axes. After export, ONNX Runtime and PyTorch run the same
real sequences (several batch sizes and lengths) and the file is kept only if every per-base
log-probability and token vector agrees within `tolerance` and the token maps are identical
(at real bases and tokens: what PAD positions hold differs between the two and is never used).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..alphabet import MASK, PAD
from ..atomic import temp_path
from ..errors import MergeDNAError, ModelError
from ..model.files import weights_sha256
from .backends import INPUTS, OUTPUTS

DEFAULT_TOLERANCE = 1e-4
OPSET = 18
# Bumped when the exported graph changes for the same weights, so that cached exports made by an
# earlier version are replaced by the current (faster) form instead of being reused.
# 2: per-head attention, PAD mask in the q.k product, every RMSNorm fused (fourth session).
EXPORT_REVISION = 2


@dataclass
class ParityReport:
    max_abs_log_prob: float
    max_abs_vector: float
    tokens_identical: bool
    cases: int

    def ok(self, tolerance: float) -> bool:
        return (self.tokens_identical and self.max_abs_log_prob <= tolerance
                and self.max_abs_vector <= tolerance)


class ParityError(MergeDNAError):
    pass


def masked_queries(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scoring graph's parity inputs: the first, middle and last base of each row masked and
    queried (window edges included, where a query's receptive field is cut)."""
    n = ids.shape[1]
    query = np.broadcast_to(np.array([0, n // 2, n - 1]), (len(ids), 3)).copy()
    masked = ids.copy()
    masked[np.arange(len(ids))[:, None], query] = MASK
    return masked, query


def parity_check(torch_backend, onnx_backend, sequences: list[np.ndarray]) -> ParityReport:
    """Compare both backends on each id batch in `sequences`."""
    lp, vec, same = 0.0, 0.0, True
    for ids in sequences:
        if torch_backend.part == "masked":
            ids, query = masked_queries(ids)
            a, b = torch_backend.run(ids, query), onnx_backend.run(ids, query)
            lp = max(lp, float(np.abs(a.log_probs - b.log_probs).max()))
            continue
        a, b = torch_backend.run(ids), onnx_backend.run(ids)
        same &= (np.array_equal(a.base2tok, b.base2tok) and np.array_equal(a.token_sizes, b.token_sizes)
                 and np.array_equal(a.token_mask, b.token_mask))
        if a.token_vectors is None:  # the tokenizer alone
            continue
        if a.log_probs is not None:  # real bases only: PAD positions carry no output
            real = (ids != PAD)[..., None]
            lp = max(lp, float(np.abs((a.log_probs - b.log_probs) * real).max()))
        mask = a.token_mask[..., None]
        vec = max(vec, float(np.abs((a.token_vectors - b.token_vectors) * mask).max()))
    return ParityReport(lp, vec, bool(same), len(sequences))


def export_onnx(model_dir: str | os.PathLike, out_path: str | os.PathLike, check_ids: list[np.ndarray],
                tolerance: float = DEFAULT_TOLERANCE, part: str = "full") -> ParityReport:
    """Export, check against PyTorch on `check_ids`, and move into place only if it passes."""
    import torch

    from ..model import load_model
    from .backends import OnnxBackend, TorchBackend
    from .graph import InferenceGraph

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out_path)
    model = load_model(model_dir)
    example = (torch.from_numpy(check_ids[0][:1].astype(np.int64)),)
    names = OUTPUTS[part]
    axes = {"ids": {0: "batch", 1: "length"}, "base2tok": {0: "batch", 1: "length"}}
    axes.update({name: {0: "batch", 1: "tokens"} for name in ("token_vectors", "token_sizes", "token_mask")})
    if part == "masked":
        ids, query = masked_queries(check_ids[0][:1].astype(np.int64))
        example = (torch.from_numpy(ids), torch.from_numpy(query))
        axes.update(query={0: "batch", 1: "queries"}, log_probs={0: "batch", 1: "queries"})
    elif "log_probs" in names:
        axes["log_probs"] = {0: "batch", 1: "length"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(InferenceGraph(model, part), example, str(tmp), input_names=list(INPUTS[part]),
                              output_names=list(names), dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"ONNX export failed: {str(exc).splitlines()[0]}") from None
    try:
        # one intra-op thread: ONNX Runtime on several is not run-to-run identical (docs/architecture.md)
        report = parity_check(TorchBackend(model_dir, device="cpu", part=part),
                              OnnxBackend(tmp, model.config, "cpu", threads=1), check_ids)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not report.ok(tolerance):
        tmp.unlink(missing_ok=True)
        raise ParityError(
            f"exported graph disagrees with PyTorch (max |log p| diff {report.max_abs_log_prob:.2e}, "
            f"max |vector| diff {report.max_abs_vector:.2e}, tokens identical: "
            f"{report.tokens_identical}; tolerance {tolerance:g}); not written")
    _stamp(tmp, weights_sha256(model_dir))
    os.replace(tmp, out_path)
    return report


def _stamp(path: Path, sha256: str) -> None:
    """Record the weights' sha256 in the graph, so a stale model.onnx is never used."""
    import onnx
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = "mergedna_weights_sha256", sha256
    onnx.save(graph, str(path))


def stamped_sha256(path: Path) -> str | None:
    import onnx
    graph = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in graph.metadata_props if p.key == "mergedna_weights_sha256"), None)


def onnx_file_name(part: str) -> str:
    return "model.onnx" if part == "full" else f"model.{part}.onnx"


def cached_onnx_path(model_dir: str | os.PathLike, part: str = "full") -> Path:
    """Where `--backend onnx` keeps the graph exported for a model: next to the weights when
    shipped (model.onnx, model.embedding.onnx), else in the user cache keyed by the weights'
    sha256 and EXPORT_REVISION. A shipped graph stamped with other weights is ignored."""
    name = onnx_file_name(part)
    shipped = Path(model_dir) / name
    sha = weights_sha256(model_dir)
    if shipped.is_file() and stamped_sha256(shipped) == sha:
        return shipped
    cache = Path(os.environ.get("MERGEDNA_CACHE", Path.home() / ".cache" / "mergedna"))
    return cache / "onnx" / f"{sha[:16]}.r{EXPORT_REVISION}.{name}"
