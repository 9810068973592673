"""A linear-chain CRF output layer, trained end to end, written with ``keras.ops`` only (TensorFlow here, JAX on a GPU).

Why: a softmax scores each token alone and leaves the tag-to-tag structure to the decoder's hard BIO constraints. A
CRF also learns how likely each transition is (``B-per`` -> ``I-per`` versus ``B-per`` -> ``O``) and trains the
whole sequence's probability (Lample et al. 2016). Lester et al. (2020) found the gain over constrained decoding
small, which is why it is an option (``train.output: crf``) measured against the softmax, not an assumption.

How it fits the rest of the pipeline without touching it: in training the layer outputs the emission scores and
:class:`CRFLoss` turns them into the sequence negative log-likelihood (forward algorithm). At inference it outputs
each token's **marginal** tag probabilities (forward-backward), so the model still answers [batch, time, tags]
probabilities: evaluation, ``ner tag`` and its confidences, and the constrained BIO Viterbi decoder work unchanged
(posterior decoding, BIO transitions forbidden exactly as for the softmax).

Transitions that BIO forbids (``O`` -> ``I-x``, ``B-x`` -> ``I-y``, a sentence starting with ``I-x``) get a fixed
large negative score that training cannot move, so the CRF never spends probability on them.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

#: Added to the score of a transition BIO forbids: exp(-1e4) is 0 in float32, yet finite, so no inf - inf = nan.
FORBIDDEN_SCORE = -1e4
#: The label the batches put on padding positions of a CRF model's targets (no tag has a negative id).
PADDING_LABEL = -1


def bio_transition_masks(tags: Sequence[str]) -> tuple[list[float], list[list[float]]]:
    """(start [tags], transition [from, to]) penalties: 0 where BIO allows the step, FORBIDDEN_SCORE where not."""
    from pipeline.decode import allowed_transitions

    start, transition = allowed_transitions(tags)
    to_penalty = np.vectorize(lambda v: 0.0 if np.isfinite(v) else FORBIDDEN_SCORE)
    return to_penalty(start).tolist(), to_penalty(transition).tolist()


@keras.saving.register_keras_serializable(package="pipeline")
class CRF(keras.layers.Layer):
    """Emission scores [b, t, tags] and sentence lengths [b] -> emissions (training) or marginals (inference).

    Learned: ``transitions`` [from, to] and ``start`` [tags] scores. Fixed: the BIO penalties given at construction.
    """

    def __init__(self, start_penalty: Sequence[float], transition_penalty: Sequence[Sequence[float]], **kwargs):
        super().__init__(**kwargs)
        self.start_penalty = [float(v) for v in start_penalty]
        self.transition_penalty = [[float(v) for v in row] for row in transition_penalty]
        self.n_tags = len(self.start_penalty)
        self.supports_masking = True  # padding is handled through the lengths; the mask passes on to the loss

    def build(self, emissions_shape, lengths_shape=None):
        self.transitions = self.add_weight(shape=(self.n_tags, self.n_tags), initializer="zeros", name="transitions")
        self.start = self.add_weight(shape=(self.n_tags,), initializer="zeros", name="start")

    # -- scores -------------------------------------------------------------------------------------------------
    def start_scores(self):
        return self.start + ops.convert_to_tensor(np.asarray(self.start_penalty, dtype="float32"))

    def transition_scores(self):
        return self.transitions + ops.convert_to_tensor(np.asarray(self.transition_penalty, dtype="float32"))

    def call(self, emissions, lengths, training=None, mask=None):
        emissions = ops.cast(emissions, "float32")
        if training:
            return emissions
        return self.marginals(emissions, lengths)

    def compute_output_shape(self, emissions_shape, lengths_shape=None):
        return emissions_shape

    # -- the forward and backward algorithms ----------------------------------------------------------------------
    def forward_scores(self, emissions, mask):
        """alpha [b, t, tags]: log-sum of the scores of all paths ending in each tag at each step (padding steps
        repeat the last real step, so alpha[:, -1] holds every sentence's final alphas)."""
        transitions = self.transition_scores()
        first = self.start_scores()[None, :] + emissions[:, 0]

        def step(alpha, inputs):
            emission, valid = _split_steps(inputs)
            nxt = ops.logsumexp(alpha[:, :, None] + transitions[None, :, :], axis=1) + emission
            alpha = ops.where(valid[:, None], nxt, alpha)
            return alpha, alpha

        _, alphas = ops.scan(step, first, _time_major_steps(emissions[:, 1:], mask[:, 1:]))
        return ops.concatenate([first[:, None], ops.transpose(alphas, (1, 0, 2))], axis=1)

    def backward_scores(self, emissions, mask):
        """beta [b, t, tags]: log-sum of the scores of all continuations from each tag at each step (0 at a
        sentence's last real step and on padding)."""
        transitions = self.transition_scores()
        batch = ops.shape(emissions)[0]
        last = ops.zeros((batch, self.n_tags), dtype="float32")

        def step(beta, inputs):
            emission, valid = _split_steps(inputs)  # of step t + 1; beta is beta[t + 1]
            previous = ops.logsumexp(transitions[None, :, :] + (emission + beta)[:, None, :], axis=2)
            beta = ops.where(valid[:, None], previous, ops.zeros_like(previous))
            return beta, beta

        _, betas = ops.scan(step, last, ops.flip(_time_major_steps(emissions[:, 1:], mask[:, 1:]), axis=0))
        betas = ops.transpose(ops.flip(betas, axis=0), (1, 0, 2))
        return ops.concatenate([betas, last[:, None]], axis=1)

    def marginals(self, emissions, lengths):
        """p(tag at t | sentence) [b, t, tags], from forward-backward."""
        mask = _mask(lengths, emissions)
        scores = self.forward_scores(emissions, mask) + self.backward_scores(emissions, mask)
        return ops.softmax(scores, axis=-1)

    def log_partition(self, emissions, mask):
        """log Z [b]: the log-sum of the scores of every tag sequence of each sentence."""
        return ops.logsumexp(self.forward_scores(emissions, mask)[:, -1], axis=-1)

    def gold_score(self, emissions, gold, mask):
        """The score [b] of each sentence's gold tag sequence."""
        maskf = ops.cast(mask, "float32")
        one_hot = ops.one_hot(gold, self.n_tags, dtype="float32")
        unary = ops.sum(ops.sum(emissions * one_hot, axis=-1) * maskf, axis=1)
        start = ops.sum(one_hot[:, 0] * self.start_scores()[None, :], axis=-1)
        pairs = ops.einsum("bti,ij,btj->bt", one_hot[:, :-1], self.transition_scores(), one_hot[:, 1:])
        return unary + start + ops.sum(pairs * maskf[:, 1:], axis=1)

    def negative_log_likelihood(self, emissions, gold, mask):
        """-log p(gold | sentence) [b]."""
        emissions = ops.cast(emissions, "float32")
        return self.log_partition(emissions, mask) - self.gold_score(emissions, gold, mask)

    def get_config(self):
        return super().get_config() | {"start_penalty": self.start_penalty,
                                       "transition_penalty": self.transition_penalty}


def _time_major_steps(emissions, mask):
    """[t, b, tags + 1]: each step's emissions with its validity (1/0) as one last column.

    One tensor rather than a pair because Keras's TensorFlow ``scan`` fails on several inputs whose time dimension
    is unknown when traced (it compares the static lengths, which are None), as it is with length-bucketed batches.
    """
    joined = ops.concatenate([emissions, ops.cast(mask, emissions.dtype)[:, :, None]], axis=-1)
    return ops.transpose(joined, (1, 0, 2))


def _split_steps(step):
    """One step of :func:`_time_major_steps` back into (emissions [b, tags], valid [b])."""
    return step[:, :-1], step[:, -1] > 0.5


def _mask(lengths, sequence):
    time = ops.shape(sequence)[1]
    return ops.expand_dims(ops.arange(time, dtype="int32"), 0) < ops.expand_dims(ops.cast(lengths, "int32"), 1)


@keras.saving.register_keras_serializable(package="pipeline")
class CRFLoss(keras.losses.Loss):
    """The CRF's sequence negative log-likelihood, spread evenly over each sentence's tokens.

    Targets mark padding with :data:`PADDING_LABEL`, which is how the loss knows each sentence's length (Keras hands
    a loss no sample weights). Spreading a sentence's NLL over its tokens lets Keras apply the usual padding weights
    and average per token, so the loss is on the scale of the softmax's cross-entropy and the learning rate carries over.
    """

    def __init__(self, crf: CRF | None = None, name: str = "crf_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.crf = crf

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        mask = y_true != PADDING_LABEL
        gold = ops.where(mask, y_true, ops.zeros_like(y_true))
        nll = self.crf.negative_log_likelihood(y_pred, gold, mask)
        lengths = ops.maximum(ops.sum(ops.cast(mask, "float32"), axis=1), 1.0)
        return ops.cast(mask, "float32") * (nll / lengths)[:, None]
