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


class _Named:
    """A handle whose failed writes name the output (a full disk: 'No space left on device: OUT');
    everything else passes through."""

    def __init__(self, handle, path: Path):
        self._handle, self._path = handle, path

    def _call(self, method: str, *args):
        try:
            return getattr(self._handle, method)(*args)
        except OSError as exc:
            raise with_filename(exc, self._path) from None

    def write(self, data):
        return self._call("write", data)

    def writelines(self, lines):
        return self._call("writelines", lines)

    def close(self):
        return self._call("close")

    def __getattr__(self, name):
        return getattr(self._handle, name)


class AtomicFile:
    """An output streamed to its temporary name through a handle with `close()`: `close()` renames
    the finished file into place, `abort()` removes it. Subclasses open the handle in `_open`.

    As a context manager it closes on success and aborts on any exception (Ctrl-C included):
    `with Writer(path) as out: ...` leaves either the complete file or nothing."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self._out = _Named(self._open(self.tmp), self.path)

    def _open(self, tmp: Path):
        raise NotImplementedError

    def close(self) -> None:
        try:
            self._out.close()  # the last buffered write fails here on a full disk
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        publish(self.tmp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Remove the temporary file, even when closing it fails again (a full disk; pyBigWig
        raises RuntimeError)."""
        try:
            self._out.close()
        except Exception:  # noqa: BLE001 - the error being handled is the one that matters
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
