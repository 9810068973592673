"""The tagger: ELMo's learned scalar mix over the cached layers, then a residual two-layer biLSTM and a softmax.

Written with Keras layers and ``keras.ops`` only, so the same model trains on TensorFlow here and on JAX on a GPU.
"""
from __future__ import annotations

import keras
from keras import ops

ELMO_LAYERS = 3


@keras.saving.register_keras_serializable(package="pipeline")
class ScalarMix(keras.layers.Layer):
    """ELMo's task-specific layer combination: ``gamma * sum_k softmax(w)_k * h_k``.

    Input [batch, time, layers, width] (any float dtype; computed in float32), output [batch, time, width]. The layer
    weights start equal (w = 0) and gamma at 1, as in the ELMo paper and AllenNLP's ScalarMix.
    """

    def __init__(self, layers: int = ELMO_LAYERS, **kwargs):
        super().__init__(**kwargs)
        self.layers = layers

    def build(self, input_shape):
        self.layer_weights = self.add_weight(shape=(self.layers,), initializer="zeros", name="layer_weights")
        self.gamma = self.add_weight(shape=(), initializer="ones", name="gamma")

    def call(self, stacked):
        stacked = ops.cast(stacked, "float32")
        normalised = ops.softmax(self.layer_weights)
        return self.gamma * ops.einsum("btlw,l->btw", stacked, normalised)

    def mixing_weights(self) -> dict:
        """The learned mix as plain numbers: softmax-normalised layer weights and gamma."""
        return {
            "layer_weights": [float(v) for v in ops.convert_to_numpy(ops.softmax(self.layer_weights))],
            "gamma": float(ops.convert_to_numpy(self.gamma)),
        }

    def get_config(self):
        return super().get_config() | {"layers": self.layers}


@keras.saving.register_keras_serializable(package="pipeline")
class LengthMask(keras.layers.Layer):
    """Sentence lengths [batch] -> boolean mask [batch, time] for a sequence tensor [batch, time, ...]."""

    def call(self, lengths, sequence):
        time = ops.shape(sequence)[1]
        return ops.expand_dims(ops.arange(time, dtype="int32"), 0) < ops.expand_dims(ops.cast(lengths, "int32"), 1)


def residual_bilstm_head(features, mask, n_tags: int, units: int, dropout: float, recurrent_dropout: float = 0.0):
    """Dropout, two biLSTM layers with a residual connection between them, per-token softmax over the tags."""
    x = keras.layers.Dropout(dropout, name="features_dropout")(features)
    first = keras.layers.Bidirectional(
        keras.layers.LSTM(units, return_sequences=True, recurrent_dropout=recurrent_dropout), name="bilstm_1"
    )(x, mask=mask)
    second = keras.layers.Bidirectional(
        keras.layers.LSTM(units, return_sequences=True, recurrent_dropout=recurrent_dropout), name="bilstm_2"
    )(keras.layers.Dropout(dropout, name="between_dropout")(first), mask=mask)
    residual = keras.layers.Add(name="residual")([first, second])
    return keras.layers.Dense(n_tags, activation="softmax", name="tags")(residual)


def build_tagger(width: int, n_tags: int, units: int, dropout: float, recurrent_dropout: float = 0.0,
                 vocabulary_size: int = 0, word_dim: int = 0, layers_dtype: str = "float32") -> keras.Model:
    """Functional model: inputs ``layers`` [b, t, 3, width] and ``lengths`` [b] (plus ``word_ids`` [b, t] when
    ``word_dim`` > 0: a trainable word embedding concatenated with the ELMo mix, as the ELMo paper's taggers do);
    output tag probabilities [b, t, tags].

    ``layers_dtype`` is the cache's storage dtype: batches arrive as stored (float16 by default) and the scalar mix
    casts them to float32 inside the compiled step, so the host neither converts nor copies twice the bytes.
    """
    layers = keras.Input(shape=(None, ELMO_LAYERS, width), name="layers", dtype=layers_dtype)
    lengths = keras.Input(shape=(), dtype="int32", name="lengths")
    inputs = {"layers": layers, "lengths": lengths}
    mask = LengthMask(name="mask")(lengths, layers)
    features = ScalarMix(name="scalar_mix")(layers)
    if word_dim:
        inputs["word_ids"] = keras.Input(shape=(None,), dtype="int32", name="word_ids")
        words = keras.layers.Embedding(vocabulary_size, word_dim, name="word_embedding")(inputs["word_ids"])
        features = keras.layers.Concatenate(name="elmo_and_words")([features, words])
    probabilities = residual_bilstm_head(features, mask, n_tags, units, dropout, recurrent_dropout)
    return keras.Model(inputs, probabilities, name="residual_bilstm_tagger")


def build_word_tagger(vocab_size: int, dim: int, n_tags: int, units: int, dropout: float) -> keras.Model:
    """The same head fed only a word embedding trained from scratch: the baseline the ELMo features must beat."""
    word_ids = keras.Input(shape=(None,), dtype="int32", name="word_ids")
    lengths = keras.Input(shape=(), dtype="int32", name="lengths")
    mask = LengthMask(name="mask")(lengths, word_ids)
    embedded = keras.layers.Embedding(vocab_size, dim, name="word_embedding")(word_ids)
    probabilities = residual_bilstm_head(embedded, mask, n_tags, units, dropout)
    return keras.Model({"word_ids": word_ids, "lengths": lengths}, probabilities, name="word_embedding_tagger")
