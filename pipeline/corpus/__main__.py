"""``python -m pipeline.corpus``: stage 1 as Snakemake's ``split_corpus`` rule calls it."""
import sys

from pipeline.corpus.stage import main

sys.exit(main())
