"""The inference engine: window tiling, batching, strand averaging, per-token spans, ONNX parity.

A tiny random model (seeded) is saved once per module; the README's example chr17 (docs/example:
full length, real sequence around BRCA1, N elsewhere) supplies the sequence. Everything runs on one CPU thread in well under a second each,
apart from the one ONNX export (about 2 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CHR17_LENGTH, EXAMPLE_FASTA, EXAMPLE_FIRST_REAL

from mergedna_cli.alphabet import PAD, decode, reverse_complement
from mergedna_cli.engine import onnx_export
from mergedna_cli.engine.backends import ONNX_MAX_ROWS, OnnxBackend, TorchBackend
from mergedna_cli.engine.engine import Engine
from mergedna_cli.engine.load import parity_sequences
from mergedna_cli.engine.onnx_export import ParityError, ParityReport, export_onnx
from mergedna_cli.engine.windows import default_flank, tile
from mergedna_cli.io.reference import Reference
from mergedna_cli.io.regions import Region
from mergedna_cli.model import MergeDNAConfig

BRCA1 = 43_044_294          # 0-based start of BRCA1 (GRCh38), inside the real sequence
REAL_FIRST = EXAMPLE_FIRST_REAL  # 0-based first real base; N before it


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> Path:
    torch.set_num_threads(1)
    return tiny_model_dir


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory):
    """Keep any ONNX export this module triggers out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MERGEDNA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def backend(model_dir) -> TorchBackend:
    return TorchBackend(model_dir, device="cpu", threads=1)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(EXAMPLE_FASTA)


def embed(backend, reference, regions, **kwargs):
    per_token = kwargs.pop("per_token", False)
    return list(Engine(backend, reference, **kwargs).embed(regions, per_token=per_token))


# ----------------------------------------------------------------------------- windows

CONTEXT, FLANK = 256, 64
KEEP = CONTEXT - 2 * FLANK


@pytest.mark.parametrize("length", [1, KEEP - 1, KEEP, KEEP + 1, 5 * KEEP + 3])
@pytest.mark.parametrize("start", [1000, 0, -10])
def test_tile_kept_parts_tile_region_exactly(start, length):
    end = start + length
    windows = list(tile("c", start, end, CONTEXT, FLANK))
    assert len(windows) == -(-length // KEEP)
    covered = np.concatenate([np.arange(w.keep_start, w.keep_end) for w in windows])
    np.testing.assert_array_equal(covered, np.arange(start, end))   # no gap, no overlap, in order
    for w in windows:
        assert w.contig == "c"
        assert w.end - w.start == CONTEXT
        assert w.start <= w.keep_start < w.keep_end <= w.end
        # every kept base has at least `flank` bases of context on each side
        assert w.keep_start - w.start >= FLANK and w.end - w.keep_end >= FLANK
        kept = w.keep_slice
        assert kept.stop - kept.start == w.keep_end - w.keep_start
        assert np.arange(w.start, w.end)[kept][0] == w.keep_start


def test_tile_short_region_is_centred():
    (w,) = tile("c", 1000, 1010, CONTEXT, FLANK)
    assert w.keep_start - w.start == (CONTEXT - 10) // 2
    assert abs((w.keep_start - w.start) - (w.end - w.keep_end)) <= 1


def test_tile_rejects_flank_without_centre():
    with pytest.raises(ValueError):
        list(tile("c", 0, 10, 256, 128))


def test_default_flank():
    assert default_flank(256) == 64 and default_flank(1024) == 256


# ----------------------------------------------------------------------------- engine

MIXED = [
    Region("chr17", BRCA1, BRCA1 + 700, "long"),            # 6 windows
    Region("chr17", BRCA1 + 5000, BRCA1 + 5001, "one"),     # 1 base
    Region("chr17", BRCA1 + 9000, BRCA1 + 9050, "short"),
    Region("chr17", REAL_FIRST - 100, REAL_FIRST + 300, "n_edge"),   # N -> real sequence
    Region("chr17", BRCA1 + 20000, BRCA1 + 20000 + KEEP + 1, "keep+1"),
    Region("chr17", BRCA1 + 30000, BRCA1 + 30003, "three"),
]


def test_same_embeddings_at_any_batch_size(backend, reference):
    results = {bs: embed(backend, reference, MIXED, batch_size=bs) for bs in (1, 3, 16)}
    for bs, items in results.items():
        assert [r.region for r in items] == MIXED
        for item in items:
            assert item.embedding.shape == (backend.config.d_model,)
            assert item.embedding.dtype == np.float32
            assert np.isfinite(item.embedding).all()
    reference_rows = np.stack([r.embedding for r in results[1]])
    for bs in (3, 16):
        np.testing.assert_allclose(np.stack([r.embedding for r in results[bs]]), reference_rows,
                                   atol=1e-6, rtol=0)
    # the regions really differ (so a row mix-up would show)
    assert np.abs(reference_rows[0] - reference_rows[1]).max() > 1e-3


def test_results_in_input_order_match_each_region_alone(backend, reference):
    together = embed(backend, reference, MIXED, batch_size=4)
    assert [r.region.name for r in together] == [r.name for r in MIXED]
    for region, item in zip(MIXED, together):
        (alone,) = embed(backend, reference, [region], batch_size=4)
        np.testing.assert_allclose(item.embedding, alone.embedding, atol=1e-6, rtol=0)


def test_engine_streams_lazily(backend, reference):
    """The first region comes out before later regions are read (streaming, not collect-all)."""
    consumed = []

    def regions():
        for region in MIXED:
            consumed.append(region.name)
            yield region

    stream = Engine(backend, reference, batch_size=2).embed(regions())
    first = next(stream)
    assert first.region == MIXED[0]
    assert len(consumed) < len(MIXED)


@pytest.fixture(scope="module")
def strand_fasta(reference, tmp_path_factory) -> tuple[Reference, int]:
    """A plain FASTA holding a real 1,000-base sequence ('fwd') and its reverse complement ('rev')."""
    ids = reference.fetch_ids("chr17", BRCA1 + 1234, BRCA1 + 2234)
    path = tmp_path_factory.mktemp("strands") / "pair.fa"
    path.write_text(f">fwd\n{decode(ids)}\n>rev\n{decode(reverse_complement(ids))}\n")
    return Reference(path), len(ids)


# (start, end) on 'fwd'. The engine averages each forward window with its own reverse complement;
# that equals the forward pass over the reverse-complement region only where the tiling is itself
# strand-symmetric: a whole number of kept parts (768 = 6 x 128, 256 = 2 x 128), or one window
# with even padding (100, 2 bases). (0, 1000) would not be: its last, partial window sits at the
# 3' end on one strand and at the 5' end on the other.
@pytest.mark.parametrize("start,end", [(100, 868), (0, 256), (300, 556), (450, 550), (10, 12)])
def test_both_strands_is_mean_of_forward_and_reverse_complement(backend, strand_fasta, start, end):
    ref, length = strand_fasta
    fwd_region = Region("fwd", start, end)
    rev_region = Region("rev", length - end, length - start)   # the same bases, other strand
    forward = embed(backend, ref, [fwd_region, rev_region], strands="forward")
    (both,) = embed(backend, ref, [fwd_region], strands="both")
    expected = 0.5 * (forward[0].embedding.astype(np.float64) + forward[1].embedding)
    np.testing.assert_allclose(both.embedding, expected, atol=1e-5, rtol=0)
    # the strands really differ, so "both" is not just the forward strand
    assert np.abs(forward[0].embedding - forward[1].embedding).max() > 1e-4
    # and "both" is strand-symmetric: the reverse-complement region gives the same vector
    (both_rev,) = embed(backend, ref, [rev_region], strands="both")
    np.testing.assert_allclose(both_rev.embedding, both.embedding, atol=1e-5, rtol=0)


@pytest.mark.parametrize("length", [105, 1001])
def test_both_strands_by_hand_with_asymmetric_windows(backend, reference, length):
    """Odd padding (105 bases in one window; 1001 = 7 x 128 + 105): each base's reverse-strand
    vector must come from the same base of the reverse-complemented window."""
    from mergedna_cli.engine.engine import per_base_vectors

    region = Region("chr17", BRCA1 + 777, BRCA1 + 777 + length)
    total = np.zeros(backend.config.d_model)
    for w in tile("chr17", region.start, region.end, CONTEXT, FLANK):
        ids = reference.fetch_ids("chr17", w.start, w.end)[None]
        fwd = per_base_vectors(backend.run(ids))[0].astype(np.float64)
        rev = per_base_vectors(backend.run(reverse_complement(ids)))[0, ::-1].astype(np.float64)
        total += 0.5 * (fwd[w.keep_slice] + rev[w.keep_slice]).sum(0)
    (item,) = embed(backend, reference, [region], strands="both")
    np.testing.assert_allclose(item.embedding, total / length, atol=1e-6, rtol=0)


PER_TOKEN_REGIONS = MIXED + [
    Region("chr17", CHR17_LENGTH - 41, CHR17_LENGTH + 59, "past_end"),   # crosses the contig end
    Region("chr17", 0, 100, "contig_start"),
]


@pytest.mark.parametrize("strands", ["forward", "both"])
def test_per_token_spans_tile_each_region(backend, reference, strands):
    items = embed(backend, reference, PER_TOKEN_REGIONS, batch_size=5, per_token=True, strands=strands)
    assert [r.region for r in items] == PER_TOKEN_REGIONS
    d = backend.config.d_model
    for item in items:
        starts, ends, vectors = item.token_starts, item.token_ends, item.token_vectors
        assert starts[0] == item.region.start and ends[-1] == item.region.end
        np.testing.assert_array_equal(starts[1:], ends[:-1])          # no gap, no overlap
        assert (ends - starts >= 1).all()
        assert vectors.shape == (len(starts), d) and vectors.dtype == np.float32
        if strands == "forward":
            # the pooled embedding is the size-weighted mean of the token vectors
            sizes = (ends - starts).astype(np.float64)
            pooled = (vectors * sizes[:, None]).sum(0) / sizes.sum()
            np.testing.assert_allclose(item.embedding, pooled, atol=1e-6, rtol=0)
    # tokens merge bases: a real 700-base region has far fewer tokens than bases
    assert len(items[0].token_starts) < 0.8 * len(items[0].region)


def test_without_per_token_no_spans(backend, reference):
    (item,) = embed(backend, reference, MIXED[:1])
    assert item.token_starts is None and item.token_vectors is None


def test_region_past_contig_end(backend, reference):
    past = Region("chr17", 83_257_399, 83_257_500, "chr17:83257400-83257500")
    beyond = Region("chr17", CHR17_LENGTH + 1000, CHR17_LENGTH + 1300, "beyond")
    items = embed(backend, reference, [past, beyond], per_token=True)
    assert [r.region for r in items] == [past, beyond]
    for item in items:
        assert np.isfinite(item.embedding).all()
        assert item.token_starts[0] == item.region.start and item.token_ends[-1] == item.region.end


def test_contig_alias_in_engine(backend, reference):
    (alias,) = embed(backend, reference, [Region("17", BRCA1, BRCA1 + 50, "x")])
    (plain,) = embed(backend, reference, [Region("chr17", BRCA1, BRCA1 + 50, "x")])
    assert alias.region.chrom == "17"   # output keeps the user's name
    np.testing.assert_array_equal(alias.embedding, plain.embedding)


# ----------------------------------------------------------------------------- ONNX

@pytest.fixture(scope="module")
def onnx_path(model_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(model_dir, path, parity_sequences(MergeDNAConfig.preset("tiny").context))
    assert report.ok(onnx_export.DEFAULT_TOLERANCE) and report.cases == 4
    return path


def test_onnx_matches_torch_on_real_windows(backend, reference, onnx_path):
    onnx = OnnxBackend(onnx_path, backend.config, device="cpu", threads=1)
    regions = [(BRCA1, BRCA1 + 600), (REAL_FIRST - 150, REAL_FIRST + 150), (CHR17_LENGTH - 100, CHR17_LENGTH)]
    windows = [w for lo, hi in regions for w in tile("chr17", lo, hi, CONTEXT, FLANK)]
    full = np.stack([reference.fetch_ids("chr17", w.start, w.end) for w in windows])
    batches = [full, full[:1], full[:3, :200]]   # several batch sizes; a shorter length too
    for ids in batches:
        a, b = backend.run(ids), onnx.run(ids)
        assert b.log_probs.shape == a.log_probs.shape == (*ids.shape, 4)
        np.testing.assert_allclose(b.log_probs, a.log_probs, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(b.base2tok, a.base2tok)
        np.testing.assert_array_equal(b.token_mask, a.token_mask)
        np.testing.assert_array_equal(b.token_sizes, a.token_sizes)
        mask = a.token_mask[..., None]
        np.testing.assert_allclose(b.token_vectors * mask, a.token_vectors * mask, atol=1e-4, rtol=0)


def test_onnx_matches_torch_at_real_positions_of_padded_rows(backend, reference, onnx_path):
    # Inference windows are N-padded, but fine-tuning batches pad short sequences with PAD; the
    # exported attention hides PAD keys through the q.k product, so only PAD outputs may differ.
    onnx = OnnxBackend(onnx_path, backend.config, device="cpu", threads=1)
    ids = np.stack([reference.fetch_ids("chr17", BRCA1 + i * CONTEXT, BRCA1 + (i + 1) * CONTEXT) for i in range(3)])
    ids = ids.astype(np.int64)
    ids[1, CONTEXT // 2:] = PAD
    ids[2, 7:] = PAD
    a, b = backend.run(ids), onnx.run(ids)
    real = ids != PAD
    np.testing.assert_allclose(b.log_probs[real], a.log_probs[real], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(b.base2tok, a.base2tok)
    np.testing.assert_array_equal(b.token_sizes, a.token_sizes)
    tokens = a.token_mask
    np.testing.assert_allclose(b.token_vectors[tokens], a.token_vectors[tokens], atol=1e-4, rtol=0)


def test_onnx_runs_large_batches_in_chunks_with_the_same_result(backend, onnx_path):
    onnx = OnnxBackend(onnx_path, backend.config, device="cpu", threads=1)
    rows = ONNX_MAX_ROWS + 3
    ids = np.random.default_rng(5).integers(0, 4, (rows, CONTEXT))
    calls = []

    class CountingSession:  # records the rows of every ONNX Runtime call
        def __init__(self, session):
            self.session = session

        def run(self, names, feed):
            calls.append(len(feed["ids"]))
            return self.session.run(names, feed)

    onnx.session = CountingSession(onnx.session)
    whole = onnx.run(ids)
    assert calls == [ONNX_MAX_ROWS, 3]
    one_by_one = [onnx.run(ids[i:i + 1]) for i in range(rows)]
    for name in ("log_probs", "token_vectors", "token_sizes", "token_mask", "base2tok"):
        np.testing.assert_array_equal(getattr(whole, name), np.concatenate([getattr(o, name) for o in one_by_one]))


def test_onnx_engine_embeddings_match_torch(backend, reference, onnx_path):
    onnx = OnnxBackend(onnx_path, backend.config, device="cpu", threads=1)
    torch_items = embed(backend, reference, MIXED, per_token=True)
    onnx_items = embed(onnx, reference, MIXED, per_token=True)
    for a, b in zip(torch_items, onnx_items):
        np.testing.assert_allclose(b.embedding, a.embedding, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(b.token_starts, a.token_starts)


def test_parity_report_ok():
    assert ParityReport(1e-4, 1e-4, True, 4).ok(1e-4)
    assert not ParityReport(1.1e-4, 0.0, True, 4).ok(1e-4)
    assert not ParityReport(0.0, 1.1e-4, True, 4).ok(1e-4)
    assert not ParityReport(0.0, 0.0, False, 4).ok(1e-4)


def test_parity_failure_writes_nothing(model_dir, tmp_path, monkeypatch):
    report = ParityReport(1.0, 0.0, False, 4)
    monkeypatch.setattr(onnx_export, "parity_check", lambda *args, **kwargs: report)
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ParityError) as err:
        export_onnx(model_dir, target, parity_sequences(CONTEXT))
    assert str(err.value) == (
        f"exported graph disagrees with PyTorch (max |log p| diff {report.max_abs_log_prob:.2e}, "
        f"max |vector| diff 0.00e+00, tokens identical: {report.tokens_identical}; "
        "tolerance 0.0001); not written")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []   # no temporary file left either


def test_onnx_backend_missing_file(backend, tmp_path):
    from mergedna_cli.errors import ModelError
    path = tmp_path / "none.onnx"
    with pytest.raises(ModelError) as err:
        OnnxBackend(path, backend.config, device="cpu")
    assert str(err.value) == f"ONNX graph '{path}' does not exist"


# -- the scoring graph ("masked" part): decodes only the queried bases --------------------------

def test_logits_at_equal_full_decode_at_the_queries(four_step_model):
    from mergedna_cli.alphabet import MASK, PAD

    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 4, (4, 200), generator=gen)
    ids[2, 150:] = PAD
    query = torch.tensor([[0, 5, 199], [100, 101, 102], [0, 149, 75], [198, 1, 60]])
    ids[torch.arange(4)[:, None], query] = MASK
    with torch.inference_mode():
        full = four_step_model(ids).logits.gather(1, query[..., None].expand(-1, -1, 4))
        at = four_step_model.logits_at(ids, query)
    assert torch.allclose(at, full, atol=1e-5)


@pytest.mark.parametrize("spacing", [None, 16])
@pytest.mark.parametrize("both", [True, False])
def test_masked_graph_scores_like_the_full_graph(model_dir, backend, reference, spacing, both):
    from mergedna_cli.engine.masked import masked_log_probs

    masked = TorchBackend(model_dir, device="cpu", part="masked")
    contig = reference.contigs[0]
    positions = BRCA1 + np.array([0, 3, 40, 41, 300, 301, 302, 900])  # real sequence
    a = masked_log_probs(backend, reference, contig, positions, spacing, 4, both)
    b = masked_log_probs(masked, reference, contig, positions, spacing, 4, both)
    assert np.abs(a - b).max() < 1e-5


def test_masked_graph_exports_with_parity(model_dir, tmp_path):
    report = export_onnx(model_dir, tmp_path / "m.onnx", parity_sequences(256), part="masked")
    assert report.max_abs_log_prob < 1e-4
    onnx = OnnxBackend(tmp_path / "m.onnx", MergeDNAConfig.preset("tiny"), "cpu")
    assert onnx.part == "masked"


def test_tokens_graph_matches_the_full_graph_and_exports(model_dir, tmp_path):
    ids = parity_sequences(256)[1]
    full = TorchBackend(model_dir, device="cpu", part="full").run(ids)
    tokens = TorchBackend(model_dir, device="cpu", part="tokens").run(ids)
    assert tokens.token_vectors is None and tokens.log_probs is None
    for name in ("token_sizes", "token_mask", "base2tok"):
        assert np.array_equal(getattr(full, name), getattr(tokens, name))
    report = export_onnx(model_dir, tmp_path / "t.onnx", parity_sequences(256), part="tokens")
    assert report.tokens_identical
    assert OnnxBackend(tmp_path / "t.onnx", MergeDNAConfig.preset("tiny"), "cpu").part == "tokens"
