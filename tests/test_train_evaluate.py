"""Training on the cache and evaluating: the run directory holds everything, metrics come from seqeval."""
from __future__ import annotations

import json

import pytest

from pipeline.evaluate import evaluate
from pipeline.train import train

from conftest import TINY_TRAIN


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


def test_run_directory_holds_model_vocabulary_embedder_and_curves(run_dir):
    for name in ("model.keras", "tags.json", "embedder.json", "settings.json", "history.csv", "learning_curves.png",
                 "layer_weights.json"):
        assert (run_dir / name).is_file(), name
    embedder = json.loads((run_dir / "embedder.json").read_text())
    assert embedder["embedder_kind"] == "bilm" and embedder["width"] > 0


def test_learned_layer_weights_are_a_distribution(run_dir):
    mix = json.loads((run_dir / "layer_weights.json").read_text())
    assert len(mix["layer_weights"]) == 3 and abs(sum(mix["layer_weights"]) - 1) < 1e-5


def test_history_records_validation_entity_f1_each_epoch(run_dir):
    lines = (run_dir / "history.csv").read_text().splitlines()
    assert "val_entity_f1" in lines[0] and len(lines) == 1 + TINY_TRAIN["max_epochs"]


def test_evaluation_writes_seqeval_metrics_report_and_predictions(run_dir, cached_shards, tmp_path):
    metrics = evaluate(run_dir, cached_shards["test"], "bio_viterbi", tmp_path)
    assert set(metrics["averages"]) == {"micro", "macro", "weighted"}
    assert 0.0 <= metrics["averages"]["micro"]["f1-score"] <= 1.0
    assert (tmp_path / "report.txt").read_text().startswith(" ") or "precision" in (tmp_path / "report.txt").read_text()
    rows = [line.split("\t") for line in (tmp_path / "predictions.conll").read_text().splitlines() if line]
    assert sum(1 for _ in rows) == metrics["tokens"] and all(len(r) == 3 for r in rows)


@pytest.mark.parametrize("output", ["softmax", "crf"])
def test_interrupted_training_resumes_from_the_last_complete_epoch(tmp_path, cached_shards, prepared_corpus, output):
    """Resuming restores the model, its optimizer and (for a CRF, whose loss needs its layer) the loss."""
    _, meta = prepared_corpus
    settings = TINY_TRAIN | {"max_epochs": 2, "patience": 5, "output": output}
    whole = train(cached_shards["train"], cached_shards["val"], meta["tags"], settings, "ner", tmp_path / "a")
    first = train(cached_shards["train"], cached_shards["val"], meta["tags"], settings | {"max_epochs": 1},
                  "ner", tmp_path / "b")
    assert first["epochs_run"] == 1
    # Same directory, longer budget: the fingerprint differs (max_epochs is a setting), so a real kill is simulated
    # by rewriting the state's fingerprint to the full run's settings.
    from pipeline.train import settings_fingerprint
    from pipeline.cache import EmbeddingCache

    caches = [EmbeddingCache(cached_shards["train"], True), EmbeddingCache(cached_shards["val"], True)]
    state_file = tmp_path / "b" / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"] = settings_fingerprint(settings, caches)
    state_file.write_text(json.dumps(state))
    resumed = train(cached_shards["train"], cached_shards["val"], meta["tags"], settings, "ner", tmp_path / "b")
    assert resumed["epochs_run"] == 2
    # Tolerance, not equality: the resumed process re-traces its graphs and restores float32 optimizer moments, and
    # TensorFlow's CPU kernels then sum in a different order (measured: 0.1-1% relative drift in the loss).
    import csv

    def losses(run):
        with open(tmp_path / run / "history.csv") as handle:
            return [float(row["loss"]) for row in csv.DictReader(handle)]

    assert losses("b") == pytest.approx(losses("a"), rel=0.03)


def test_a_seed_ensemble_of_one_run_twice_scores_as_the_evaluate_stage_does(run_dir, cached_shards, tmp_path):
    from pipeline.compare import seed_ensemble

    alone = evaluate(run_dir, cached_shards["test"], "bio_viterbi", tmp_path)["averages"]["micro"]["f1-score"]
    assert seed_ensemble([run_dir, run_dir], cached_shards["test"], "bio_viterbi") == alone  # averaged with itself


def test_a_seed_ensemble_decodes_the_averaged_probabilities(monkeypatch):
    """Two runs that disagree on one token: the confident one wins the average, whatever the other says alone."""
    import numpy as np

    import pipeline.evaluate
    from pipeline.compare import seed_ensemble

    tags, gold = ["O", "B-geo", "I-geo"], [["B-geo", "O"]]
    answers = {"unsure": [np.array([[0.4, 0.6, 0.0], [1.0, 0.0, 0.0]])],
               "sure": [np.array([[0.9, 0.1, 0.0], [1.0, 0.0, 0.0]])]}

    class Gold:
        def column(self, name):
            return gold

    monkeypatch.setattr(pipeline.evaluate, "cached_split_probabilities",
                        lambda run, shards: (tags, answers[str(run)], Gold()))
    assert seed_ensemble(["unsure"], [], "bio_viterbi") == 1.0
    assert seed_ensemble(["unsure", "sure"], [], "bio_viterbi") == 0.0


def test_weight_averaging_swaps_in_the_moving_average_and_back():
    """Inside ``averaged_weights`` the model holds m * average + (1 - m) * weights, updated after every step (the
    first step starts the average at the weights); outside it the raw weights training goes on from."""
    import keras
    import numpy as np

    from pipeline.train import averaged_weights, compile_tagger

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    compile_tagger(model, learning_rate=0.1, weight_averaging=0.5)
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.arange(8) % 3
    expected = None
    for _ in range(3):
        model.train_on_batch(x, y)
        raw = [w.numpy().copy() for w in model.trainable_variables]
        expected = raw if expected is None else [0.5 * e + 0.5 * r for e, r in zip(expected, raw)]
    with averaged_weights(model):
        inside = [w.numpy().copy() for w in model.trainable_variables]
    for got, want, current in zip(inside, expected, raw):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got, current)
    for after, current in zip(model.trainable_variables, raw):
        np.testing.assert_array_equal(after.numpy(), current)


def test_weight_averaging_keeps_the_average_and_checkpoints_the_raw_weights(tmp_path, cached_shards, prepared_corpus):
    """The run's model is the averaged one that was validated; the resumable checkpoint keeps the raw weights and,
    in its optimizer, the averages."""
    import keras
    import numpy as np

    from pipeline.train import averaged_weights

    _, meta = prepared_corpus
    settings = TINY_TRAIN | {"max_epochs": 1, "weight_averaging": 0.9}
    train(cached_shards["train"], cached_shards["val"], meta["tags"], settings, "ner", tmp_path)
    kept = keras.models.load_model(tmp_path / "model.keras", compile=False)
    resumable = keras.models.load_model(tmp_path / "checkpoint" / "model.keras")
    assert resumable.optimizer.use_ema
    raw = [w.numpy().copy() for w in resumable.trainable_variables]
    with averaged_weights(resumable):
        averaged = [w.numpy().copy() for w in resumable.trainable_variables]
    for got, want in zip([w.numpy() for w in kept.trainable_variables], averaged):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert any(not np.allclose(a, r) for a, r in zip(averaged, raw))


def test_locked_dropout_setting_reaches_the_saved_model(tmp_path, cached_shards, prepared_corpus):
    """``train.locked_dropout`` builds the tagger with one dropout mask per sentence, and the saved run keeps it."""
    import keras

    from pipeline.model import LOCKED_NOISE_SHAPE

    _, meta = prepared_corpus
    train(cached_shards["train"], cached_shards["val"], meta["tags"], TINY_TRAIN | {"max_epochs": 1,
          "locked_dropout": True}, "ner", tmp_path)
    kept = keras.models.load_model(tmp_path / "model.keras", compile=False)
    for name in ("features_dropout", "between_dropout"):
        assert tuple(kept.get_layer(name).noise_shape) == LOCKED_NOISE_SHAPE
