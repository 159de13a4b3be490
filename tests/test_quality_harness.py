"""The model-quality harness: benchmarks/zero_shot.py metrics, benchmarks/calibration.py and
benchmarks/model_ladder.py. Metrics on hand-made inputs; the end-to-end run on a tiny model and
the first variants of the shared BRCA1 sets is an extended test (it reads ../shared/data)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import calibration  # noqa: E402
import model_ladder  # noqa: E402
import zero_shot  # noqa: E402
from zero_shot import auroc, auroc_ci, class_aurocs, contrast_auroc, paired_difference_ci, set_metrics  # noqa: E402

# ---------------------------------------------------------------------------------------------
# metrics on hand-made inputs

def test_auroc_of_perfect_reversed_and_tied_scorers():
    labels = np.array([0, 0, 0, 1, 1])
    assert auroc(np.array([1.0, 2, 3, 4, 5]), labels) == 1.0
    assert auroc(np.array([5.0, 4, 3, 2, 1]), labels) == 0.0
    assert auroc(np.zeros(5), labels) == 0.5
    assert np.isnan(auroc(np.arange(3.0), np.ones(3)))


def test_auroc_ci_contains_the_point_estimate_and_drops_nan():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    pred = labels + rng.normal(scale=1.0, size=300)
    pred[:5] = np.nan
    r = auroc_ci(pred, labels, n_boot=200, seed=1)
    assert r["n"] == 295 and r["n_positive"] == int(labels[5:].sum())
    assert 0.6 < r["auroc"] < 0.9
    assert r["ci95"][0] <= r["auroc"] <= r["ci95"][1]
    assert auroc_ci(pred, labels, n_boot=200, seed=1) == r  # seeded
    assert auroc_ci(pred, np.zeros(300), n_boot=50)["ci95"] is None  # no positives: no interval


def test_class_aurocs_group_by_class():
    classes = np.array(["A"] * 4 + ["B"] * 4 + ["C"] * 2)
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([1, 2, 3, 4, 4, 3, 2, 1, 5, 6], dtype=float)
    r = class_aurocs(pred, labels, classes, n_boot=0)
    assert list(r) == ["A", "B", "C"]
    assert r["A"]["auroc"] == 1.0 and r["B"]["auroc"] == 0.0
    assert np.isnan(r["C"]["auroc"]) and r["C"]["n"] == 2


def test_contrast_ranks_first_class_above_second_and_ignores_others():
    classes = np.array(["Nonsense"] * 3 + ["Synonymous"] * 3 + ["Missense"] * 3)
    scores = np.array([-5.0, -4, -3, 0, 1, 2, -100, 100, 0])  # nonsense lower = more damaging
    r = contrast_auroc(-scores, classes, "Nonsense", "Synonymous", n_boot=100)
    assert r["auroc"] == 1.0 and r["n"] == 6 and r["n_positive"] == 3
    assert r["first"] == "Nonsense" and r["second"] == "Synonymous"
    assert contrast_auroc(-scores, classes, "Synonymous", "Nonsense", n_boot=0)["auroc"] == 0.0


def test_set_metrics_uses_minus_score_and_reports_contrasts():
    classes = np.array(["Nonsense", "Nonsense", "Synonymous", "Synonymous",
                        "Canonical splice", "Intronic"])
    labels = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([-3.0, -2, 1, 2, -1, 0.5])
    m = set_metrics(scores, labels, classes, n_boot=20)
    assert m["auroc"]["auroc"] == 1.0
    assert m["contrasts"]["nonsense_vs_synonymous"]["auroc"] == 1.0
    assert m["contrasts"]["canonical_splice_vs_intronic"]["auroc"] == 1.0
    assert set(m["by_consequence"]) == set(classes)
    assert "contrasts" not in set_metrics(scores, labels, None, n_boot=0)


def test_paired_difference_of_a_score_with_itself_is_zero():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 100)
    pred = rng.normal(size=100)
    d = paired_difference_ci(pred, pred, labels, n_boot=50)
    assert d["difference"] == 0.0 and d["ci95"] == [0.0, 0.0]
    better = paired_difference_ci(labels.astype(float), pred, labels, n_boot=50)
    assert better["difference"] > 0 and better["ci95"][0] > 0


def test_consequences_spelled_as_in_the_tsv():
    infos = [{"CONSEQUENCE": "Canonical_splice"}, {"CONSEQUENCE": "5'_UTR"}]
    assert zero_shot.consequences(infos).tolist() == ["Canonical splice", "5' UTR"]
    assert zero_shot.consequences([{"CLNSIG": "Benign"}]) is None


# ---------------------------------------------------------------------------------------------
# calibration

def test_context_index_and_reverse_complement():
    ids = np.array([0, 1, 2, 3, 0, 4, 1])  # ACGTANC
    assert calibration.context_index(ids, np.array([0, 2, 3, 4])).tolist() == [-1, 0 * 256 + 1 * 64 + 2 * 16 + 3 * 4, -1, -1]
    rc = calibration.reverse_complement_index(5)
    assert (rc[rc] == np.arange(1024)).all()
    assert rc[0] == 1023  # AAAAA <-> TTTTT
    assert calibration.reverse_complement_index(1).tolist() == [3, 2, 1, 0]


def synthetic_background(n: int, seed: int = 0):
    """Random sequence and SNV scores that depend only on (ref, alt), strand-symmetric."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, n)
    pos = np.arange(2, n - 2)
    means = np.array([[0, -1, -2, -3], [-4, 0, -5, -2], [-2, -5, 0, -4], [-3, -2, -1, 0]], float)
    deltas = means[ids[pos]] + rng.normal(scale=0.01, size=(len(pos), 4))
    deltas[np.arange(len(pos)), ids[pos]] = np.nan
    return ids, pos, deltas, means


def test_fit_table_recovers_ref_alt_means_and_marks_ref_column():
    ids, pos, deltas, means = synthetic_background(20000)
    index5 = calibration.context_index(ids, pos)
    weight, cv = calibration.choose_prior_weight(index5, deltas, seed=0)
    assert weight in calibration.PRIOR_WEIGHTS and set(cv) == set(calibration.PRIOR_WEIGHTS)
    table = calibration.fit_table(index5, deltas, weight)
    ref = (np.arange(1024) // 16) % 4
    assert np.isnan(table[np.arange(1024), ref]).all()
    expected = means[ref]
    off = np.arange(4)[None, :] != ref[:, None]
    assert np.allclose(table[off], expected[off], atol=0.02)
    corrected = deltas - table[index5]
    assert np.nanmean(np.abs(corrected)) < 0.02


def test_table_round_trip_and_tampering(tmp_path):
    ids, pos, deltas, _ = synthetic_background(3000)
    table = calibration.fit_table(calibration.context_index(ids, pos), deltas, 3.0)
    path = tmp_path / "calibration.json"
    calibration.save_table(path, table, {"weights_sha256": "x"})
    loaded, record = calibration.load_table(path)
    assert np.allclose(loaded, np.round(table, 6), equal_nan=True) and record["weights_sha256"] == "x"
    record["table"][5][1] = 99.0
    path.write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="sha256"):
        calibration.load_table(path)
    assert np.isnan(calibration.expected_scores(loaded, np.array([-1, 0]), np.array([1, 1]))[0])


def test_compare_set_removes_a_context_bias():
    """Scores = a context offset that favours the positives + noise: raw AUROC is below chance,
    the corrected one is not, and the paired difference says so."""
    rng = np.random.default_rng(4)
    labels = np.repeat([1, 0], 200)
    expected = np.where(labels == 1, 2.0, -2.0) + rng.normal(scale=0.1, size=400)
    scores = expected + rng.normal(scale=0.5, size=400) - 0.3 * labels
    entry = {"scores": {"MergeDNA": scores.tolist()}, "labels": labels.tolist(),
             "consequence": ["Nonsense"] * 200 + ["Synonymous"] * 200}
    r = calibration.compare_set(entry, expected, n_boot=100, seed=0)
    assert r["raw"]["auroc"]["auroc"] < 0.1 and r["corrected"]["auroc"]["auroc"] > 0.6
    assert r["difference"]["auroc"]["ci95"][0] > 0
    assert r["difference"]["nonsense_vs_synonymous"]["difference"] == pytest.approx(
        r["difference"]["auroc"]["difference"])


def test_background_scores_equal_mergedna_score(tiny_model_dir, tmp_path):
    """The calibration's background SNV scores are `mergedna score`'s scores of the same SNVs."""
    from mergedna_cli.alphabet import decode
    from mergedna_cli.model.files import weights_sha256
    from mergedna_cli.engine.load import make_backend
    from mergedna_cli.pipelines.score import ScoreOptions, run_score

    seq = decode(np.random.default_rng(3).integers(0, 4, 2000))
    fasta = tmp_path / "bg.fa"
    fasta.write_text(">bg\n" + seq + "\n")
    reference, contig, ids = calibration.background_reference(str(fasta), tmp_path)
    backend = make_backend(str(tiny_model_dir), "torch", "cpu", 1, part="masked")
    pos = calibration.sample_positions(ids, 6, 256, seed=0)
    deltas = calibration.background_deltas(backend, reference, contig, ids, pos, 8)
    alt = (ids[pos] + 1) % 4
    vcf = tmp_path / "snvs.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
        f"{contig}\t{p + 1}\t.\t{seq[p]}\t{'ACGT'[a]}\t.\t.\t.\n" for p, a in zip(pos, alt)))
    out = tmp_path / "scores.tsv"
    run_score(backend, reference, str(vcf), str(out), ScoreOptions(batch_size=8), "tiny",
              weights_sha256(tiny_model_dir), table_format="tsv", argv=[])
    import csv
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert np.allclose([float(r["score"]) for r in rows], deltas[np.arange(len(pos)), alt], atol=1e-4)


def test_build_table_on_a_tiny_model(tiny_model_dir, tmp_path):
    fasta = tmp_path / "bg.fa"
    fasta.write_text(">bg\n" + "ACGTTGCAAGCT" * 100 + "\n")
    table, record = calibration.build_table(tiny_model_dir, str(fasta), n_positions=40, threads=1,
                                            device="cpu", log=lambda m: None)
    assert table.shape == (1024, 4) and record["positions"] == 40 and record["snvs"] == 120
    assert len(record["weights_sha256"]) == 64


# ---------------------------------------------------------------------------------------------
# the ladder

def fake_run(name: str, bases: int, sge: float, model_dir: Path) -> dict:
    result = {"auroc": sge, "ci95": [sge - 0.05, sge + 0.05], "n": 10, "n_positive": 3}
    metrics = {"auroc": result, "contrasts": {k: {**result, "first": a, "second": b}
                                              for k, a, b in zero_shot.CONTRASTS}}
    return {"harness_version": 1, "limit": None, "quick": False, "bootstrap": 100,
            "model_info": {"name": name, "dir": str(model_dir), "parameters": 1234567,
                           "bases_seen": bases, "hardware": "test CPU", "weights_sha256": "ab" * 32},
            "heldout": {"fasta": "chr20.fa.gz", "windows": 3, "context": 512, "spacing": 32,
                        "phases": 2, "margin": 16,
                        "forward": {"accuracy": 0.4, "cross_entropy": 1.25, "bases": 90},
                        "both": {"accuracy": 0.41, "cross_entropy": 1.24, "bases": 90}},
            "sets": {"sge": {"n": 10, "n_positive": 3, "positive": "LOF", "metrics": {"MergeDNA": metrics}},
                     "clinvar": {"n": 10, "n_positive": 3, "positive": "pathogenic",
                                 "metrics": {"MergeDNA": {"auroc": result}}}}}


def test_ladder_writes_table_and_png_from_two_harness_jsons(tmp_path):
    model_dir = tmp_path / "m1"
    model_dir.mkdir()
    (model_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "bases_seen": 1000, "val_masked_ce": 1.4}, {"step": 1, "bases_seen": 1000, "total": 3},
        {"step": 2, "bases_seen": 2000, "val_masked_ce": 1.3}]) + "\n")
    paths = []
    for name, bases, sge in [("big", 5_000_000, 0.7), ("m1", 2000, 0.45)]:
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(fake_run(name, bases, sge, model_dir if name == "m1" else tmp_path)))
    md, png = tmp_path / "ladder.md", tmp_path / "ladder.png"
    model_ladder.main([str(p) for p in paths] + ["--md", str(md), "--png", str(png)])
    text = md.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| m1", "| big"))]
    assert [r.split(" | ")[0] for r in rows] == ["| m1", "| big"]  # sorted by bases seen
    assert "0.450 [0.400, 0.500]" in rows[0] and "1.2500 / 1.2400" in rows[0] and "1.23 M" in rows[0]
    assert "![quality against bases seen](ladder.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert model_ladder.validation_curve(json.loads(paths[1].read_text())) == ([1000, 2000], [1.4, 1.3])


def test_ladder_refuses_what_is_not_a_model_or_a_run(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="error: .* is not a zero_shot.py --json run"):
        model_ladder.main([str(bad), "--md", str(tmp_path / "a.md"), "--png", str(tmp_path / "a.png")])
    with pytest.raises(SystemExit, match="neither a model directory nor a harness JSON"):
        model_ladder.main([str(tmp_path / "missing"), "--md", str(tmp_path / "a.md")])


# ---------------------------------------------------------------------------------------------
# end to end on a tiny model

@pytest.mark.extended  # the harness's sets and held-out FASTA are the shared benchmark data
def test_harness_quick_on_a_tiny_model(shared_data_dir, tiny_model_dir, tmp_path):
    from mergedna_cli.model import load_model
    from mergedna_cli.model.files import weights_sha256

    out = tmp_path / "run.json"
    zero_shot.main(["--model", str(tiny_model_dir), "--quick", "--limit", "40", "--heldout-windows", "2",
                    "--bootstrap", "20", "--threads", "1", "--device", "cpu", "--json", str(out)])
    run = json.loads(out.read_text())
    info = run["model_info"]
    assert info["parameters"] == sum(p.numel() for p in load_model(tiny_model_dir).parameters())
    assert info["weights_sha256"] == weights_sha256(tiny_model_dir) and info["bases_seen"] is None
    assert run["heldout"]["both"]["bases"] > 0 and 0 < run["heldout"]["both"]["cross_entropy"] < 5
    sge = run["sets"]["sge"]
    assert sge["n"] == 40 and len(sge["scores"]["MergeDNA"]) == 40 and len(sge["consequence"]) == 40
    m = sge["metrics"]["MergeDNA"]
    assert 0 <= m["auroc"]["auroc"] <= 1 and set(m["contrasts"]) == {k for k, _, _ in zero_shot.CONTRASTS}
    assert sum(c["n"] for c in m["by_consequence"].values()) == 40
    assert "contrasts" not in run["sets"]["clinvar"]["metrics"]["MergeDNA"]
    # the stored scores are the harness's metric inputs
    scores = np.array(sge["scores"]["MergeDNA"], float)
    assert m["auroc"]["auroc"] == pytest.approx(auroc(-scores, np.array(sge["labels"])))


def test_harness_refuses_a_missing_model_directory(tmp_path):
    with pytest.raises(SystemExit):
        zero_shot.main(["--model", str(tmp_path / "nope"), "--quick"])
