"""The train/val/test split (the original notebook's test split) and the shards each split is cut into."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.corpus.base import CorpusError, Sentence
from pipeline.corpus.conll import write_conll
from pipeline.logs import get_logger

log = get_logger(__name__)


def notebook_order(sentences: Sequence[Sentence]) -> list[Sentence]:
    """Sentences in the order of pandas ``groupby("Sentence #")``: ids sorted as strings ("1" < "10" < "100")."""
    return sorted(sentences, key=lambda s: s.sentence_id)


def split_corpus(
    sentences: Sequence[Sentence], test_size: float, split_seed: int, val_size: float, val_seed: int
) -> dict[str, list[Sentence]]:
    """Train/val/test as the original notebook (test) plus a seeded validation split carved from the rest."""
    # Imported here: the embed workers import this package for read_conll only, and every one of them pays the import.
    from sklearn.model_selection import train_test_split

    ordered = notebook_order(sentences)
    if len(ordered) < 3:
        raise CorpusError(f"need at least 3 sentences to make train/val/test splits, got {len(ordered)}")
    rest, test = train_test_split(ordered, test_size=test_size, random_state=split_seed)
    train, val = train_test_split(rest, test_size=val_size, random_state=val_seed)
    return {"train": train, "val": val, "test": test}


def shard_name(split: str, index: int) -> str:
    """File stem of one shard: ``train-0003``."""
    return f"{split}-{index:04d}"


def cut_shards(sentences: Sequence[Sentence], shard_size: int) -> list[list[Sentence]]:
    """Consecutive groups of at most ``shard_size`` sentences."""
    return [list(sentences[i : i + shard_size]) for i in range(0, len(sentences), shard_size)]


def write_splits(splits: dict[str, list[Sentence]], out_dir: Path, shard_size: int) -> dict[str, list[str]]:
    """Write ``<split>.conll`` and its shards ``shards/<split>-NNNN.conll``; return the shard names of each split."""
    shards: dict[str, list[str]] = {}
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    for split, members in splits.items():
        write_conll(out_dir / f"{split}.conll", members)
        shards[split] = []
        for index, group in enumerate(cut_shards(members, shard_size)):
            name = shard_name(split, index)
            write_conll(out_dir / "shards" / f"{name}.conll", group)
            shards[split].append(name)
        log.info("%s: %d sentences in %d shards", split, len(members), len(shards[split]))
    return shards
