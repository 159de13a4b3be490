"""The model's alphabet and the vectorised text -> id encoding (numpy only, no torch).

Ids: A=0 C=1 G=2 T=3 N=4 PAD=5 MASK=6. Lower case (soft-masked repeats) reads as upper case and
every other IUPAC code reads as N; N and PAD never count in a loss.
"""

import numpy as np

A, C, G, T, N, PAD, MASK = range(7)
VOCAB_SIZE = 7
N_BASES = 4
BASES = "ACGT"

_ENCODE = np.full(256, N, dtype=np.uint8)
for _i, _b in enumerate(BASES):
    _ENCODE[ord(_b)] = _i
    _ENCODE[ord(_b.lower())] = _i

# Complement of each id; N, PAD and MASK are their own complement.
COMPLEMENT = np.array([T, G, C, A, N, PAD, MASK], dtype=np.uint8)


def encode(seq: str | bytes) -> np.ndarray:
    """Encode a DNA string (any case, IUPAC allowed) to a uint8 id array."""
    raw = seq.encode("ascii", "replace") if isinstance(seq, str) else seq
    return _ENCODE[np.frombuffer(raw, dtype=np.uint8)]


def encode_bytes(raw: np.ndarray) -> np.ndarray:
    """Encode an array of ASCII codes (uint8) to ids."""
    return _ENCODE[raw]


def decode(ids: np.ndarray) -> str:
    """Ids back to text (N for N, '-' for PAD, '?' for MASK)."""
    return "".join("ACGTN-?"[int(i)] for i in ids)


def reverse_complement(ids: np.ndarray) -> np.ndarray:
    """Reverse complement of id arrays along the last axis."""
    return COMPLEMENT[ids[..., ::-1]]
