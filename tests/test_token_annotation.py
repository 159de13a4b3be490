"""benchmarks/token_annotation.py: exon/intron labels from HGVS c. notation, low-complexity masks,
per-class token statistics (synthetic inputs; no model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mergedna_cli.alphabet import encode

_SPEC = importlib.util.spec_from_file_location(
    "token_annotation", Path(__file__).resolve().parents[1] / "benchmarks" / "token_annotation.py")
ta = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ta)


def variants(rows):
    """rows: (1-based pos, genomic ref, c. notation)."""
    parsed = [ta.HGVS.match(c).groups() for _, _, c in rows]
    return {"pos": np.array([p for p, _, _ in rows]), "ref": np.array([r for _, r, _ in rows]),
            "x": np.array([1 - int(n) if m else int(n) for m, n, *_ in parsed]),
            "offset": np.array([0 if s is None else int(d) * (1 if s == "+" else -1) for _, _, s, d, _, _ in parsed]),
            "cref": np.array([g[4] for g in parsed])}


def test_minus_strand_exons_and_whole_intron():
    # Toy minus-strand gene: exon A = c.1..10 at 200..191, exon B = c.11..20 at 150..141 (1-based).
    v = variants([(196, "T", "c.5A>G"), (188, "C", "c.10+3G>A"), (152, "A", "c.11-2T>C"),
                  (146, "G", "c.15C>T"), (202, "A", "c.-2T>C")])
    assert ta.transcript_strand(v) == -1
    exons = ta.exon_model(v, -1)
    assert [(e["start"], e["end"], e["c_first"], e["c_last"], e["first_marked"], e["last_marked"]) for e in exons] == [
        (191, 202, -1, 10, False, True), (146, 150, 11, 15, True, False)]  # c.-2 -> x = -1, no c.0
    labels, _, whole = ta.label_locus(v, -1, 100, 250)
    assert whole == 1
    exon = np.flatnonzero(labels == ta.EXON) + 100  # 0-based
    intron = np.flatnonzero(labels == ta.INTRON) + 100
    assert exon.tolist() == list(range(145, 150)) + list(range(190, 202))
    assert intron.tolist() == list(range(150, 190))  # 1-based 151..190, between the exons


def test_plus_strand_partial_intron_and_bad_strand():
    v = variants([(100, "G", "c.50G>A"), (109, "T", "c.55+4T>C")])  # c.55 (the exon's last base) at 105
    assert ta.transcript_strand(v) == 1
    labels, exons, whole = ta.label_locus(v, 1, 90, 120)
    assert whole == 0 and (exons[0]["start"], exons[0]["end"]) == (100, 105)
    assert (np.flatnonzero(labels == ta.INTRON) + 90).tolist() == [105, 106, 107, 108]  # 1-based 106..109
    with pytest.raises(SystemExit):
        ta.transcript_strand(variants([(1, "A", "c.1A>G"), (2, "A", "c.2T>G")]))


def test_low_complexity_masks():
    seq = "ACGTTGCT" + "A" * 7 + "GCTGAC" + "CA" * 6 + "GTCA" + "TTTTT" + "GACT" + "CAG" * 3 + "T"
    poly, tandem = ta.low_complexity(encode(seq))
    start_ca = 8 + 7 + 6
    assert np.flatnonzero(poly).tolist() == list(range(8, 15))  # 7 A; the run of 5 T is too short
    # CA x 6 = 12 bp qualifies; CAG x 3 = 9 bp does not
    assert np.flatnonzero(tandem).tolist() == list(range(start_ca, start_ca + 12))
    assert not (poly & tandem).any()
    assert not ta.periodic_runs(encode("NNNNNNNNNN"), 1, 6).any()  # N runs are not repeats


def test_class_stats_centre_rule_and_shift_test():
    lengths = np.array([1, 3, 2, 4])                 # tokens at 0, 1-3, 4-5, 6-9
    mask = np.zeros(10, bool)
    mask[2:5] = True                                 # centres: 0, 2, 5, 8 -> only the length-3 token
    s = ta.class_stats(lengths, mask, np.zeros(10, bool))
    assert s["tokens"] == 1 and s["mean"] == 3 and s["straddling"] == 2
    assert s["base_weighted_mean"] == pytest.approx((3 + 3 + 2) / 3)
    flat = ta.shift_test(np.full(5000, 2.0), np.arange(5000) < 100, np.arange(5000) >= 100, 50, 0)
    assert flat["observed"] == 0 and flat["p"] == 1
