"""The tagger: ELMo's learned scalar mix over the cached layers, then a residual two-layer biLSTM and a softmax.

Written with Keras layers and ``keras.ops`` only, so the same model trains on TensorFlow here and on JAX on a GPU.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from pipeline.crf import CRF, bio_transition_masks
from pipeline.words import CASING_CLASSES, FIRST_WORD_ID, PADDING_ID, UNKNOWN_ID

ELMO_LAYERS = 3
#: The tagger's output layers: a per-token softmax, or a linear-chain CRF trained on whole sentences.
OUTPUTS = ("softmax", "crf")


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


#: Dropout mask shape [batch, time, features] of locked dropout: one mask per sentence, shared by its time steps.
LOCKED_NOISE_SHAPE = (None, 1, None)


def residual_bilstm_head(features, mask, n_tags: int, units: int, dropout: float, recurrent_dropout: float = 0.0,
                         activation: str | None = "softmax", locked_dropout: bool = False, output_features=None):
    """Dropout, two biLSTM layers with a residual connection between them, per-token softmax over the tags (or, with
    ``activation=None``, the raw per-token tag scores a CRF layer takes).

    ``locked_dropout``: drop the same features at every time step of a sentence (variational dropout, Gal and
    Ghahramani 2016; flair's LockedDropout) instead of a fresh mask per token, so the LSTMs cannot route around a
    dropped feature through a neighbouring token.

    ``output_features`` [b, t, d] (optional): concatenated with the biLSTMs' output before the tag layer, so the tag
    scores see them directly, not only through the LSTMs (the ELMo paper's "ELMo at the output" of the task model).
    """
    noise_shape = LOCKED_NOISE_SHAPE if locked_dropout else None
    x = keras.layers.Dropout(dropout, noise_shape=noise_shape, name="features_dropout")(features)
    first = keras.layers.Bidirectional(
        keras.layers.LSTM(units, return_sequences=True, recurrent_dropout=recurrent_dropout), name="bilstm_1"
    )(x, mask=mask)
    second = keras.layers.Bidirectional(
        keras.layers.LSTM(units, return_sequences=True, recurrent_dropout=recurrent_dropout), name="bilstm_2"
    )(keras.layers.Dropout(dropout, noise_shape=noise_shape, name="between_dropout")(first), mask=mask)
    residual = keras.layers.Add(name="residual")([first, second])
    if output_features is not None:
        dropped = keras.layers.Dropout(dropout, noise_shape=noise_shape, name="output_features_dropout")(
            output_features)
        residual = keras.layers.Concatenate(name="with_output_features")([residual, dropped])
    return keras.layers.Dense(n_tags, activation=activation, name="tags")(residual)


@keras.saving.register_keras_serializable(package="pipeline")
class WordDropout(keras.layers.Layer):
    """During training, replace each real token's id by ``<UNK>`` with probability ``rate`` (padding stays padding).

    Why: the model then learns what to do with a word it has no embedding for from the whole training split, not
    only from the few words rarer than ``min_word_count`` (Lample et al. 2016's singleton dropout, made uniform).
    """

    def __init__(self, rate: float, unknown_id: int = UNKNOWN_ID, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.unknown_id, self.seed = rate, unknown_id, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, ids, training=None):
        if not training or self.rate <= 0:
            return ids
        drop = keras.random.uniform(ops.shape(ids), seed=self.seed_generator) < self.rate
        return ops.where(ops.logical_and(drop, ids > PADDING_ID), ops.cast(self.unknown_id, ids.dtype), ids)

    def get_config(self):
        return super().get_config() | {"rate": self.rate, "unknown_id": self.unknown_id, "seed": self.seed}


@keras.saving.register_keras_serializable(package="pipeline")
class CharCNN(keras.layers.Layer):
    """Character ids [batch, time, chars] -> one vector per token [batch, time, filters]: character embedding, a
    1-d convolution and a max over the token's characters (Ma & Hovy 2016).

    Padding characters are zeroed before the max; with ReLU outputs >= 0 that equals a max over real characters.
    """

    def __init__(self, vocabulary_size: int, embedding_dim: int, filters: int, kernel_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.embedding_dim = vocabulary_size, embedding_dim
        self.filters, self.kernel_size = filters, kernel_size
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="char_embedding")
        self.convolution = keras.layers.Conv1D(filters, kernel_size, padding="same", activation="relu",
                                               name="char_convolution")

    def build(self, input_shape):
        self.embedding.build((None, None))
        self.convolution.build((None, None, self.embedding_dim))

    def call(self, char_ids):
        shape = ops.shape(char_ids)
        flat = ops.reshape(char_ids, (-1, shape[2]))
        convolved = self.convolution(self.embedding(flat))
        real = ops.expand_dims(ops.cast(flat > PADDING_ID, convolved.dtype), -1)
        pooled = ops.max(convolved * real, axis=1)
        return ops.reshape(pooled, (shape[0], shape[1], self.filters))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.filters)

    def get_config(self):
        return super().get_config() | {"vocabulary_size": self.vocabulary_size, "embedding_dim": self.embedding_dim,
                                       "filters": self.filters, "kernel_size": self.kernel_size}


def build_tagger(width: int, n_tags: int, units: int, dropout: float, recurrent_dropout: float = 0.0,
                 vocabulary_size: int = 0, word_dim: int = 0, layers_dtype: str = "float32", *,
                 use_layers: bool = True, word_dropout: float = 0.0, char_vocabulary_size: int = 0,
                 char_dim: int = 0, char_filters: int = 0, char_kernel: int = 3, casing_dim: int = 0,
                 vectors_shape: tuple[int, int] | None = None, seed: int | None = None,
                 output: str = "softmax", tags: Sequence[str] | None = None,
                 locked_dropout: bool = False, layers_at_output: bool = False) -> keras.Model:
    """Functional model from token features to tag probabilities [b, t, tags].

    Inputs: ``layers`` [b, t, 3, width] (the cached ELMo activations, mixed by ScalarMix; absent when
    ``use_layers`` is false, the no-biLM baseline) and ``lengths`` [b]; optional ``word_ids`` [b, t] (trainable word
    embedding, ``word_dim`` > 0), ``char_ids`` [b, t, c] (character CNN, ``char_dim`` > 0), ``casing`` [b, t]
    (casing classes, ``casing_dim`` > 0) and ``vector_ids`` [b, t] (a frozen pretrained table of ``vectors_shape``;
    fill it with :func:`set_pretrained_vectors`). All features are concatenated per token, as the ELMo paper's NER
    model concatenates GloVe, characters and ELMo.

    ``layers_dtype`` is the cache's storage dtype: batches arrive as stored (float16 by default) and the scalar mix
    casts them to float32 inside the compiled step, so the host neither converts nor copies twice the bytes.

    ``layers_at_output``: a second scalar mix of the same layers, with its own weights, also joins the biLSTMs' output
    before the tag layer (the ELMo paper adds ELMo at the task model's output as well as its input for some tasks).

    ``output`` is ``softmax`` (per-token) or ``crf`` (a linear-chain CRF over ``tags``, whose BIO structure fixes the
    forbidden transitions; see :mod:`pipeline.crf`). Either way the trained model predicts [b, t, tags] probabilities.
    """
    if output not in OUTPUTS:
        raise ValueError(f"unknown tagger output {output!r} (one of {', '.join(OUTPUTS)})")
    if layers_at_output and not use_layers:
        raise ValueError("layers_at_output needs the ELMo layers (use_layers / train.use_elmo true)")
    if output == "crf" and (tags is None or len(tags) != n_tags):
        raise ValueError("a CRF output needs the tag names (their BIO structure decides the forbidden transitions)")
    lengths = keras.Input(shape=(), dtype="int32", name="lengths")
    inputs, parts = {"lengths": lengths}, []
    if use_layers:
        inputs["layers"] = keras.Input(shape=(None, ELMO_LAYERS, width), name="layers", dtype=layers_dtype)
        parts.append(ScalarMix(name="scalar_mix")(inputs["layers"]))
    if word_dim:
        inputs["word_ids"] = keras.Input(shape=(None,), dtype="int32", name="word_ids")
        ids = WordDropout(word_dropout, seed=seed, name="word_dropout")(inputs["word_ids"])
        parts.append(keras.layers.Embedding(vocabulary_size, word_dim, name="word_embedding")(ids))
    if vectors_shape is not None:
        inputs["vector_ids"] = keras.Input(shape=(None,), dtype="int32", name="vector_ids")
        ids = WordDropout(word_dropout, seed=None if seed is None else seed + 1, name="vector_dropout")(
            inputs["vector_ids"])
        parts.append(keras.layers.Embedding(*vectors_shape, trainable=False, name="pretrained_vectors")(ids))
    if char_dim:
        inputs["char_ids"] = keras.Input(shape=(None, None), dtype="int32", name="char_ids")
        parts.append(CharCNN(char_vocabulary_size, char_dim, char_filters, char_kernel, name="char_cnn")(
            inputs["char_ids"]))
    if casing_dim:
        inputs["casing"] = keras.Input(shape=(None,), dtype="int32", name="casing")
        parts.append(keras.layers.Embedding(len(CASING_CLASSES), casing_dim, name="casing_embedding")(
            inputs["casing"]))
    if not parts:
        raise ValueError("the tagger needs at least one token feature (ELMo layers, words, vectors or characters)")
    mask = LengthMask(name="mask")(lengths, parts[0])
    features = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="token_features")(parts)
    at_output = ScalarMix(name="output_scalar_mix")(inputs["layers"]) if layers_at_output else None
    probabilities = residual_bilstm_head(features, mask, n_tags, units, dropout, recurrent_dropout,
                                         activation=None if output == "crf" else "softmax",
                                         locked_dropout=locked_dropout, output_features=at_output)
    if output == "crf":  # the head gave raw per-token scores: the CRF turns them into tag marginals
        probabilities = CRF(*bio_transition_masks(tags), name="crf")(probabilities, lengths)
    return keras.Model(inputs, probabilities, name="residual_bilstm_tagger")


def set_pretrained_vectors(model: keras.Model, matrix) -> None:
    """Copy a [words, dim] pretrained matrix into rows 2.. of the frozen ``pretrained_vectors`` table (rows 0 and 1,
    padding and unknown, stay zero)."""
    import numpy as np

    layer = model.get_layer("pretrained_vectors")
    table = np.zeros(layer.embeddings.shape, dtype="float32")
    table[FIRST_WORD_ID : FIRST_WORD_ID + len(matrix)] = matrix
    layer.embeddings.assign(table)


def build_word_tagger(vocab_size: int, dim: int, n_tags: int, units: int, dropout: float) -> keras.Model:
    """The same head fed only a word embedding trained from scratch: the baseline the ELMo features must beat."""
    word_ids = keras.Input(shape=(None,), dtype="int32", name="word_ids")
    lengths = keras.Input(shape=(), dtype="int32", name="lengths")
    mask = LengthMask(name="mask")(lengths, word_ids)
    embedded = keras.layers.Embedding(vocab_size, dim, name="word_embedding")(word_ids)
    probabilities = residual_bilstm_head(embedded, mask, n_tags, units, dropout)
    return keras.Model({"word_ids": word_ids, "lengths": lengths}, probabilities, name="word_embedding_tagger")


def has_layer(model: keras.Model, name: str) -> bool:
    """Whether ``model`` has a layer called ``name`` (a tagger without the ELMo layers has no ``scalar_mix``)."""
    return any(layer.name == name for layer in model.layers)


def uses_layers(model: keras.Model) -> bool:
    """Whether the tagger takes the cached ELMo layers as an input."""
    return has_layer(model, "layers")
