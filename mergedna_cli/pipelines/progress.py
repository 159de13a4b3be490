"""Progress for long runs: a rich bar when stderr is a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def stderr_console() -> Console:
    return Console(stderr=True)


class TrainingReporter:
    """Shows training steps and losses; logs a line every `log_every_s` seconds without a TTY."""

    def __init__(self, quiet: bool = False, log_every_s: float = 30.0):
        self.quiet = quiet
        self.console = stderr_console()
        self.bar = not quiet and sys.stderr.isatty()
        self.log_every_s, self._last_log = log_every_s, 0.0
        self._progress: Progress | None = None

    def start(self, total: int, completed: int) -> None:
        if self.bar:
            self._progress = Progress(TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                      console=self.console)
            self._task = self._progress.add_task("train", total=total, completed=completed, info="")
            self._progress.start()

    def update(self, step: int, row: dict) -> None:
        info = (f"loss {row['total']:.3f} (mtr {row['mtr']:.3f} lat {row['latent_mtr']:.3f} "
                f"amtm {row['amtm']:.3f}) acc {row['masked_acc']:.3f} {row['bases_per_s']:.0f} b/s")
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=info)
        elif not self.quiet and time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            self.console.print(f"step {step}: {info}", highlight=False)

    def validation(self, step: int, row: dict) -> None:
        if not self.quiet:
            self.console.print(f"step {step}: held-out masked acc {row['val_masked_acc']:.4f} "
                               f"CE {row['val_masked_ce']:.4f} nats", highlight=False)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class Logger:
    """Log lines and a simple item counter on stderr; silent with --quiet."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.console = stderr_console()

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)

    @staticmethod
    def warning(message: str) -> None:
        """`mergedna: warning: ...` on stderr, shown even with --quiet."""
        print(f"mergedna: warning: {message}", file=sys.stderr)

    def counter(self, label: str):
        return _Counter(self, label)


class _Counter:
    def __init__(self, logger: Logger, label: str):
        self.logger, self.label, self.n = logger, label, 0
        self.show = not logger.quiet and sys.stderr.isatty()
        self._progress = None

    def __enter__(self):
        if self.show:
            self._progress = Progress(TextColumn(self.label), TextColumn("{task.completed:,}"),
                                      console=self.logger.console, transient=True)
            self._task = self._progress.add_task(self.label, total=None)
            self._progress.start()
        return self.tick

    def tick(self, n: int = 1) -> None:
        self.n += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.n)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
