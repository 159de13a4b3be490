"""Backends run the inference graph: numpy ids in, numpy arrays out.

`TorchBackend` runs the PyTorch model (CPU or CUDA); `OnnxBackend` runs an exported graph in ONNX
Runtime (CPU, or CUDA where onnxruntime-gpu is installed). Both return the same BackendOutput, with
the learned tokenizer's merges made as a float64 tokenizer makes them (engine/merge_plan.py), so
the token map of a window does not depend on the runtime, device, batch or threads.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError, UsageError
from .merge_plan import ReferencePlans, certified_run

MERGES = ("merge_margin", "merge_plan")  # every graph but "plan" ends with these (merge_plan.py)
OUTPUTS = {  # output names of the inference graphs (engine/graph.py), per part
    "full": ("log_probs", "token_vectors", "token_sizes", "token_mask", "base2tok", *MERGES),
    "embedding": ("token_vectors", "token_sizes", "token_mask", "base2tok", *MERGES),
    "masked": ("log_probs", *MERGES),  # log_probs at the query positions only: (B, Q, 4)
    "tokens": ("token_sizes", "token_mask", "base2tok", *MERGES),  # the learned tokenizer alone
    "plan": ("merge_plan",),  # the float64 tokenizer's merge plan: the reference decisions
}
INPUTS = {"full": ("ids", "plan"), "embedding": ("ids", "plan"), "masked": ("ids", "query", "plan"),
          "tokens": ("ids", "plan"), "plan": ("ids",)}
# Extended graph optimisations (fused SiLU, transpose/scale folded into MatMul: ~6% faster on CPU).
# ORT_ENABLE_ALL adds nothing measurable on CPU for this graph. The graphs carry every RMSNorm as a
# fused node already (model/layers.py); ONNX Runtime's own RMSNorm fusion stays off so that no
# graph runs differently from how its parity check ran it.
DISABLED_OPTIMIZERS = ["SimplifiedLayerNormFusion"]
# ONNX Runtime runs at most this many windows per call. Per window on one thread, embedding / full
# graph, 512-base windows, calls of 8 vs 16 rows: 5.51 / 7.03 vs 5.55 / 7.09 ms (4 rows: no
# faster; an earlier export: 6.5 / 8.0 vs 6.8 / 9.0 ms). Smaller intermediates staying in cache is
# the likely reason, not measured. PyTorch gets no such limit: its per-call overhead favours large
# calls.
ONNX_MAX_ROWS = 8


def onnx_file_name(part: str) -> str:
    """A graph's file name next to the weights (model.onnx, model.masked.onnx, ...)."""
    return "model.onnx" if part == "full" else f"model.{part}.onnx"


def plan_graph_path(graph: str | os.PathLike, part: str) -> Path:
    """Where the float64 "plan" graph of `graph` (a graph of `part`) is: the same name with the
    part's file name replaced (model.masked.onnx -> model.plan.onnx, KEY.model.onnx ->
    KEY.model.plan.onnx), or NAME.plan.onnx beside a graph named otherwise."""
    graph = Path(graph)
    own = onnx_file_name(part)
    if graph.name.endswith(own):
        return graph.with_name(graph.name[:-len(own)] + onnx_file_name("plan"))
    return graph.with_name(graph.name.removesuffix(".onnx") + ".plan.onnx")


@dataclass
class BackendOutput:
    log_probs: np.ndarray | None  # (B, N, 4) float32, natural log, over A C G T; None for "embedding";
    #                               (B, Q, 4) at the query positions for "masked"
    token_vectors: np.ndarray | None  # (B, L, D) float32; None for "masked"
    token_sizes: np.ndarray | None    # (B, L) int64, 0 for PAD tokens
    token_mask: np.ndarray | None     # (B, L) bool
    base2tok: np.ndarray | None       # (B, N) int64
    merge_margin: np.ndarray | None = None  # (B,) float32: smallest score gap a merge rested on
    merge_plan: np.ndarray | None = None    # (B, N-1) int64: the merges made (merge_plan.py)


class TorchBackend:
    name = "torch"

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", threads: int | None = None,
                 part: str = "full", compression: float | None = None):
        """compression: the tokenizer's tokens per base (default: the model's)."""
        import torch

        from ..model import load_model
        from .graph import InferenceGraph

        if threads:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UsageError(f"--device {device}: no CUDA device is available to PyTorch "
                                 f"(torch {torch.__version__})")
            # full float32 on the GPU, as on the CPU: TF32 matmuls (10-bit mantissa) would move
            # merge scores far more than float rounding does, and token maps with them
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.torch_device = torch.device(device)
        if self.torch_device.type == "cuda" and self.torch_device.index is None:
            self.torch_device = torch.device("cuda", torch.cuda.current_device())
        self.device = str(self.torch_device)  # "cpu" or "cuda:N": recorded in output headers
        self.model = load_model(model_dir, device=self.torch_device, compression=compression)
        self.graph = InferenceGraph(self.model, part)
        self.config = self.model.config
        self.part = part
        self.outputs = OUTPUTS[part]
        self._reference = ReferencePlans(lambda: InferenceGraph(_float64_copy(self.model), "plan"))

    def run(self, ids: np.ndarray, query: np.ndarray | None = None) -> BackendOutput:
        """query (B, Q) base positions: required by, and only used by, the "masked" part."""
        return certified_run(self.run_with_plan, self.reference_plan, ids, query)

    def for_part(self, part: str) -> "TorchBackend":
        """A backend running another graph of this one's loaded model (the weights read once)."""
        from .graph import InferenceGraph

        twin = copy.copy(self)
        twin.graph, twin.part, twin.outputs = InferenceGraph(self.model, part), part, OUTPUTS[part]
        return twin

    def run_with_plan(self, ids: np.ndarray, query: np.ndarray | None, plan: np.ndarray) -> BackendOutput:
        """One float32 pass following `plan` (B, N-1) where a row has one, deciding where it is
        -1 (merge_plan.no_plan): what `run` is made of, and what agreement benchmarks compare."""
        inputs = [ids] + ([query] if self.part == "masked" else []) + [plan]
        return _output(self.outputs, self._call(self.graph, inputs))

    def reference_plan(self, ids: np.ndarray) -> np.ndarray:
        """The float64 tokenizer's merge plan (B, N-1) of each row."""
        return self._call(self._reference.graph(), [ids])[0]

    def _call(self, graph, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        inputs = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.torch_device) for a in arrays]
        with torch.inference_mode():
            out = graph(*inputs)
        return [t.cpu().numpy() for t in ((out,) if torch.is_tensor(out) else out)]


class OnnxBackend:
    name = "onnx"

    def __init__(self, onnx_path: str | os.PathLike, config, device: str = "auto",
                 threads: int | None = None, plan_graph: str | os.PathLike | None = None):
        """plan_graph: the float64 "plan" graph (default: plan_graph_path of onnx_path)."""
        import onnxruntime as ort

        available = ort.get_available_providers()
        cuda = {"device_id": int(device[5:]) if device.startswith("cuda:") else 0,
                # full float32, as on the CPU (see TorchBackend)
                "use_tf32": 0}
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise UsageError(f"--device {device} with --backend onnx needs onnxruntime-gpu "
                                 f"(available providers: {', '.join(available)})")
            providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        elif device == "auto" and "CUDAExecutionProvider" in available:
            providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if not Path(onnx_path).is_file():
            raise ModelError(f"ONNX graph '{onnx_path}' does not exist")
        try:
            try:
                self.session = ort.InferenceSession(str(onnx_path), options, providers=providers,
                                                    disabled_optimizers=DISABLED_OPTIMIZERS)
            except Exception as exc:
                if "use_tf32" not in str(exc):
                    raise
                # a release older than the option rejects it (which release added it was not
                # checked here); the CPU parity the benchmark measures tells whether that matters
                del cuda["use_tf32"]
                self.session = ort.InferenceSession(str(onnx_path), options, providers=providers,
                                                    disabled_optimizers=DISABLED_OPTIMIZERS)
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise ModelError(f"cannot load ONNX graph '{onnx_path}': {str(exc).splitlines()[0]}") from None
        on_gpu = "CUDAExecutionProvider" in self.session.get_providers()
        if device.startswith("cuda") and not on_gpu:  # onnxruntime-gpu without usable CUDA libraries
            raise UsageError(f"--device {device}: ONNX Runtime could not start its CUDA provider "
                             "(check that the CUDA and cuDNN versions onnxruntime-gpu needs are installed)")
        self.device = f"cuda:{cuda['device_id']}" if on_gpu else "cpu"  # recorded in output headers
        # the row limit is a CPU cache effect; a GPU needs large calls to be busy
        self.max_rows = None if on_gpu else ONNX_MAX_ROWS
        self.config = config
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        self.part = next((part for part, names in OUTPUTS.items() if tuple(names) == self.outputs), None)
        if self.part is None:
            raise ModelError(f"ONNX graph '{onnx_path}' has outputs {', '.join(self.outputs)}, not those of "
                             "this mergedna version's graphs: export it again (mergedna export-onnx)")
        plan_path = Path(plan_graph) if plan_graph else plan_graph_path(onnx_path, self.part)
        if self.part != "plan" and not plan_path.is_file():
            raise ModelError(f"ONNX graph '{onnx_path}' needs its merge-plan graph '{plan_path}': "
                             "export it again (mergedna export-onnx)")
        self._reference = ReferencePlans(lambda: OnnxBackend(plan_path, config, device, threads).session)

    def run(self, ids: np.ndarray, query: np.ndarray | None = None) -> BackendOutput:
        if self.part == "plan":
            return _output(self.outputs, [self._rows(self.session, {"ids": ids})[0]])
        return certified_run(self.run_with_plan, self.reference_plan, ids, query)

    def run_with_plan(self, ids: np.ndarray, query: np.ndarray | None, plan: np.ndarray) -> BackendOutput:
        feed = {"ids": ids, "plan": plan} | ({"query": query} if self.part == "masked" else {})
        return _output(self.outputs, self._rows(self.session, feed))

    def reference_plan(self, ids: np.ndarray) -> np.ndarray:
        """The float64 "plan" graph's merge plan (B, N-1) of each row."""
        return self._rows(self._reference.graph(), {"ids": ids})[0]

    def _rows(self, session, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """session's outputs for `feed`, run max_rows rows at a time."""
        feed = {name: np.ascontiguousarray(value, dtype=np.int64) for name, value in feed.items()}
        n = len(feed["ids"])
        step = self.max_rows or max(n, 1)
        parts = [session.run(None, {name: value[a:a + step] for name, value in feed.items()})
                 for a in range(0, max(n, 1), step)]
        return [np.concatenate(arrays) for arrays in zip(*parts)]


def concat_outputs(outs: list[BackendOutput]) -> BackendOutput:
    """One BackendOutput from the outputs of consecutive row slices of a batch (every slice of a
    batch has the same token layout: it depends on the window length only)."""
    return BackendOutput(**{
        field.name: None if getattr(outs[0], field.name) is None
        else np.concatenate([getattr(out, field.name) for out in outs])
        for field in dataclasses.fields(BackendOutput)})


def _output(names, arrays) -> BackendOutput:
    return BackendOutput(**{field.name: None for field in dataclasses.fields(BackendOutput)} | dict(zip(names, arrays)))


def _float64_copy(model):
    return copy.deepcopy(model).double()
