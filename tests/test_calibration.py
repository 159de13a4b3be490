"""`score --calibrate/--calibration`: SNV LLR minus its 5-mer context baseline (MDNA_LLR_CAL).

Runs on the example data shipped in docs/example (no ../shared needed) with the tiny random model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mergedna_cli.alphabet import encode
from mergedna_cli.engine.calibration import CalibrationTable, context_index, table_sha256
from mergedna_cli.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example"
REF = EXAMPLE / "brca1_chr17.fa.gz"
VCF = EXAMPLE / "clinvar_brca1.vcf.gz"


def write_table(path: Path, table: np.ndarray, weights_sha256: str = "", sha: str | None = None) -> Path:
    values = [[None if np.isnan(v) else float(v) for v in row] for row in table]
    path.write_text(json.dumps({"weights_sha256": weights_sha256, "table": values,
                                "table_sha256": sha or table_sha256(table)}))
    return path


def random_table(seed: int = 0) -> np.ndarray:
    table = np.round(np.random.default_rng(seed).normal(0, 1, (1024, 4)), 6)
    ref = (np.arange(1024) // 16) % 4  # the middle base of each 5-mer
    table[np.arange(1024), ref] = np.nan
    return table




def score_with_table(run_cli, model_dir: Path, table: np.ndarray, out: Path) -> subprocess.CompletedProcess:
    """`score` of the example ClinVar SNVs into `out` with `table` written beside it."""
    path = write_table(out.parent / "calibration.json", table)
    return run_cli("score", "--model", model_dir, "--fasta", REF, "--vcf", VCF, "-o", out,
                    "--calibration", path, "--threads", "1", "--quiet")


def test_context_index_and_table_lookup():
    ids = encode("ACGTNACGTA")
    index = context_index(ids, np.array([2, 3, 7, 0]))
    # around 2 and 3 the 5-mer holds the N; around 0 it runs off the sequence; around 7: ACGTA
    assert index[2] == int("01230", 4) and index[0] == index[1] == index[3] == -1
    table = random_table()
    calib = CalibrationTable(table, table_sha256(table), "", "t.json", {})
    got = calib.expected(index, np.array([1, 1, 0, 1]))  # alt A at 7 (its ref is G)
    assert got[2] == table[int("01230", 4), 0] and np.isnan(got[[0, 1, 3]]).all()


def test_table_file_is_checked(tmp_path):
    table = random_table()
    good = write_table(tmp_path / "good.json", table)
    assert CalibrationTable.load(good).sha256 == table_sha256(table)
    with pytest.raises(InputError, match="sha256"):
        CalibrationTable.load(write_table(tmp_path / "bad.json", table, sha="0" * 64))
    with pytest.raises(InputError, match="shape"):
        CalibrationTable.load(write_table(tmp_path / "small.json", table[:10]))
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(InputError, match="cannot read"):
        CalibrationTable.load(tmp_path / "junk.json")


def test_score_writes_llr_minus_the_context_baseline(run_cli, tiny_model_dir, tmp_path):
    from mergedna_cli.io.reference import Reference

    table = random_table(1)
    out = tmp_path / "scores.tsv"
    proc = score_with_table(run_cli, tiny_model_dir, table, out)
    assert proc.returncode == 0, proc.stderr
    assert "was built for weights" in proc.stderr  # the table names no weights: warned, still used
    lines = [line.split("\t") for line in out.read_text().splitlines()]
    header, rows = lines[0], lines[1:]
    col = {name: i for i, name in enumerate(header)}
    reference = Reference(str(REF))
    checked = 0
    for row in rows:
        if row[col["method"]] != "snv_llr" or row[col["status"]] != "ok":
            assert row[col["llr_calibrated"]] == "."
            continue
        pos = int(row[col["pos"]]) - 1
        window = reference.fetch_ids(row[col["chrom"]], pos - 2, pos + 3)
        expected = table[context_index(window, np.array([2]))[0], int(encode(row[col["alt"]])[0])]
        assert float(row[col["llr_calibrated"]]) == pytest.approx(float(row[col["llr"]]) - expected, abs=2e-4)
        checked += 1
    assert checked > 200


@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")
def test_vcf_header_names_the_table(run_cli, tiny_model_dir, tmp_path):
    table = random_table(2)
    out = tmp_path / "scores.vcf.gz"
    proc = score_with_table(run_cli, tiny_model_dir, table, out)
    assert proc.returncode == 0, proc.stderr
    header = subprocess.run(["bcftools", "view", "-h", str(out)], capture_output=True, text=True).stdout
    assert "##INFO=<ID=MDNA_LLR_CAL,Number=A,Type=Float" in header
    assert f"##mergedna_calibration=<File=calibration.json,Sha256={table_sha256(table)}," in header
    values = subprocess.run(["bcftools", "query", "-f", "%MDNA_LLR_CAL\n", str(out)],
                            capture_output=True, text=True).stdout.split()
    assert len(values) == 284 and sum(v != "." for v in values) > 200


def test_calibrate_without_a_table_is_a_usage_error(run_cli, tiny_model_dir, tmp_path):
    proc = run_cli("score", "--model", tiny_model_dir, "--fasta", REF, "--vcf", VCF,
                    "-o", tmp_path / "x.tsv", "--calibrate", "--quiet")
    assert proc.returncode == 2
    assert "ships no calibration.json" in proc.stderr and "Traceback" not in proc.stderr
