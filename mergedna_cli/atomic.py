"""Outputs appear complete or not at all: written under a temporary name beside the target, then
renamed over it. One naming scheme (`.NAME.tmpPID`, hidden, per process) for every writer, so a
killed run's leftovers are recognisable (pipelines/resume.py removes them). No torch import."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def temp_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the finished temporary file over `path`, with the mode a newly created file gets
    (0666 less the umask, usually 0644). Some writers (safetensors) create their file 0600,
    which would keep colleagues on a shared cluster from loading a model."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def with_filename(exc: OSError, path: str | os.PathLike) -> OSError:
    """`exc` naming `path` (a failed write() names no file): 'No space left on device: OUT'."""
    if exc.filename is None and exc.errno is not None:
        return OSError(exc.errno, exc.strerror or str(exc), str(path))
    return exc


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], durable: bool = False) -> None:
    """write(tmp) then rename: `path` is either the old file or the complete new one. `durable`
    also fsyncs before the rename, so the file survives a machine crash, not only a killed process."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when write failed


class AtomicFile:
    """An output streamed to its temporary name through a handle with `close()`: `close()` renames
    the finished file into place, `abort()` removes it. Subclasses open the handle in `_open`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self._out = self._open(self.tmp)

    def _open(self, tmp: Path):
        raise NotImplementedError

    def close(self) -> None:
        try:
            self._out.close()
        except OSError as exc:  # the last buffered write fails here on a full disk
            self.tmp.unlink(missing_ok=True)
            raise with_filename(exc, self.path) from None
        publish(self.tmp, self.path)

    def abort(self) -> None:
        """Remove the temporary file, even when closing it fails again (a full disk)."""
        try:
            self._out.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


class AtomicTextFile(AtomicFile):
    """A text file: subclasses write lines to `self._out`."""

    def __init__(self, path: str | os.PathLike, header: str = ""):
        super().__init__(path)
        self._out.write(header)

    def _open(self, tmp: Path):
        return open(tmp, "w")
