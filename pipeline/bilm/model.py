"""The biLM graph (ELMo architecture, sizes from the config), written with Keras layers and ``keras.ops`` only.

Character CNN -> highway -> projection gives a context-free word embedding of width P (``word_emb``). Each direction
then runs two LSTM layers with cell size C projected back to P (clipped, as bilm-tf), with a residual connection from
layer 1 to layer 2. The backward LM is the forward machinery run over each sentence reversed within its own length,
so padding never leaks into it. The softmax over words is shared by both directions and trained as a sampled softmax.
"""
from __future__ import annotations

import math

import keras
from keras import ops

from pipeline.bilm.vocab import CHAR_VOCAB_SIZE

HIGHWAY_CARRY_BIAS = -2.0  # start highway gates mostly "carry", as bilm-tf
FORGET_GATE_BIAS = 1.0
MASKED_LOGIT = -1e9


class CharCNNEncoder(keras.layers.Layer):
    """Token character ids [b, t, c] -> context-free token vectors [b, t, P].

    ``token_runner``: None encodes every position, padding included (static shapes, any backend). The SavedModel
    export sets a runner that encodes only the positions holding a token (:func:`pipeline.bilm.export.
    live_tokens_only`): in a batch of mixed lengths about half the positions are padding. The vectors of real
    tokens are the same either way; the biLM zeroes the padding's.
    """

    token_runner = None

    def __init__(self, char_dim: int, filters: list[list[int]], highway_layers: int, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.char_embedding = keras.layers.Embedding(CHAR_VOCAB_SIZE, char_dim, name="char_embedding")
        self.convolutions = [
            keras.layers.Conv1D(count, width, activation="relu", name=f"char_conv_{width}") for width, count in filters
        ]
        total = sum(count for _, count in filters)
        self.highway_transforms = [keras.layers.Dense(total, activation="relu") for _ in range(highway_layers)]
        self.highway_gates = [
            keras.layers.Dense(total, activation="sigmoid", bias_initializer=keras.initializers.Constant(HIGHWAY_CARRY_BIAS))
            for _ in range(highway_layers)
        ]
        self.projection = keras.layers.Dense(projection_dim, name="projection")
        self.projection_dim = projection_dim

    def call(self, char_ids):
        batch, time, chars = ops.shape(char_ids)[0], ops.shape(char_ids)[1], ops.shape(char_ids)[2]
        flat = ops.reshape(char_ids, (-1, chars))
        vectors = self.encode_tokens(flat) if self.token_runner is None else self.token_runner(self.encode_tokens, flat)
        return ops.reshape(vectors, (batch, time, self.projection_dim))

    def encode_tokens(self, char_ids):
        """Character ids of tokens [n, c] -> token vectors [n, P]."""
        embedded = self.char_embedding(char_ids)
        pooled = ops.concatenate([ops.max(conv(embedded), axis=1) for conv in self.convolutions], axis=-1)
        for transform, gate in zip(self.highway_transforms, self.highway_gates):
            carry = gate(pooled)
            pooled = carry * pooled + (1.0 - carry) * transform(pooled)
        return self.projection(pooled)


class ProjectedLSTMCell(keras.layers.Layer):
    """LSTM cell with cell clipping and a projection of the hidden state (LSTMP, as in bilm-tf).

    The input transformation is applied outside the recurrence (one large matmul over all time steps), so the cell
    receives the 4C-wide input gates and adds only the recurrent part: much faster on CPUs.
    """

    def __init__(self, cell_dim: int, projection_dim: int, cell_clip: float, projection_clip: float, **kwargs):
        super().__init__(**kwargs)
        self.cell_dim = cell_dim
        self.projection_dim = projection_dim
        self.cell_clip = cell_clip
        self.projection_clip = projection_clip
        self.state_size = [projection_dim, cell_dim]
        self.output_size = projection_dim

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(
            shape=(self.projection_dim, 4 * self.cell_dim), initializer="orthogonal", name="recurrent_kernel"
        )
        self.projection_kernel = self.add_weight(
            shape=(self.cell_dim, self.projection_dim), initializer="glorot_uniform", name="projection_kernel"
        )

    def call(self, input_gates, states, training=None):
        hidden, cell = states
        gates = input_gates + ops.matmul(hidden, self.recurrent_kernel)
        i, f, g, o = ops.split(gates, 4, axis=-1)
        cell = ops.sigmoid(f) * cell + ops.sigmoid(i) * ops.tanh(g)
        cell = ops.clip(cell, -self.cell_clip, self.cell_clip)
        hidden = ops.matmul(ops.sigmoid(o) * ops.tanh(cell), self.projection_kernel)
        hidden = ops.clip(hidden, -self.projection_clip, self.projection_clip)
        return hidden, [hidden, cell]


def scan_steps(step, carry, xs: tuple, ys_like: tuple, reverse: bool = False):
    """Run ``step(carry, x_t) -> (carry, ys_t)`` over axis 0 of every ``xs`` (backwards with ``reverse``); return the
    last carry and the ``ys`` stacked [T, ...] (``ys_like``: one step's outputs, for their shapes and dtypes).

    ``jax.lax.scan``'s contract, written with ``fori_loop`` and in-place updates because Keras's TensorFlow ``scan``
    requires every step output to have the carry's shape.
    """
    length = ops.shape(xs[0])[0]

    def at(t, x):
        return ops.squeeze(ops.slice(x, (t,) + (0,) * (len(x.shape) - 1), (1,) + tuple(ops.shape(x)[1:])), 0)

    def body(j, state):
        carry, stacked = state
        t = length - 1 - j if reverse else j
        carry, ys = step(carry, tuple(at(t, x) for x in xs))
        stacked = tuple(ops.slice_update(buffer, (t,) + (0,) * (len(buffer.shape) - 1), ops.expand_dims(y, 0))
                        for buffer, y in zip(stacked, ys))
        return carry, stacked

    stacked = tuple(ops.zeros((length,) + tuple(ops.shape(y)), y.dtype) for y in ys_like)
    return ops.fori_loop(0, length, body, (carry, stacked))


def clip_passes(x, limit: float):
    """Where ``clip(x, -limit, limit)`` lets the gradient through (1.0) and where it stops it (0.0)."""
    return ops.cast((x >= -limit) & (x <= limit), x.dtype)


def lstmp_recurrence(gates, keep, recurrent_kernel, projection_kernel, cell_clip: float, projection_clip: float):
    """The recurrence of an LSTMP layer: input gates [T, B, 4C] (the input transform already applied) and ``keep``
    [T, B, 1] (0.0 where a sentence starts: the state is zeroed there) -> hidden states [T, B, P].

    The same function as stepping :class:`ProjectedLSTMCell`, with a hand-written gradient: autodiff of the loop
    computes the weight gradients as one small [P, B] x [B, 4C] product per step and sums them; here the backward loop
    only carries the state gradients back, and each weight gradient is one large product over all T x B steps
    afterwards. That makes a layer's forward and backward pass about 1.3 times faster on a CPU.
    """
    cell_dim, projection_dim = projection_kernel.shape

    @ops.custom_gradient
    def run(gates, keep, recurrent_kernel, projection_kernel):
        batch = ops.shape(gates)[1]
        hidden0 = ops.zeros((batch, projection_dim), gates.dtype)
        cell0 = ops.zeros((batch, cell_dim), gates.dtype)

        def step(carry, inputs):
            hidden, cell = carry
            input_gates, keep_t = inputs
            hidden, cell = hidden * keep_t, cell * keep_t
            i, f, g, o = ops.split(input_gates + ops.matmul(hidden, recurrent_kernel), 4, axis=-1)
            i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
            cell_raw = f * cell + i * g
            projected = ops.matmul(o * ops.tanh(ops.clip(cell_raw, -cell_clip, cell_clip)), projection_kernel)
            new = ops.clip(projected, -projection_clip, projection_clip)
            activations = ops.concatenate([i, f, g, o], axis=-1)
            return (new, ops.clip(cell_raw, -cell_clip, cell_clip)), (new, hidden, cell, activations, cell_raw,
                                                                        projected)

        like = (hidden0, hidden0, cell0, ops.concatenate([cell0] * 4, axis=-1), cell0, hidden0)
        _, (outputs, *saved) = scan_steps(step, (hidden0, cell0), (gates, keep), like)

        def gradient(upstream):
            previous_hidden, previous_cell, activations, cell_raw, projected = saved

            def back(carry, inputs):
                d_hidden, d_cell = carry
                d_output, previous_cell_t, activations_t, cell_raw_t, projected_t, keep_t = inputs
                i, f, g, o = ops.split(activations_t, 4, axis=-1)
                d_projected = (d_output + d_hidden) * clip_passes(projected_t, projection_clip)
                d_memory = ops.matmul(d_projected, ops.transpose(projection_kernel))
                squashed = ops.tanh(ops.clip(cell_raw_t, -cell_clip, cell_clip))
                d_o = d_memory * squashed
                d_raw = (d_cell + d_memory * o * (1.0 - squashed * squashed)) * clip_passes(cell_raw_t, cell_clip)
                d_gates = ops.concatenate([d_raw * g * i * (1.0 - i), d_raw * previous_cell_t * f * (1.0 - f),
                                           d_raw * i * (1.0 - g * g), d_o * o * (1.0 - o)], axis=-1)
                d_hidden = ops.matmul(d_gates, ops.transpose(recurrent_kernel)) * keep_t
                return (d_hidden, d_raw * f * keep_t), (d_gates, d_projected, o * squashed)

            zero = (ops.zeros_like(hidden0), ops.zeros_like(cell0))
            _, (d_gates, d_projected, memory) = scan_steps(
                back, zero, (upstream, previous_cell, activations, cell_raw, projected, keep),
                (activations[0], hidden0, cell0), reverse=True)

            def summed_over_steps(left, right):
                return ops.matmul(ops.transpose(ops.reshape(left, (-1, left.shape[-1]))),
                                  ops.reshape(right, (-1, right.shape[-1])))

            return (d_gates, ops.zeros_like(keep), summed_over_steps(previous_hidden, d_gates),
                    summed_over_steps(memory, d_projected))

        return outputs, gradient

    # copies, not the variables: TensorFlow's custom gradient would otherwise ask for the variables' gradients apart
    return run(gates, keep, ops.copy(recurrent_kernel), ops.copy(projection_kernel))


class ProjectedLSTM(keras.layers.Layer):
    """One unidirectional LSTMP layer over a masked sequence [b, t, in] -> [b, t, P].

    ``recurrence_runner``: None runs :func:`lstmp_recurrence` (every row at every step, padding included: what
    training needs on any backend). The SavedModel export sets a runner that steps only the rows still inside their sentence
    (:func:`pipeline.bilm.export.packed_recurrence`), so a batch of mixed lengths costs its real tokens. Either way
    the outputs at positions inside each sentence are the same; past a sentence's length they are not used.
    """

    recurrence_runner = None

    def __init__(self, cell_dim: int, projection_dim: int, cell_clip: float, projection_clip: float, **kwargs):
        super().__init__(**kwargs)
        forget_bias = [0.0] * cell_dim + [FORGET_GATE_BIAS] * cell_dim + [0.0] * (2 * cell_dim)
        self.input_gates = keras.layers.Dense(
            4 * cell_dim, bias_initializer=keras.initializers.Constant(forget_bias), name="input_gates"
        )
        cell = ProjectedLSTMCell(cell_dim, projection_dim, cell_clip, projection_clip)
        self.recurrence = keras.layers.RNN(cell, return_sequences=True)
        self.supports_masking = True

    def build(self, input_shape):
        """The input transform and the cell (the cell's weights keep their place under the RNN layer, which the
        export's runner and the weight files name)."""
        self.input_gates.build(input_shape)
        self.recurrence.build(tuple(input_shape[:-1]) + (4 * self.recurrence.cell.cell_dim,))

    def call(self, inputs, mask=None, resets=None):
        """``resets`` [b, t] (1.0 where a sentence starts, training rows packed with several sentences): the state is
        zeroed there, so each sentence is read as if alone, as embedding reads it. Padding needs no mask: it only
        follows a row's tokens (the backward LM's rows are reversed within their length), so it never reaches them."""
        gates = self.input_gates(inputs)
        cell = self.recurrence.cell
        if self.recurrence_runner is not None and mask is not None:
            return self.recurrence_runner(cell, gates, mask)
        keep = ops.ones_like(gates[:, :, :1]) if resets is None else \
            1.0 - ops.expand_dims(ops.cast(resets, gates.dtype), -1)
        outputs = lstmp_recurrence(ops.transpose(gates, (1, 0, 2)), ops.transpose(keep, (1, 0, 2)),
                                   cell.recurrent_kernel, cell.projection_kernel, cell.cell_clip, cell.projection_clip)
        return ops.transpose(outputs, (1, 0, 2))


def reverse_within_length(x, lengths):
    """Reverse each sequence of [b, t, d] within its own length; padding positions stay where they are."""
    time = ops.shape(x)[1]
    positions = ops.expand_dims(ops.arange(time, dtype="int32"), 0)
    lengths = ops.expand_dims(ops.cast(lengths, "int32"), 1)
    index = ops.where(positions < lengths, lengths - 1 - positions, positions)
    index = ops.broadcast_to(ops.expand_dims(index, -1), ops.shape(x))
    return ops.take_along_axis(x, index, axis=1)


def sentence_ends(starts, lengths):
    """[b, t] 1.0 at the last token of each sentence, given 1.0 at each sentence's first token and the row lengths."""
    starts = ops.cast(starts, "float32")
    following = ops.concatenate([starts[:, 1:], ops.zeros_like(starts[:, :1])], axis=1)
    last = ops.expand_dims(ops.arange(ops.shape(starts)[1], dtype="int32"), 0) == ops.expand_dims(lengths - 1, 1)
    return ops.maximum(following, ops.cast(last, "float32"))


class BiLM(keras.Model):
    """Character ids [b, t, c] -> the biLM's layer activations (zero past each sentence's length).

    Returns a dict: ``word_emb`` [b,t,P], ``forward`` and ``backward`` lists of two [b,t,P] layer outputs each, and
    ``mask`` [b,t] bool. ``lstm_outputs{1,2}`` of the TF-Hub signature are the two directions concatenated.
    """

    def __init__(self, options: dict, **kwargs):
        super().__init__(**kwargs)
        self.options = dict(options)
        self.encoder = CharCNNEncoder(
            options["char_embedding_dim"], options["filters"], options["highway_layers"], options["projection_dim"],
            name="char_encoder",
        )
        lstm_args = (options["cell_dim"], options["projection_dim"], options["cell_clip"], options["projection_clip"])
        self.forward_layers = [ProjectedLSTM(*lstm_args, name=f"forward_lstm_{k}") for k in (1, 2)]
        self.backward_layers = [ProjectedLSTM(*lstm_args, name=f"backward_lstm_{k}") for k in (1, 2)]
        self.dropout = keras.layers.Dropout(options.get("dropout", 0.0))

    def run_direction(self, layers, inputs, mask, training, resets=None):
        """Two LSTMP layers with a residual connection from the first to the second."""
        first = layers[0](self.dropout(inputs, training=training), mask=mask, resets=resets)
        second = layers[1](self.dropout(first, training=training), mask=mask, resets=resets) + first
        return [first, second]

    def call(self, char_ids, training=False, starts=None, token_chars=None, token_index=None):
        """``starts`` [b, t] (optional): 1 at the first token of each sentence of a row packed with several.
        ``token_chars`` [u, c] and ``token_index`` [b, t] (optional, training): the batch's distinct tokens and where
        each position's token is among them; the character CNN then encodes each distinct token once, and
        ``char_ids`` only marks which positions hold a token."""
        mask = char_ids[:, :, 0] > 0
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        keep = ops.expand_dims(ops.cast(mask, self.compute_dtype), -1)
        if token_chars is None:
            word_emb = self.encoder(char_ids) * keep
        else:
            word_emb = ops.take(self.encoder.encode_tokens(token_chars), token_index, axis=0) * keep
        forward = self.run_direction(self.forward_layers, word_emb, mask, training, starts)
        reversed_emb = reverse_within_length(word_emb, lengths)
        backward_starts = None if starts is None else reverse_within_length(
            ops.expand_dims(sentence_ends(starts, lengths), -1), lengths)[:, :, 0]
        backward = self.run_direction(self.backward_layers, reversed_emb, mask, training, backward_starts)
        backward = [reverse_within_length(layer, lengths) for layer in backward]
        return {
            "word_emb": word_emb,
            "forward": [layer * keep for layer in forward],
            "backward": [layer * keep for layer in backward],
            "mask": mask,
        }


class SampledSoftmaxLM(keras.Model):
    """Training wrapper: a BiLM plus one word softmax shared by both directions, trained by sampled softmax.

    Negatives are drawn per batch from a log-uniform distribution over frequency-ranked word ids (as TF's
    ``log_uniform_candidate_sampler``) and the logits are corrected by the log expected count, so the loss estimates
    the full softmax cross-entropy. Inputs: ``char_ids`` [b,t,c], ``next_ids`` and ``previous_ids`` [b,t].
    """

    def __init__(self, options: dict, vocab_size: int, num_samples: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.bilm = BiLM(options, name="bilm")
        self.vocab_size = vocab_size
        self.num_samples = min(num_samples, vocab_size)
        self.softmax_weights = self.add_weight(
            shape=(vocab_size, options["projection_dim"]), initializer="glorot_uniform", name="softmax_weights"
        )
        self.softmax_bias = self.add_weight(shape=(vocab_size,), initializer="zeros", name="softmax_bias")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def log_expected_count(self, ids):
        """log(num_samples * P(id)) under the log-uniform sampler."""
        ids = ops.cast(ids, "float32")
        probability = (ops.log(ids + 2.0) - ops.log(ids + 1.0)) / math.log(self.vocab_size + 1.0)
        return ops.log(self.num_samples * probability)

    def sample_negatives(self):
        """num_samples word ids, log-uniformly distributed (frequent words more often)."""
        uniform = keras.random.uniform((self.num_samples,), seed=self.seed_generator)
        ids = ops.floor(ops.exp(uniform * math.log(self.vocab_size + 1.0))) - 1.0
        return ops.cast(ops.clip(ids, 0, self.vocab_size - 1), "int32")

    def sampled_loss(self, hidden, targets, weights, negatives):
        """Mean sampled-softmax cross-entropy of hidden states [n,P] against target ids [n], weighted by [n]."""
        true_logits = ops.sum(hidden * ops.take(self.softmax_weights, targets, axis=0), axis=-1)
        true_logits = true_logits + ops.take(self.softmax_bias, targets) - self.log_expected_count(targets)
        negative_logits = ops.matmul(hidden, ops.transpose(ops.take(self.softmax_weights, negatives, axis=0)))
        negative_logits = negative_logits + ops.take(self.softmax_bias, negatives) - self.log_expected_count(negatives)
        accidental = ops.expand_dims(targets, 1) == ops.expand_dims(negatives, 0)
        negative_logits = ops.where(accidental, MASKED_LOGIT, negative_logits)
        logits = ops.concatenate([ops.expand_dims(true_logits, 1), negative_logits], axis=1)
        losses = ops.logsumexp(logits, axis=1) - true_logits
        return ops.sum(losses * weights) / ops.maximum(ops.sum(weights), 1.0)

    def call(self, inputs, training=False):
        outputs = self.bilm(inputs["char_ids"], training=training, starts=inputs.get("starts"),
                            token_chars=inputs.get("token_chars"), token_index=inputs.get("token_index"))
        return {"forward": outputs["forward"][1], "backward": outputs["backward"][1], "mask": outputs["mask"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Average of the forward (next word) and backward (previous word) sampled losses."""
        width = ops.shape(y_pred["forward"])[-1]
        weights = ops.reshape(ops.cast(y_pred["mask"], "float32"), (-1,))
        negatives = self.sample_negatives()
        losses = []
        for direction, targets in (("forward", x["next_ids"]), ("backward", x["previous_ids"])):
            hidden = ops.cast(ops.reshape(y_pred[direction], (-1, width)), "float32")  # the softmax stays float32
            losses.append(self.sampled_loss(hidden, ops.reshape(targets, (-1,)), weights, negatives))
        return 0.5 * (losses[0] + losses[1])
