"""`mergedna embed`: regions -> pooled (and optionally per-token) embeddings -> table."""

from __future__ import annotations

from collections.abc import Iterable

from ..engine.engine import Engine
from ..io.embedding_writer import EmbeddingWriter
from ..io.reference import Reference
from ..io.regions import Region


def run_embed(backend, reference: Reference, regions: Iterable[Region], out: str, per_token: bool,
              batch_size: int, strands: str, on_region=lambda: None) -> int:
    engine = Engine(backend, reference, batch_size=batch_size, strands=strands)
    writer = EmbeddingWriter(out, backend.config.d_model, per_token)
    n = 0
    try:
        for item in engine.embed(regions, per_token=per_token):
            writer.add(item)
            n += 1
            on_region()
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return n
