"""Tagging tasks that share one embedding cache: each names the cache column it learns, where its tag vocabulary
lives in the corpus stage's meta.json, how its predictions are decoded and which validation score stops training.

Because the cache stores every token's activations together with its words, POS and NER tags, a new task is a new
head on the same cache: zero re-embedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from seqeval.metrics import f1_score


@dataclass(frozen=True)
class Task:
    """What differs between tagging tasks on the same cached features."""

    name: str
    column: str  # cache column holding the gold tags
    vocabulary_key: str  # key of the tag list in the corpus stage's meta.json
    decode: str  # bio_viterbi for BIO span tasks, argmax for token-level tasks
    score_name: str  # validation score used for early stopping (higher is better)

    def score(self, gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
        """The task's validation score."""
        if self.score_name == "entity_f1":
            return float(f1_score(list(map(list, gold)), list(map(list, predicted))))
        return token_accuracy(gold, predicted)


def token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Share of real tokens whose tag is right."""
    correct = sum(g == p for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps))
    return correct / max(1, sum(len(gs) for gs in gold))


TASKS = {
    "ner": Task("ner", "tags", "tags", "bio_viterbi", "entity_f1"),
    "pos": Task("pos", "pos", "pos_tags", "argmax", "token_accuracy"),
}


def get_task(name: str) -> Task:
    """The task called ``name`` or a ValueError listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]
