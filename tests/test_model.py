"""The tagger model: ELMo's scalar mix formula, masking of padding, any batch size."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.model import ScalarMix, build_tagger


def test_scalar_mix_computes_gamma_times_softmax_weighted_sum():
    mix = ScalarMix()
    stacked = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    mix.build(stacked.shape)
    mix.layer_weights.assign(np.array([0.0, 1.0, 2.0], dtype="float32"))
    mix.gamma.assign(0.5)
    weights = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    expected = 0.5 * np.einsum("btlw,l->btw", stacked, weights)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mix(stacked)), expected, rtol=1e-5)


def test_scalar_mix_starts_with_equal_weights_and_unit_gamma():
    mix = ScalarMix()
    mix.build((1, 1, 3, 2))
    assert mix.mixing_weights() == {"layer_weights": [1 / 3, 1 / 3, 1 / 3], "gamma": 1.0} or np.allclose(
        mix.mixing_weights()["layer_weights"], [1 / 3] * 3)


def test_padding_does_not_change_predictions_for_real_tokens():
    keras.utils.set_random_seed(0)
    model = build_tagger(width=6, n_tags=5, units=4, dropout=0.0)
    layers = np.random.default_rng(1).normal(size=(1, 3, 3, 6)).astype("float32")
    padded = np.concatenate([layers, np.full((1, 5, 3, 6), 9.0, "float32")], axis=1)
    short = model.predict_on_batch({"layers": layers, "lengths": np.array([3], "int32")})
    long = model.predict_on_batch({"layers": padded, "lengths": np.array([3], "int32")})
    np.testing.assert_allclose(short[0], long[0, :3], atol=1e-5)


def test_any_batch_size_trains():
    keras.utils.set_random_seed(0)
    model = build_tagger(width=4, n_tags=3, units=4, dropout=0.0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    for batch in (1, 3, 7):
        x = {"layers": np.ones((batch, 5, 3, 4), "float32"), "lengths": np.full(batch, 4, "int32")}
        loss = model.train_on_batch(x, np.zeros((batch, 5), "int32"), sample_weight=np.ones((batch, 5), "float32"))
        assert np.isfinite(loss)


def test_float16_layers_are_mixed_in_float32_and_predict_as_the_float32_model_does():
    keras.utils.set_random_seed(0)
    half = build_tagger(width=6, n_tags=5, units=4, dropout=0.0, layers_dtype="float16")
    full = build_tagger(width=6, n_tags=5, units=4, dropout=0.0)
    full.set_weights(half.get_weights())
    layers = np.random.default_rng(2).normal(size=(2, 4, 3, 6)).astype("float16")
    lengths = np.array([4, 2], "int32")
    from_half = half.predict_on_batch({"layers": layers, "lengths": lengths})
    from_full = full.predict_on_batch({"layers": layers.astype("float32"), "lengths": lengths})
    assert half.get_layer("scalar_mix").compute_dtype == "float32" and from_half.dtype == np.float32
    np.testing.assert_allclose(from_half, from_full, atol=1e-6)
    half.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert np.isfinite(half.train_on_batch({"layers": layers, "lengths": lengths}, np.zeros((2, 4), "int32")))


def dropped_positions(model: keras.Model, name: str, batch: int = 3, time: int = 6, width: int = 40) -> np.ndarray:
    """Which [batch, time, width] entries the model's dropout layer ``name`` zeroes in one training-mode call."""
    ones = np.ones((batch, time, width), "float32")
    return np.asarray(model.get_layer(name)(ones, training=True)) == 0.0


def test_locked_dropout_drops_the_same_features_at_every_time_step_of_a_sentence():
    keras.utils.set_random_seed(0)
    locked = build_tagger(width=4, n_tags=3, units=4, dropout=0.5, locked_dropout=True)
    for name in ("features_dropout", "between_dropout"):
        dropped = dropped_positions(locked, name)
        assert 0.2 < dropped.mean() < 0.8
        assert (dropped == dropped[:, :1, :]).all(), f"{name}: the mask differs between time steps"
        assert (dropped[0] != dropped[1]).any(), f"{name}: every sentence got the same mask"


def test_dropout_draws_a_fresh_mask_per_token_unless_locked():
    keras.utils.set_random_seed(0)
    dropped = dropped_positions(build_tagger(width=4, n_tags=3, units=4, dropout=0.5), "features_dropout")
    assert (dropped != dropped[:, :1, :]).any()


def test_layers_at_output_feed_the_tag_layer_through_their_own_mix():
    keras.utils.set_random_seed(0)
    model = build_tagger(width=6, n_tags=5, units=4, dropout=0.0, layers_at_output=True)
    tags = model.get_layer("tags")
    assert tags.kernel.shape == (2 * 4 + 6, 5)  # the biLSTMs' output plus the second mix
    layers = np.random.default_rng(3).normal(size=(2, 4, 3, 6)).astype("float32")
    lengths = np.array([4, 2], "int32")
    before = model.predict_on_batch({"layers": layers, "lengths": lengths})
    model.get_layer("output_scalar_mix").gamma.assign(0.0)  # its own weights: the input mix is untouched
    after = model.predict_on_batch({"layers": layers, "lengths": lengths})
    assert model.get_layer("scalar_mix").mixing_weights()["gamma"] == 1.0
    assert not np.allclose(before, after)
    with pytest.raises(ValueError, match="needs the ELMo layers"):
        build_tagger(width=6, n_tags=5, units=4, dropout=0.0, use_layers=False, word_dim=3, vocabulary_size=10,
                     layers_at_output=True)
