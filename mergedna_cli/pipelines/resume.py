"""Resumable runs: the finished chunks of a long run kept in a sidecar folder, `OUT.partial/`.

A run writes each finished chunk there under a temporary name, fsyncs it and renames it, so a run
killed at any moment loses at most the chunk in progress. `manifest.json` records what the chunks
were computed from (input files' path, size and mtime, the weights' sha256, the options that
change results); a later run with the same manifest skips the finished chunks, one with a
different manifest discards them (mixing results of two inputs is never right). The final
outputs are assembled from the chunks under temporary names and renamed; only then is the folder
removed. So no partial file ever exists under a final name, and a rerun after a kill does only
the work that was not finished.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..atomic import atomic_write
from ..errors import MergeDNAError

MANIFEST = "manifest.json"
LOCK = "lock"


def file_identity(path: str | os.PathLike) -> dict:
    """What identifies an input file cheaply: its absolute path, size and modification time."""
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def remove_stale_temporaries(final: str | os.PathLike) -> None:
    """Temporary files (`.NAME.tmpPID`) that a killed run of this output left beside it."""
    final = Path(final)
    for stale in final.parent.glob(f".{final.name}.tmp*"):
        stale.unlink(missing_ok=True)


class PartialDir:
    """`<final>.partial/`: manifest, lock and finished chunks. Use as a context manager; the lock
    keeps a second run on the same output from interleaving its chunks with ours."""

    def __init__(self, final: str, manifest: dict, restart: bool = False, log=lambda m: None):
        self.final = final
        self.path = Path(f"{final}.partial")
        self.manifest = {"mergedna": __version__, **manifest}
        self.restart, self.log = restart, log
        self._lock = None

    def __enter__(self) -> PartialDir:
        self.path.mkdir(exist_ok=True)
        self._lock = open(self.path / LOCK, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise MergeDNAError(f"another mergedna run is writing '{self.final}' "
                                f"(it holds {self.path / LOCK})") from None
        for stale in self.path.glob(".*.tmp*"):  # chunks a killed run left half-written
            stale.unlink()
        self._check_manifest()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if exc_type is not None and not self._holds_results():
            self.remove()  # failed before finishing any chunk: nothing to resume, leave no clutter

    def _holds_results(self) -> bool:
        return self.path.is_dir() and any(e.name not in (LOCK, MANIFEST) for e in self.path.iterdir())

    def _check_manifest(self) -> None:
        path = self.path / MANIFEST
        stored = None
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except ValueError:
                stored = {}
        if stored == self.manifest and not self.restart:
            return
        if stored is not None or self.chunks():
            if self.restart:
                self.log(f"--restart: discarding the partial results in {self.path}")
            else:
                changed = sorted(k for k in set(self.manifest) | set(stored or {})
                                 if (stored or {}).get(k) != self.manifest.get(k))
                self.log(f"discarding the partial results in {self.path}: they were made with a "
                         f"different {', '.join(changed) or 'manifest'}")
        for entry in self.path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(self.manifest, indent=1)), durable=True)

    def chunks(self, pattern: str = "chunk-*") -> list[Path]:
        """Finished chunk files, in name order (names carry zero-padded numbers)."""
        return sorted(self.path.glob(pattern))  # temporaries are hidden (.NAME.tmpPID): never matched

    def write(self, name: str, write: Callable[[Path], None]) -> None:
        atomic_write(self.path / name, write, durable=True)

    def remove(self) -> None:
        """After the final outputs are in place: the chunks are no longer needed."""
        shutil.rmtree(self.path, ignore_errors=True)
