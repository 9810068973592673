"""Shared helpers for every stage: logging set-up, atomic file writes, and the machine a record was made on.

Atomic writes matter because Snakemake (and people) trust any file that exists: a stage killed half-way must leave
either the old file or no file, never a truncated one.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

DEFAULT_FILE_MODE = 0o666
ERROR_STATUS = 2  # what a stage's entry point exits with on bad input it can explain
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def exit_status(work: Callable[[], object], *expected: type[BaseException]) -> int:
    """0 once ``work()`` is done; an ``expected`` error instead prints one ``error: ...`` line on stderr and gives
    ERROR_STATUS, so that a stage's log ends with the cause in words, not with a traceback."""
    try:
        work()
    except expected as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ERROR_STATUS
    return 0


def get_logger(name: str) -> logging.Logger:
    """A logger writing to stderr (Snakemake's ``log:`` directive captures it) with one format for all stages."""
    root = logging.getLogger("pipeline")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(os.environ.get("NER_LOG_LEVEL", "INFO"))
    return logging.getLogger(name if name.startswith("pipeline") else f"pipeline.{name}")


def current_umask() -> int:
    """The process umask (reading it requires setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries a killed writer of ``path`` left behind (SIGKILL skips every cleanup handler).

    Safe because Snakemake runs one job per output at a time; the temporaries are never read by anything.
    """
    for stale in path.parent.glob(f".tmp-{glob.escape(path.name)}-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    The temporary name starts with ``.tmp-`` in the same directory so the rename is atomic on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
        os.close(fd)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        if not directory:
            os.chmod(tmp, DEFAULT_FILE_MODE & ~current_umask())  # mkstemp makes 0600; shared caches need group read
        os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else what :mod:`platform` knows: every timing the project
    records (benchmarks, a released model's card) names the CPU it was measured on."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
