"""Progress of long loops (biLM pretraining, embedding, tagger training) with a rate and the time left.

On a terminal it is a tqdm bar. In a log file (every Snakemake stage writes its stderr to ``logs/``) a bar would
write a line per update, so there it is a log line now and then instead: when another ``every_fraction`` of the work
is done (10% by default), and at least every ``every_seconds`` (60 s) when progress is slow, but never more often than
``min_seconds`` (5 s) apart; plus one line at the end. An epoch therefore adds at most about a dozen lines, however
many steps it has:

    2026-11-29 04:10:02 INFO pipeline.progress: pretrain epoch 1/2: 304/607 steps (50%), 1.71 steps/s, 2:58 elapsed, 2:57 left

``KerasProgress`` is the same for ``model.fit(..., callbacks=[KerasProgress("train")], verbose=0)``: one bar or set of
lines per epoch, and a closing line per epoch with its time and the epoch's logs (loss, metrics).
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO

import keras

from pipeline.logs import get_logger

log = get_logger(__name__)

EVERY_FRACTION = 0.1
EVERY_SECONDS = 60.0
MIN_SECONDS = 5.0


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` (hours only when needed); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(rate: float, unit: str) -> str:
    """``12.3 steps/s``, or ``4.2 s/step`` when slower than one per second (easier to read than 0.24 steps/s)."""
    if rate <= 0 or not math.isfinite(rate):
        return f"? {unit}s/s"
    if rate < 1:
        return f"{1 / rate:.1f} s/{unit}"
    decimals = 2 if rate < 10 else 1 if rate < 100 else 0
    return f"{rate:.{decimals}f} {unit}s/s"


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (a bar) rather than a file or pipe (log lines)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class Progress:
    """Count work towards ``total`` (None: unknown) and show it: a tqdm bar on a terminal, else periodic log lines.

    ``clock`` (seconds, monotonic) and ``emit`` (receives each line) can be replaced, which is how the tests drive it.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "step", *, stream: TextIO | None = None,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 emit: Callable[[str], None] | None = None, every_fraction: float = EVERY_FRACTION,
                 every_seconds: float = EVERY_SECONDS, min_seconds: float = MIN_SECONDS):
        self.total = total if total is None or total > 0 else None
        self.desc = desc
        self.unit = unit
        self.clock = clock
        self.emit = emit or log.info
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.min_seconds = min_seconds
        self.count = 0
        self.postfix: dict[str, Any] = {}
        self.started = clock()
        self.last_line = self.started
        self.last_fraction = 0.0
        self.lines = 0
        self.closed = False
        stream = sys.stderr if stream is None else stream
        self.bar = None
        if is_terminal(stream) if terminal is None else terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, leave=True,
                            disable=False)  # explicit: TQDM_* environment defaults must not hide an asked-for bar

    # -- counting -------------------------------------------------------------------------------------------------
    def update(self, n: int = 1, **postfix: Any) -> None:
        """``n`` more units done; ``postfix`` (e.g. ``loss=0.3``) is shown with the progress."""
        self.count += n
        if postfix:
            self.postfix.update(postfix)
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(self._postfix_strings(), refresh=False)
            self.bar.update(n)
            return
        now = self.clock()
        since = now - self.last_line
        due = since >= self.every_seconds
        if self.total:
            due = due or self.count / self.total >= self.last_fraction + self.every_fraction
        if due and since >= self.min_seconds and (not self.total or self.count < self.total):
            self._line(now)

    def close(self) -> None:
        """The final line (or the bar's last refresh); safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.count:
            self._line(self.clock(), final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- figures ----------------------------------------------------------------------------------------------------
    def elapsed(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - self.started

    def rate(self, now: float | None = None) -> float:
        """Units per second over the whole run so far (0 until time has passed)."""
        elapsed = self.elapsed(now)
        return self.count / elapsed if elapsed > 0 else 0.0

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left at the current rate; None when the total or the rate is unknown."""
        rate = self.rate(now)
        if not self.total or rate <= 0:
            return None
        return max(self.total - self.count, 0) / rate

    def describe(self, now: float | None = None, final: bool = False) -> str:
        """One line: count (and percentage), rate, elapsed, time left, postfix."""
        now = self.clock() if now is None else now
        if self.total:
            done = f"{self.count}/{self.total} {self.unit}s ({100 * self.count / self.total:.0f}%)"
        else:
            done = f"{self.count} {self.unit}s"
        parts = [done, format_rate(self.rate(now), self.unit), f"{format_duration(self.elapsed(now))} elapsed"]
        if final:
            parts[-1] = f"done in {format_duration(self.elapsed(now))}"
        elif self.total:
            parts.append(f"{format_duration(self.remaining(now))} left")
        parts += self._postfix_strings().values()
        return f"{self.desc}: " + ", ".join(parts)

    def _postfix_strings(self) -> dict[str, str]:
        return {k: f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.postfix.items()}

    def _line(self, now: float, final: bool = False) -> None:
        self.emit(self.describe(now, final))
        self.lines += 1
        self.last_line = now
        if self.total:
            reached = self.count / self.total
            self.last_fraction = math.floor(reached / self.every_fraction + 1e-9) * self.every_fraction


def progress(iterable: Iterable, desc: str, total: int | None = None, unit: str = "step", **options) -> Iterator:
    """Iterate ``iterable`` while showing its progress (``total`` defaults to ``len(iterable)`` when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, desc, unit, **options) as shown:
        for item in iterable:
            yield item
            shown.update()


class KerasProgress(keras.callbacks.Callback):
    """Progress of ``model.fit`` with ``verbose=0``: each epoch's steps with rate and time left (a bar on a terminal,
    periodic lines in a log), then one line per epoch with its duration and logs (loss, metrics, and whatever an
    earlier callback in the list added, e.g. the validation F1)."""

    def __init__(self, desc: str = "train", unit: str = "step", **options):
        super().__init__()
        self.desc = desc
        self.unit = unit
        self.options = options
        self.epoch_progress: Progress | None = None

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs")
        label = f"{self.desc} epoch {epoch + 1}/{epochs}" if epochs else f"{self.desc} epoch {epoch + 1}"
        self.epoch_progress = Progress(self.params.get("steps"), label, self.unit, **self.options)

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch_progress is None:
            return
        loss = (logs or {}).get("loss")
        if loss is not None:
            self.epoch_progress.update(1, loss=float(loss))
        else:
            self.epoch_progress.update(1)

    def on_epoch_end(self, epoch, logs=None):
        shown, self.epoch_progress = self.epoch_progress, None
        if shown is None:
            return
        if shown.bar is not None:
            shown.close()
        else:
            shown.closed = True  # the epoch line below replaces the final progress line
        figures = {k: round(float(v), 4) for k, v in (logs or {}).items() if isinstance(v, (int, float))
                   or hasattr(v, "__float__")}
        shown.emit(f"{shown.desc}: {shown.count} {self.unit}s in {format_duration(shown.elapsed())} "
                   f"({format_rate(shown.rate(), self.unit)}), {figures}")

    def on_train_end(self, logs=None):
        if self.epoch_progress is not None:  # fit stopped inside an epoch
            self.epoch_progress.close()
            self.epoch_progress = None
