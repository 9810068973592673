"""Former home of the CoNLL corpus reader, kept so old imports work: it lives in :mod:`pipeline.corpus.conll`."""
from pipeline.corpus.conll import DOCUMENT_START, MISSING_POS, conll_lines, read_conll_corpus, read_conll_splits

__all__ = ["DOCUMENT_START", "MISSING_POS", "conll_lines", "read_conll_corpus", "read_conll_splits"]
