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
from .backends import INPUTS, OUTPUTS, onnx_file_name, plan_graph_path

DEFAULT_TOLERANCE = 1e-4
OPSET = 18
# Bumped when the exported graph changes for the same weights, so that cached exports made by an
# earlier version are replaced by the current form instead of being reused (the cache file name
# and the graph's stamp carry it). 3: a merge plan in, merge margin and plan out (merge_plan.py).
EXPORT_REVISION = 3


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
    """Export, check against PyTorch on `check_ids`, and move into place only if it passes.
    A graph's float64 "plan" graph (engine/merge_plan.py) is exported beside it first, unless a
    current one is there already."""
    import torch

    from ..model import load_model
    from .backends import OnnxBackend, TorchBackend
    from .graph import InferenceGraph
    from .merge_plan import no_plan

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sha = weights_sha256(model_dir)
    plan_path, new_plan = None, False
    if part != "plan":
        plan_path = plan_graph_path(out_path, part)
        if not is_current(plan_path, sha):
            export_onnx(model_dir, plan_path, check_ids, tolerance, "plan")
            new_plan = True
    tmp = temp_path(out_path)

    def discard() -> None:  # a failed export leaves nothing behind, not even its new plan graph
        tmp.unlink(missing_ok=True)
        if new_plan:
            plan_path.unlink(missing_ok=True)

    model = load_model(model_dir)
    if part == "plan":
        model = model.double()
    first = check_ids[0][:1].astype(np.int64)
    example = (torch.from_numpy(first),)
    names = OUTPUTS[part]
    axes = {"ids": {0: "batch", 1: "length"}, "base2tok": {0: "batch", 1: "length"},
            "plan": {0: "batch", 1: "edges"}, "merge_plan": {0: "batch", 1: "edges"}, "merge_margin": {0: "batch"}}
    axes.update({name: {0: "batch", 1: "tokens"} for name in ("token_vectors", "token_sizes", "token_mask")})
    if part == "masked":
        ids, query = masked_queries(first)
        example = (torch.from_numpy(ids), torch.from_numpy(query))
        axes.update(query={0: "batch", 1: "queries"}, log_probs={0: "batch", 1: "queries"})
    elif "log_probs" in names:
        axes["log_probs"] = {0: "batch", 1: "length"}
    if part != "plan":
        example = (*example, torch.from_numpy(no_plan(first)))
    axes = {name: axis for name, axis in axes.items() if name in INPUTS[part] or name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(InferenceGraph(model, part), example, str(tmp), input_names=list(INPUTS[part]),
                              output_names=list(names), dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
        except Exception as exc:
            discard()
            raise ModelError(f"ONNX export failed: {str(exc).splitlines()[0]}") from None
    try:
        # one intra-op thread: ONNX Runtime on several is not run-to-run identical (docs/architecture.md)
        onnx_backend = OnnxBackend(tmp, model.config, "cpu", threads=1, plan_graph=plan_path)
        if part == "plan":
            report = plan_parity(TorchBackend(model_dir, device="cpu", part="tokens"), onnx_backend, check_ids)
        else:
            report = parity_check(TorchBackend(model_dir, device="cpu", part=part), onnx_backend, check_ids)
    except BaseException:
        discard()
        raise
    if not report.ok(tolerance):
        discard()
        raise ParityError(
            f"exported graph disagrees with PyTorch (max |log p| diff {report.max_abs_log_prob:.2e}, "
            f"max |vector| diff {report.max_abs_vector:.2e}, tokens identical: "
            f"{report.tokens_identical}; tolerance {tolerance:g}); not written")
    _stamp(tmp, sha)
    os.replace(tmp, out_path)
    return report


def plan_parity(torch_backend, plan_backend, sequences: list[np.ndarray]) -> ParityReport:
    """The float64 plan graph against PyTorch's float64 tokenizer: identical plans on every row,
    MASK bases included (the scoring passes' windows)."""
    same = True
    for ids in sequences:
        for batch in (ids, masked_queries(ids)[0]):
            same &= np.array_equal(torch_backend.reference_plan(batch), plan_backend.run(batch).merge_plan)
    return ParityReport(0.0, 0.0, bool(same), len(sequences))


def _stamp(path: Path, sha256: str) -> None:
    """Record the weights' sha256 and the export revision in the graph, so that a graph of other
    weights, or one exported by a version whose graphs had other inputs, is never used."""
    import onnx
    graph = onnx.load(str(path))
    for key, value in (("mergedna_weights_sha256", sha256), ("mergedna_export_revision", str(EXPORT_REVISION))):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


def _stamps(path: Path) -> dict[str, str]:
    import onnx
    graph = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in graph.metadata_props}


def is_current(path: Path, sha256: str) -> bool:
    """`path` is a graph exported by this export revision from the weights with this sha256."""
    if not Path(path).is_file():
        return False
    stamps = _stamps(path)
    return (stamps.get("mergedna_weights_sha256") == sha256
            and stamps.get("mergedna_export_revision") == str(EXPORT_REVISION))


def cached_onnx_path(model_dir: str | os.PathLike, part: str = "full") -> Path:
    """Where `--backend onnx` keeps the graph exported for a model: next to the weights when
    shipped (model.onnx, model.embedding.onnx), else in the user cache keyed by the weights'
    sha256 and EXPORT_REVISION. A shipped graph stamped with other weights or another export
    revision, or without its current plan graph, is ignored."""
    name = onnx_file_name(part)
    shipped = Path(model_dir) / name
    sha = weights_sha256(model_dir)
    if is_current(shipped, sha) and (part == "plan" or is_current(plan_graph_path(shipped, part), sha)):
        return shipped
    cache = Path(os.environ.get("MERGEDNA_CACHE", Path.home() / ".cache" / "mergedna"))
    return cache / "onnx" / f"{sha[:16]}.r{EXPORT_REVISION}.{name}"
