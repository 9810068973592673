"""Shared helpers for every stage: logging set-up and atomic file writes.

Atomic writes matter because Snakemake (and people) trust any file that exists: a stage killed half-way must leave
either the old file or no file, never a truncated one.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """A logger writing to stderr (Snakemake's ``log:`` directive captures it) with one format for all stages."""
    root = logging.getLogger("pipeline")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(os.environ.get("NER_LOG_LEVEL", "INFO"))
    return logging.getLogger(name if name.startswith("pipeline") else f"pipeline.{name}")


@contextlib.contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    The temporary name starts with ``.tmp-`` in the same directory so the rename is atomic on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
        os.close(fd)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
