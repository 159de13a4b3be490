"""Context calibration of SNV scores (GPN-Star's correction): LLR - E[LLR | 5-mer context, alt].

A model's raw LLR carries a context baseline: some 5-mers' mutations score low wherever they
occur. The table holds the expected LLR of every (5-mer, alt) measured on SNVs at random
background positions scored by the same model (benchmarks/calibration.py builds it); subtracting
it leaves what is specific to the site. Table: (1024, 4), row = 5-mer index
sum(base_i * 4**(4 - i)) with A C G T = 0 1 2 3 and the reference base in the middle, column =
alt base, NaN where alt = ref. Stored as JSON with the model's weights sha256 and its own sha256
over the values (little-endian float64), which `score` writes into its header. numpy only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..alphabet import N_BASES
from ..errors import InputError

K = 5
HALF = K // 2
TABLE_FILE = "calibration.json"  # beside a model's weights: `score --calibrate` uses it


def context_index(ids: np.ndarray, positions: np.ndarray, k: int = K) -> np.ndarray:
    """Index of the k-mer centred on each position of `ids` (sum base_i * 4**(k-1-i)); -1 where
    a base of it is not A/C/G/T or it runs off the sequence."""
    half = k // 2
    cols = np.asarray(positions)[:, None] + np.arange(-half, half + 1)
    inside = (cols >= 0) & (cols < len(ids))
    bases = np.where(inside, ids[np.clip(cols, 0, len(ids) - 1)], N_BASES).astype(np.int64)
    index = (bases * 4 ** np.arange(k - 1, -1, -1)).sum(1)
    return np.where((bases < N_BASES).all(1), index, -1)


def table_sha256(table: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(table, dtype="<f8").tobytes()).hexdigest()


def expected_scores(table: np.ndarray, index5: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """E[LLR | 5-mer, alt] per SNV from a (1024, 4) table; NaN where the context is not all A/C/G/T."""
    index5 = np.asarray(index5)
    out = np.full(len(index5), np.nan)
    ok = index5 >= 0
    out[ok] = table[index5[ok], np.asarray(alt)[ok]]
    return out


@dataclass(frozen=True)
class CalibrationTable:
    table: np.ndarray     # (1024, 4)
    sha256: str           # of the values
    weights_sha256: str   # the model the background SNVs were scored with
    path: str
    record: dict          # the file's JSON: how the table was built

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationTable":
        """A table file; one that cannot be read, has the wrong shape, or whose values do not match
        its recorded sha256 is refused."""
        try:
            record = json.loads(Path(path).read_text())
            table = np.array([[np.nan if v is None else v for v in row] for row in record["table"]],
                             dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read calibration table '{path}': {exc}") from None
        if table.shape != (4 ** K, 4):
            raise InputError(f"calibration table '{path}' has shape {table.shape}, expected (1024, 4)")
        sha = table_sha256(table)
        if sha != record.get("table_sha256"):
            raise InputError(f"calibration table '{path}': its values do not match its sha256")
        return cls(table, sha, str(record.get("weights_sha256", "")), str(path), record)

    def expected(self, index5: np.ndarray, alt: np.ndarray) -> np.ndarray:
        return expected_scores(self.table, index5, alt)
