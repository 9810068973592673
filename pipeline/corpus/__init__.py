"""Stage 1: read the annotated corpus, validate it, split it as the original notebook did, and cut shards.

One module a concern, none importing in a circle (each imports only those listed before it):

* :mod:`~pipeline.corpus.base`: :class:`Sentence`, :class:`CorpusReport`, :class:`CorpusError` and the
  :class:`CorpusReader` interface every format implements (``read() -> ReadCorpus``);
* :mod:`~pipeline.corpus.conll`: the CoNLL-style files the stage writes and every later stage reads
  (:func:`write_conll`, :func:`read_conll`), and :class:`ConllReader` for users' own CoNLL train/val/test files;
* :mod:`~pipeline.corpus.kaggle_csv`: :class:`KaggleCsvReader` for the Kaggle ``ner_dataset.csv`` (plain or zipped),
  validated row by row (:func:`read_corpus`, also behind ``ner check-corpus``);
* :mod:`~pipeline.corpus.split`: the train/val/test split (the notebook's test split:
  ``train_test_split(test_size=0.1, random_state=2018)`` over the sentences in ``groupby`` order) and the shards;
* :mod:`~pipeline.corpus.stage`: :func:`prepare` and the entry point ``python -m pipeline.corpus``.

The names below are the package's public API; import them from ``pipeline.corpus``.
"""
from pipeline.corpus.base import (
    BIO_TAG_PATTERN, OUTSIDE_TAG, SPLITS, CorpusError, CorpusReader, CorpusReport, ReadCorpus, Sentence, file_sha256,
    tag_vocabulary,
)
from pipeline.corpus.conll import (
    SENTENCE_ID_PREFIX, ConllReader, read_conll, read_conll_corpus, read_conll_splits, write_conll,
)
from pipeline.corpus.kaggle_csv import CORPUS_FILENAMES, CORPUS_SEARCH_DIRS, KaggleCsvReader, find_corpus, read_corpus
from pipeline.corpus.split import cut_shards, notebook_order, shard_name, split_corpus
from pipeline.corpus.stage import main, prepare, reader_for

__all__ = [
    "BIO_TAG_PATTERN", "CORPUS_FILENAMES", "CORPUS_SEARCH_DIRS", "OUTSIDE_TAG", "SENTENCE_ID_PREFIX", "SPLITS",
    "ConllReader", "CorpusError", "CorpusReader", "CorpusReport", "KaggleCsvReader", "ReadCorpus", "Sentence",
    "cut_shards", "file_sha256", "find_corpus", "main", "notebook_order", "prepare", "read_conll", "read_conll_corpus",
    "read_conll_splits", "read_corpus", "reader_for", "shard_name", "split_corpus", "tag_vocabulary", "write_conll",
]
