"""Merge decisions that do not depend on the runtime (engine/merge_plan.py, model/merging.py).

- A token map's merge plan, given back to the tokenizer, reproduces it exactly, and a plan
  overrides the budget's own decision; rows of -1 decide for themselves.
- merge_margin is the gap between the lowest-ranked merge made and the highest-ranked legal merge
  not made (checked against that definition, per row and per chunk).
- certified_run asks for the float64 plan only for rows below CERTAIN_MARGIN and reruns only
  when a plan differs.
- Real regions of the example BRCA1 reference, several sizes, both strands, embedded with
  PyTorch and ONNX Runtime at two batch sizes and two threads: equal token maps and embeddings
  within 1e-4 (the goal of issue 15; before the plan, ~1 window in 700 tokenized differently).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, build_model, random_ids, tiny_config
from mergedna_cli.alphabet import MASK
from mergedna_cli.engine import merge_plan
from mergedna_cli.engine.backends import BackendOutput
from mergedna_cli.model.config import MergeDNAConfig
from mergedna_cli.model.merging import NEG_INF, WINDOW_PENALTY, TokenState, merge_adjacent

EXAMPLE_FASTA = REPO_ROOT / "docs" / "example" / "brca1_chr17.fa.gz"
SHIPPED = REPO_ROOT / "models" / "mergedna-small"


def tokenize(model, ids, compression=None, plan=None):
    with torch.no_grad():
        return model.tokenize(ids, compression, plan=plan)


def masked_random_ids(seed: int) -> torch.Tensor:
    ids = random_ids(4, 200, seed=seed, lengths=[200, 180, 200, 57])
    ids[0, 50:53] = MASK
    ids[2, 199] = MASK
    return ids


def test_a_plan_reproduces_its_tokens_exactly(any_tokenizer_model):
    ids = masked_random_ids(seed=11)
    first = tokenize(any_tokenizer_model, ids)
    again = tokenize(any_tokenizer_model, ids, plan=first.plan)
    assert torch.equal(first.base2tok, again.base2tok)
    assert torch.equal(first.state.size, again.state.size)
    assert torch.equal(first.state.x, again.state.x)
    assert torch.equal(first.plan, again.plan)


def test_a_plan_overrides_the_budget_and_minus_one_rows_decide():
    """The plan of compression 0.3 followed at compression 0.5 gives the 0.3 tokens; a row of -1
    in the same batch tokenizes as without a plan."""
    model = build_model(MergeDNAConfig(**{**tiny_config().to_dict(), "context": 200}), seed=4).eval()
    ids = masked_random_ids(seed=12)
    coarse, own = tokenize(model, ids, 0.3), tokenize(model, ids, 0.5)
    plan = coarse.plan.clone()
    plan[1] = -1
    mixed = tokenize(model, ids, 0.5, plan=plan)
    real_map = [tokens.spans()[2] for tokens in (mixed, coarse, own)]  # -1 at PAD bases
    for row in (0, 2, 3):
        assert torch.equal(real_map[0][row], real_map[1][row])
    assert torch.equal(real_map[0][1], real_map[2][1])


def test_plan_counts_the_steps_each_boundary_survives(four_step_model):
    ids = random_ids(2, 256, seed=13)
    tokens = tokenize(four_step_model, ids)
    steps = four_step_model.config.n_local_encoder
    apart = (tokens.base2tok[:, 1:] != tokens.base2tok[:, :-1])
    assert torch.equal(apart, tokens.plan == steps)  # still apart after the last step
    assert tokens.plan.min() >= 0 and tokens.plan.max() <= steps


def _expected_margin(priority: np.ndarray, join: np.ndarray, legal: np.ndarray, groups: np.ndarray) -> float:
    """min over groups of (lowest key merged - highest legal key not merged), inf where a group
    has no merge or no legal edge left unmerged."""
    key = priority - np.arange(len(priority)) * 1e-6
    margin = np.inf
    for g in np.unique(groups):
        inside = groups == g
        made, left = key[inside & join], key[inside & legal & ~join]
        if made.size and left.size:
            margin = min(margin, made.min() - left.max())
    return margin


@pytest.mark.parametrize("chunk", [0, 16])
def test_margin_is_the_gap_between_merged_and_unmerged(chunk):
    gen = torch.Generator().manual_seed(5)
    B, T, G, window = 3, 64, 8, 8
    state = TokenState(x=torch.randn(B, T, 4, generator=gen), size=torch.ones(B, T),
                       pos=torch.arange(T, dtype=torch.float32).expand(B, T), valid=torch.ones(B, T, dtype=torch.bool),
                       masked=torch.zeros(B, T, dtype=torch.bool))
    state.masked[1, 20:23] = True
    group = torch.randn(B, T, G, generator=gen)
    n_chunks = T // chunk if chunk else 1
    target = torch.full((B, n_chunks), (chunk or T) // 2) if chunk else torch.full((B,), T // 2)
    step = merge_adjacent(state, group, target, layout=T, window=window, window_offset=4, chunk=chunk)
    g = torch.nn.functional.normalize(group, dim=-1)
    score = (g[:, :-1] * g[:, 1:]).sum(-1)
    edge = torch.arange(1, T)
    legal = (state.masked[:, :-1] == state.masked[:, 1:])
    if chunk:
        legal &= (edge - 1) // chunk == edge // chunk
    priority = torch.where((edge + 4) % window != 0, score, score - WINDOW_PENALTY).masked_fill(~legal, NEG_INF)
    groups = ((edge - 1) // chunk).numpy() if chunk else np.zeros(T - 1, int)
    for row in range(B):
        expected = _expected_margin(priority[row].numpy().astype(np.float64), step.join[row].numpy(),
                                    legal[row].numpy(), groups)
        assert step.margin[row].item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


class _FakeBackend:
    """Two-edge rows: margins and plans chosen by the test."""

    def __init__(self, margins, plans32, plans64):
        self.margins, self.plans32, self.plans64 = np.array(margins, np.float32), plans32, plans64
        self.calls, self.reference_rows = [], []

    def run(self, ids, query, plan):
        self.calls.append(plan.copy())
        used = np.where(plan[:, :1] >= 0, plan, self.plans32[ids[:, 0]])
        return BackendOutput(None, None, None, None, used[:, :1] * 10, self.margins[ids[:, 0]], used)

    def reference(self, ids):
        self.reference_rows.append(ids[:, 0].tolist())
        return self.plans64[ids[:, 0]]


def test_certified_run_consults_float64_only_below_the_margin_and_reruns_only_on_a_difference():
    ids = np.arange(4)[:, None].repeat(3, 1)  # row r holds r: the fake looks plans up by it
    plans32 = np.array([[0, 1], [1, 0], [0, 0], [1, 1]])
    plans64 = np.array([[0, 1], [0, 1], [0, 0], [1, 1]])  # row 1 differs
    tau = merge_plan.CERTAIN_MARGIN
    fake = _FakeBackend([1.0, tau / 10, tau / 10, 1.0], plans32, plans64)
    out = merge_plan.certified_run(fake.run, fake.reference, ids)
    assert fake.reference_rows == [[1, 2]]  # only the rows below the margin
    assert len(fake.calls) == 2
    assert fake.calls[1].tolist() == [[0, 1]]  # row 1 alone, following the float64 plan
    assert out.merge_plan.tolist() == plans64.tolist()
    assert out.base2tok[:, 0].tolist() == [0, 0, 0, 10]

    agree = _FakeBackend([tau / 10] * 4, plans32, plans32)
    merge_plan.certified_run(agree.run, agree.reference, ids)
    assert len(agree.calls) == 1  # checked, all equal: no rerun
    sure = _FakeBackend([1.0] * 4, plans32, plans64)
    merge_plan.certified_run(sure.run, sure.reference, ids)
    assert sure.reference_rows == [] and len(sure.calls) == 1


# -- the shipped model on real sequence: every backend, batch size and thread count ----------------

# The three regions of docs/example/brca1_regions.bed, three more of 700-3,000 bases, and the
# window chr17:43,149,641-43,150,152 (real sequence, then N), the one window of the example's
# 130 kb whose reverse strand the float32 embedding graphs tokenized differently in PyTorch and
# ONNX Runtime on the development machine (its merge gap: 6e-8).
REGIONS = [(43_044_294, 43_045_802), (43_090_000, 43_090_200), (43_124_000, 43_125_483),
           (43_060_000, 43_063_000), (43_100_500, 43_101_400), (43_030_000, 43_030_700),
           (43_149_791, 43_150_000)]


@pytest.fixture(scope="module")
def embedded():
    """Per-token embeddings of REGIONS (both strands pooled) by each configuration."""
    from mergedna_cli.engine.engine import Engine
    from mergedna_cli.engine.load import make_backend
    from mergedna_cli.io.reference import Reference
    from mergedna_cli.io.regions import Region

    reference = Reference(EXAMPLE_FASTA)
    regions = [Region("chr17", start, end) for start, end in REGIONS]
    results = {}
    for backend in ("torch", "onnx"):
        for threads, batch in ((1, 16), (2, 3)):
            engine = Engine(make_backend(str(SHIPPED), backend, "cpu", threads, part="embedding"),
                            reference, batch_size=batch)
            results[backend, threads, batch] = list(engine.embed(regions, per_token=True))
    return results


def test_real_regions_embed_identically_on_every_backend_batch_and_thread_count(embedded):
    reference = embedded["torch", 1, 16]
    for key, result in embedded.items():
        for want, got in zip(reference, result):
            assert np.array_equal(want.token_starts, got.token_starts), (key, want.region)
            assert np.array_equal(want.token_ends, got.token_ends), (key, want.region)
            assert np.abs(want.embedding - got.embedding).max() <= 1e-4, (key, want.region)
            assert np.abs(want.token_vectors - got.token_vectors).max() <= 1e-4, (key, want.region)


def test_thereference_plan_is_needed_on_real_sequence():
    """The check is not idle: on these windows some merge gaps are below CERTAIN_MARGIN, and the
    float64 plan graph shipped with the model agrees with PyTorch's float64 tokenizer there."""
    from mergedna_cli.engine.backends import OnnxBackend, TorchBackend
    from mergedna_cli.engine.onnx_export import masked_queries
    from mergedna_cli.io.reference import Reference

    torch_backend = TorchBackend(SHIPPED, device="cpu", threads=1, part="tokens")
    plan_graph = OnnxBackend(SHIPPED / "model.plan.onnx", torch_backend.config, "cpu", threads=1)
    reference = Reference(EXAMPLE_FASTA)
    ids = np.stack([reference.fetch_ids("chr17", s, s + 512) for s in range(43_060_000, 43_068_192, 512)])
    out = torch_backend.run_with_plan(ids, None, merge_plan.no_plan(ids))
    assert (out.merge_margin < merge_plan.CERTAIN_MARGIN).any()
    for batch in (ids, masked_queries(ids)[0]):
        assert np.array_equal(torch_backend.reference_plan(batch), plan_graph.run(batch).merge_plan)


def test_a_graph_of_an_older_export_is_refused_with_one_line(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    from mergedna_cli.engine.backends import OnnxBackend
    from mergedna_cli.errors import ModelError

    outputs = ["token_sizes", "token_mask", "base2tok"]  # the tokens graph before merge plans
    nodes = [helper.make_node("Identity", ["ids"], [name]) for name in outputs]
    graph = helper.make_graph(nodes, "old", [helper.make_tensor_value_info("ids", TensorProto.INT64, [None, None])],
                              [helper.make_tensor_value_info(n, TensorProto.INT64, [None, None]) for n in outputs])
    path = tmp_path / "old.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ModelError, match="export it again"):
        OnnxBackend(path, tiny_config(), "cpu", threads=1)


def test_score_writes_the_same_llrs_on_every_backend_batch_and_thread_count(run_cli, tmp_path):
    """The README's 284 example ClinVar SNVs, shipped model: ONNX Runtime at
    two batch sizes and thread counts writes identical files; PyTorch writes the same statuses
    and LLRs within 1e-4, the last written decimal (float32 rounding decides where a value is
    ~1e-6 from a rounding edge)."""
    from conftest import EXAMPLE_VCF

    def llrs(name, *options):
        out = tmp_path / f"{name}.tsv"
        run_cli("score", "--fasta", EXAMPLE_FASTA, "--vcf", EXAMPLE_VCF,
                "-o", out, "--quiet", *options, check=True)
        rows = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("#")]
        return out.read_text(), rows

    text, onnx = llrs("onnx", "--backend", "onnx", "--threads", "2")
    assert len(onnx) == 285  # header + 284 records
    assert llrs("onnx_b3", "--backend", "onnx", "--threads", "1", "--batch-size", "3")[0] == text
    _, torch_rows = llrs("torch", "--backend", "torch", "--threads", "1", "--batch-size", "5")
    header = onnx[0]
    status, llr = header.index("status"), header.index("llr")
    assert len(torch_rows) == len(onnx)
    score = header.index("score")
    for a, b in zip(onnx[1:], torch_rows[1:]):
        assert a[:5] == b[:5] and a[status] == b[status]  # the record and its status
        for column in (score, llr):
            assert abs(float(a[column]) - float(b[column])) <= 1e-4 + 1e-9, (a, b)
