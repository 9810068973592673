"""The CRF output layer against brute force: every tag sequence of short sentences enumerated in numpy."""
from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from pipeline.crf import CRF, FORBIDDEN_SCORE, PADDING_LABEL, CRFLoss, bio_transition_masks
from pipeline.decode import is_valid_bio

TAGS = ("O", "B-per", "I-per", "B-geo", "I-geo")


@pytest.fixture(scope="module")
def crf() -> CRF:
    layer = CRF(*bio_transition_masks(TAGS))
    layer.build((None, None, len(TAGS)))
    rng = np.random.default_rng(0)
    layer.transitions.assign(rng.normal(size=(len(TAGS), len(TAGS))).astype("float32"))
    layer.start.assign(rng.normal(size=len(TAGS)).astype("float32"))
    return layer


def path_scores(crf: CRF, emissions: np.ndarray) -> dict[tuple[int, ...], float]:
    """Score of every tag sequence of one sentence [length, tags], by the CRF's definition, in numpy."""
    start = np.asarray(crf.start_scores())
    transitions = np.asarray(crf.transition_scores())
    scores = {}
    for path in itertools.product(range(len(TAGS)), repeat=len(emissions)):
        score = start[path[0]] + sum(emissions[t, y] for t, y in enumerate(path))
        score += sum(transitions[a, b] for a, b in zip(path, path[1:]))
        scores[path] = score
    return scores


def log_sum_exp(values) -> float:
    values = np.asarray(list(values), dtype=np.float64)
    return float(values.max() + np.log(np.exp(values - values.max()).sum()))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    lengths = np.array([4, 1, 3], dtype=np.int32)
    emissions = rng.normal(size=(3, 4, len(TAGS))).astype("float32")
    return emissions, lengths


def test_log_partition_and_gold_score_match_enumeration(crf, batch):
    emissions, lengths = batch
    mask = np.arange(4)[None, :] < lengths[:, None]
    gold = np.array([[1, 2, 0, 3], [3, 0, 0, 0], [0, 1, 2, 0]], dtype=np.int32)
    log_z = np.asarray(crf.log_partition(emissions, mask))
    gold_scores = np.asarray(crf.gold_score(emissions, gold, mask))
    for row, length in enumerate(lengths):
        scores = path_scores(crf, emissions[row, :length])
        assert log_z[row] == pytest.approx(log_sum_exp(scores.values()), abs=1e-4)
        assert gold_scores[row] == pytest.approx(scores[tuple(gold[row, :length])], abs=1e-4)


def test_marginals_match_enumeration_and_forbid_invalid_bio(crf, batch):
    emissions, lengths = batch
    marginals = np.asarray(crf(emissions, lengths, training=False))
    for row, length in enumerate(lengths):
        scores = path_scores(crf, emissions[row, :length])
        log_z = log_sum_exp(scores.values())
        expected = np.zeros((length, len(TAGS)))
        for path, score in scores.items():
            for t, y in enumerate(path):
                expected[t, y] += np.exp(score - log_z)
        np.testing.assert_allclose(marginals[row, :length], expected, atol=1e-5)
    assert marginals[:, 0, TAGS.index("I-per")].max() < 1e-6  # no sentence starts inside an entity
    assert np.asarray(crf(emissions, lengths, training=True)) == pytest.approx(emissions)


def test_bio_penalties_forbid_exactly_the_invalid_steps():
    start, transition = bio_transition_masks(TAGS)
    for (i, a), (j, b) in itertools.product(enumerate(TAGS), repeat=2):
        lead_in = ["B-" + a[2:]] if a.startswith("I-") else []  # so that `a` itself is a valid place to be
        assert (transition[i][j] == FORBIDDEN_SCORE) == (not is_valid_bio(lead_in + [a, b])), (a, b)
    assert [s == FORBIDDEN_SCORE for s in start] == [not is_valid_bio([t]) for t in TAGS]


def test_the_loss_is_the_sequence_nll_spread_over_real_tokens(crf, batch):
    emissions, lengths = batch
    gold = np.array([[1, 2, 0, 3], [3, 0, 0, 0], [0, 1, 2, 0]], dtype=np.int32)
    mask = np.arange(4)[None, :] < lengths[:, None]
    targets = np.where(mask, gold, PADDING_LABEL)
    per_token = np.asarray(CRFLoss(crf).call(targets, emissions))
    nll = np.asarray(crf.negative_log_likelihood(emissions, gold, mask))
    np.testing.assert_allclose(per_token.sum(axis=1), nll, rtol=1e-5)
    assert (per_token[~mask] == 0).all() and (nll > 0).all()


def test_a_crf_tagger_learns_transitions_and_survives_saving(tmp_path):
    """Tags that only the previous tag predicts (emissions carry nothing): a CRF learns them, a save/load keeps it."""
    from pipeline.model import build_tagger

    keras.utils.set_random_seed(0)  # the same start whatever the worker ran before (it failed once in a full suite)
    rng = np.random.default_rng(2)
    tags = ["O", "B-per", "I-per"]
    n, t = 64, 6
    gold = np.tile(np.array([1, 2, 2, 0, 1, 2]), (n, 1)).astype(np.int32)
    lengths = rng.integers(3, t + 1, size=n).astype(np.int32)
    mask = np.arange(t)[None, :] < lengths[:, None]
    casing = np.where(mask, 1, 0).astype(np.int32)
    model = build_tagger(0, len(tags), 4, 0.0, use_layers=False, casing_dim=2, seed=0, output="crf", tags=tags)
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=CRFLoss(model.get_layer("crf")))
    inputs = {"lengths": lengths, "casing": casing}
    history = model.fit(inputs, np.where(mask, gold, PADDING_LABEL), sample_weight=mask.astype("float32"),
                        epochs=12, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 4
    predicted = np.asarray(model.predict_on_batch(inputs))
    assert (predicted.argmax(-1)[mask] == gold[mask]).mean() > 0.95
    model.save(tmp_path / "crf.keras")
    loaded = keras.models.load_model(tmp_path / "crf.keras", compile=False)
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(inputs)), predicted, atol=1e-5)
