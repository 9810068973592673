"""Named-entity recognition with cached ELMo-style contextual embeddings.

Stages (one module each): :mod:`pipeline.corpus` (read, validate, split, shard), :mod:`pipeline.bilm` (the offline
ELMo-architecture biLM and its TF-Hub-compatible export), :mod:`pipeline.embed` (embedder to HDF5 cache),
:mod:`pipeline.train` (residual biLSTM with scalar mix on the cache), :mod:`pipeline.evaluate` (seqeval) and
:mod:`pipeline.tagger` (tag new text). ``pipeline.load(run_dir)`` returns a ready tagger.
"""
from __future__ import annotations

import os

__version__ = "0.1.0"

# Quieter TensorFlow start-up; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load(run_dir):  # noqa: ANN001 - thin re-export, typed in pipeline.tagger
    """Load a trained tagger from a run directory (see :func:`pipeline.tagger.load`)."""
    from pipeline.tagger import load as _load

    return _load(run_dir)
