"""The published ELMo in its file form: a bilm-tf ``options.json`` plus ``weights.hdf5``, read into a Keras biLM, and
our own trained biLM written out as the same two files.

Why a second graph next to :class:`pipeline.bilm.model.BiLM`: the files fix conventions our biLM does not share, and
each one changes every activation if it is missed:

* character ids: UTF-8 bytes 0-255, begin/end of sentence 256/257, begin/end of word 258/259, padding 260, all shifted
  by one at run time so that 0 means "no token" (the file's ``char_embed`` has 261 rows; the loaders prepend a zero row,
  which is why a published options file says ``n_characters: 262``). Our biLM has no sentence characters, so the
  pipeline's ids (:mod:`pipeline.bilm.vocab`) are translated here, inside the graph, by a lookup table;
* every sentence runs as ``<S> w1 ... wn </S>`` and the two boundary positions are cut from all layers afterwards;
* the character CNN max-pools first and applies its activation (relu or tanh) after; a highway layer computes
  ``g * relu(x W_t + b_t) + (1 - g) * x`` with ``g = sigmoid(x W_carry + b_carry)``; the projection to the LSTM width
  exists only when the filters do not already sum to it;
* the LSTM is TensorFlow's ``LSTMCell``: one kernel ``W_0`` over ``[input, previous output]`` with gate blocks in the
  order (i, j, f, o), the forget bias 1.0 added at run time (not stored in ``B``), the cell clipped, the projection
  ``W_P_0`` (present only when ``projection_dim < dim``) clipped; ``RNN_0`` is the forward direction and ``RNN_1`` the
  backward one; the second layer adds its input (the skip connection) when ``use_skip_connections`` is true.

The LSTM layers are :class:`pipeline.bilm.model.ProjectedLSTM` (same cell, only initialised at zero since the file
overwrites it; the gate blocks are reordered and the forget bias folded into the bias on load). The character encoder is a layer of its own: its vocabulary (262 ids), its
optional projection, its tanh option and its highway gate convention all differ from :class:`CharCNNEncoder`.

Unlike bilm-tf and AllenNLP, which carry the LSTM states from one batch into the next, every batch starts from zero
states, so a sentence's features do not depend on what was embedded before it.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import h5py
import keras
import numpy as np
from keras import ops

from pipeline.bilm.model import FORGET_GATE_BIAS, BiLM, ProjectedLSTM, ProjectedLSTMCell, reverse_within_length
from pipeline.bilm.vocab import BEGIN_OF_WORD, BYTE_VALUES, CHAR_PADDING, CHAR_VOCAB_SIZE, END_OF_WORD, ID_SHIFT
from pipeline.logs import atomic_path

# -- the file's character ids (before the +1 shift) --------------------------------------------------------------------
FILE_BEGIN_OF_SENTENCE = 256
FILE_END_OF_SENTENCE = 257
FILE_BEGIN_OF_WORD = 258
FILE_END_OF_WORD = 259
FILE_CHAR_PADDING = 260
#: Rows of ``char_embed`` in a weight file: 256 bytes, four markers, padding.
FILE_CHARACTERS = FILE_CHAR_PADDING + 1
#: Rows of the run-time table: the file's rows behind a zero row for "no token here" (the published options' 262).
RUN_TIME_CHARACTERS = FILE_CHARACTERS + ID_SHIFT
#: ``n_characters`` values the options may give: 261 (as trained) or 262 (as the published options for inference).
ACCEPTED_N_CHARACTERS = (FILE_CHARACTERS, RUN_TIME_CHARACTERS)
#: Characters of a sentence-boundary token: begin-of-word, the boundary character, end-of-word.
BOUNDARY_TOKEN_CHARS = 3

LSTM_LAYERS = 2  # the TF-Hub signature has exactly lstm_outputs1 and lstm_outputs2
ACTIVATIONS = ("relu", "tanh")
DIRECTIONS = ("forward", "backward")  # RNN_0, RNN_1
GATES = 4
#: Gate blocks of a TF LSTMCell kernel are (i, j, f, o); ProjectedLSTMCell splits (i, f, g, o) with g = j. Swapping
#: blocks 1 and 2 converts either way.
SWAP_NEW_INPUT_AND_FORGET = (0, 2, 1, 3)
FORGET_BLOCK = 1  # position of the forget gate in ProjectedLSTMCell's order
NO_CLIP = math.inf

#: bilm-tf's published elmo_2x4096_512_2048cnn_2xhighway_options.json (93.6 M parameters, 1024-wide layers): the size
#: the benchmark and the original-size test build with random weights.
ORIGINAL_ELMO_OPTIONS = {
    "lstm": {"use_skip_connections": True, "projection_dim": 512, "cell_clip": 3, "proj_clip": 3, "dim": 4096,
             "n_layers": 2},
    "char_cnn": {"activation": "relu", "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
                 "n_highway": 2, "embedding": {"dim": 16}, "n_characters": 262, "max_characters_per_token": 50},
}

OPTIONS_FILE = "options.json"
WEIGHTS_FILE = "weights.hdf5"
#: Our addition to the options (other tools ignore unknown keys): false for a biLM trained without <S> and </S>.
SENTENCE_BOUNDARIES_KEY = "sentence_boundaries"


class ElmoFilesError(ValueError):
    """An options or weight file that cannot be read as a bilm-tf biLM; the message names the file and the part."""


@dataclass(frozen=True)
class ElmoFileOptions:
    """What a bilm-tf options file says about the graph (training-only keys are ignored)."""

    filters: list[list[int]]
    highway_layers: int
    char_embedding_dim: int
    max_chars_per_token: int
    n_characters: int
    activation: str
    cell_dim: int
    projection_dim: int
    cell_clip: float | None
    projection_clip: float | None
    skip_connections: bool
    sentence_boundaries: bool = True
    source: str = field(default="<options>", compare=False)

    @property
    def n_filters(self) -> int:
        """Width of the character CNN's output (all filters concatenated)."""
        return sum(count for _, count in self.filters)

    @property
    def char_projection(self) -> bool:
        """bilm-tf projects the CNN output only when the filters do not already sum to the LSTM width."""
        return self.n_filters != self.projection_dim

    @property
    def lstm_projection(self) -> bool:
        """TF's LSTMCell gets ``num_proj`` only when ``projection_dim < dim``; otherwise its output is the cell width."""
        return self.projection_dim < self.cell_dim

    @classmethod
    def from_json(cls, raw: dict, source: str = "<options>") -> "ElmoFileOptions":
        """Read and check the parsed options file; every problem names ``source`` and the key."""

        def need(section: str, key: str):
            part = raw.get(section)
            if not isinstance(part, dict) or key not in part:
                raise ElmoFilesError(f"{source}: the options have no {section}.{key}")
            return part[key]

        embedding = need("char_cnn", "embedding")
        if not isinstance(embedding, dict) or "dim" not in embedding:
            raise ElmoFilesError(f"{source}: the options have no char_cnn.embedding.dim")
        options = cls(
            filters=[[int(width), int(count)] for width, count in need("char_cnn", "filters")],
            highway_layers=int(raw["char_cnn"].get("n_highway") or 0),
            char_embedding_dim=int(embedding["dim"]),
            max_chars_per_token=int(need("char_cnn", "max_characters_per_token")),
            n_characters=int(need("char_cnn", "n_characters")),
            activation=str(need("char_cnn", "activation")),
            cell_dim=int(need("lstm", "dim")),
            projection_dim=int(need("lstm", "projection_dim")),
            cell_clip=raw["lstm"].get("cell_clip"),
            projection_clip=raw["lstm"].get("proj_clip"),
            skip_connections=bool(need("lstm", "use_skip_connections")),
            sentence_boundaries=bool(raw.get(SENTENCE_BOUNDARIES_KEY, True)),
            source=source,
        )
        options.check(int(raw["lstm"].get("n_layers", 1)))
        return options

    def check(self, lstm_layers: int) -> None:
        """Reject what bilm-tf would not build or what the two-layer signature cannot answer."""
        problems = []
        if lstm_layers != LSTM_LAYERS:
            problems.append(f"lstm.n_layers is {lstm_layers}, the ELMo signature needs {LSTM_LAYERS}")
        if self.n_characters not in ACCEPTED_N_CHARACTERS:
            problems.append(f"char_cnn.n_characters is {self.n_characters}, expected one of {ACCEPTED_N_CHARACTERS}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"char_cnn.activation is {self.activation!r}, expected one of {ACTIVATIONS}")
        if self.max_chars_per_token < BOUNDARY_TOKEN_CHARS:
            problems.append(f"char_cnn.max_characters_per_token is {self.max_chars_per_token}, "
                            f"at least {BOUNDARY_TOKEN_CHARS} needed")
        wide = [width for width, _ in self.filters if width > self.max_chars_per_token]
        if wide:
            problems.append(f"filter widths {wide} exceed max_characters_per_token {self.max_chars_per_token}")
        if self.char_projection and self.n_filters < self.projection_dim:
            problems.append(f"the filters sum to {self.n_filters}, fewer than lstm.projection_dim "
                            f"{self.projection_dim} (bilm-tf only projects down)")
        if self.projection_dim > self.cell_dim:
            problems.append(f"lstm.projection_dim {self.projection_dim} exceeds lstm.dim {self.cell_dim}")
        if problems:
            raise ElmoFilesError(f"{self.source}: " + "; ".join(problems))

    def to_json(self) -> dict:
        """The options file's JSON (bilm-tf key names; ``n_characters`` as the published inference files: 262)."""
        return {
            "lstm": {
                "dim": self.cell_dim, "projection_dim": self.projection_dim, "n_layers": LSTM_LAYERS,
                "cell_clip": self.cell_clip, "proj_clip": self.projection_clip,
                "use_skip_connections": self.skip_connections,
            },
            "char_cnn": {
                "activation": self.activation, "filters": self.filters, "n_highway": self.highway_layers,
                "embedding": {"dim": self.char_embedding_dim}, "n_characters": RUN_TIME_CHARACTERS,
                "max_characters_per_token": self.max_chars_per_token,
            },
            SENTENCE_BOUNDARIES_KEY: self.sentence_boundaries,
        }

    def record(self) -> dict:
        """What the SavedModel export records (and reads ``max_chars_per_token`` from)."""
        return {key: value for key, value in asdict(self).items() if key != "source"}


def read_options(path: str | Path) -> ElmoFileOptions:
    """Parse a bilm-tf options file; not-JSON errors say the line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ElmoFilesError(f"{path}: cannot read the options file ({exc.strerror or exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ElmoFilesError(f"{path}: not JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ElmoFilesError(f"{path}: the options must be a JSON object, found {type(raw).__name__}")
    return ElmoFileOptions.from_json(raw, str(path))


# -- character ids -----------------------------------------------------------------------------------------------------


def pipeline_to_file_char_ids() -> np.ndarray:
    """[CHAR_VOCAB_SIZE] table: a pipeline character id (vocab.py, shifted) -> the file's id (shifted); 0 stays 0."""
    table = np.zeros(CHAR_VOCAB_SIZE, dtype=np.int32)
    table[ID_SHIFT : ID_SHIFT + BYTE_VALUES] = np.arange(BYTE_VALUES) + ID_SHIFT
    for ours, theirs in ((BEGIN_OF_WORD, FILE_BEGIN_OF_WORD), (END_OF_WORD, FILE_END_OF_WORD),
                         (CHAR_PADDING, FILE_CHAR_PADDING)):
        table[ours + ID_SHIFT] = theirs + ID_SHIFT
    return table


def boundary_token_char_ids(character: int, max_chars: int) -> np.ndarray:
    """Shifted character ids of the ``<S>`` or ``</S>`` token: begin-of-word, the character, end-of-word, padding."""
    ids = np.full(max_chars, FILE_CHAR_PADDING, dtype=np.int32)
    ids[:BOUNDARY_TOKEN_CHARS] = (FILE_BEGIN_OF_WORD, character, FILE_END_OF_WORD)
    return ids + ID_SHIFT


def add_sentence_boundaries(char_ids, lengths, begin_ids: np.ndarray, end_ids: np.ndarray):
    """[b, t, c] -> [b, t + 2, c]: ``<S>`` at position 0, the tokens from 1, ``</S>`` right after each sentence."""
    time = ops.shape(char_ids)[1]
    blank = ops.zeros_like(char_ids[:, :1])
    padded = ops.concatenate([blank, char_ids, blank], axis=1)
    positions = ops.reshape(ops.arange(time + 2, dtype="int32"), (1, -1, 1))
    padded = ops.where(positions == 0, ops.reshape(ops.convert_to_tensor(begin_ids), (1, 1, -1)), padded)
    end_position = ops.reshape(ops.cast(lengths, "int32") + 1, (-1, 1, 1))
    return ops.where(positions == end_position, ops.reshape(ops.convert_to_tensor(end_ids), (1, 1, -1)), padded)


# -- the graph ---------------------------------------------------------------------------------------------------------


class FileCharEncoder(keras.layers.Layer):
    """bilm-tf's character CNN: file character ids [b, t, c] -> token vectors [b, t, projection_dim]."""

    def __init__(self, options: ElmoFileOptions, **kwargs):
        super().__init__(**kwargs)
        self.char_embedding = keras.layers.Embedding(RUN_TIME_CHARACTERS, options.char_embedding_dim, name="char_embed")
        self.convolutions = [keras.layers.Conv1D(count, width, name=f"cnn_{i}") for i, (width, count) in
                             enumerate(options.filters)]
        self.activation = keras.activations.get(options.activation)
        self.highway_carry = [keras.layers.Dense(options.n_filters, activation="sigmoid", kernel_initializer="zeros",
                                                 name=f"high_{i}_carry")
                              for i in range(options.highway_layers)]
        self.highway_transform = [keras.layers.Dense(options.n_filters, activation="relu", kernel_initializer="zeros",
                                                     name=f"high_{i}_transform")
                                  for i in range(options.highway_layers)]
        self.projection = keras.layers.Dense(options.projection_dim, name="proj") if options.char_projection else None
        self.output_dim = options.projection_dim

    def call(self, char_ids):
        batch, time, chars = ops.shape(char_ids)[0], ops.shape(char_ids)[1], ops.shape(char_ids)[2]
        embedded = self.char_embedding(ops.reshape(char_ids, (-1, chars)))
        # Max-pool, then the activation (as bilm-tf; the same for relu, and for tanh since both are monotonic).
        tokens = self.activation(ops.concatenate([ops.max(conv(embedded), axis=1) for conv in self.convolutions], -1))
        for carry, transform in zip(self.highway_carry, self.highway_transform):
            gate = carry(tokens)
            tokens = gate * transform(tokens) + (1.0 - gate) * tokens
        if self.projection is not None:
            tokens = self.projection(tokens)
        return ops.reshape(tokens, (batch, time, self.output_dim))


class FileLSTMCell(ProjectedLSTMCell):
    """:class:`ProjectedLSTMCell` whose variables start at zero: every one is overwritten from the file at once, and
    the cell's orthogonal initialisation (a QR decomposition of a 16384 x 512 matrix at the original size) would cost
    most of the loading time for nothing."""

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(
            shape=(self.projection_dim, GATES * self.cell_dim), initializer="zeros", name="recurrent_kernel"
        )
        self.projection_kernel = self.add_weight(
            shape=(self.cell_dim, self.projection_dim), initializer="zeros", name="projection_kernel"
        )


class FileLSTM(ProjectedLSTM):
    """:class:`ProjectedLSTM` (its ``call`` and layout) built around :class:`FileLSTMCell`, with zero-initialised
    input gates. ``ProjectedLSTM.__init__`` is not run: it would also create a ProjectedLSTMCell, which would stay
    tracked (unused) next to this one."""

    def __init__(self, cell_dim: int, projection_dim: int, cell_clip: float, projection_clip: float, **kwargs):
        keras.layers.Layer.__init__(self, **kwargs)
        self.input_gates = keras.layers.Dense(GATES * cell_dim, kernel_initializer="zeros", name="input_gates")
        cell = FileLSTMCell(cell_dim, projection_dim, cell_clip, projection_clip)
        self.recurrence = keras.layers.RNN(cell, return_sequences=True)
        self.supports_masking = True


class ElmoFilesBiLM(keras.Model):
    """The biLM of a bilm-tf options file; the same inputs and outputs as :class:`pipeline.bilm.model.BiLM`.

    Input: the pipeline's character ids [b, t, c] (:func:`pipeline.bilm.vocab.batch_char_ids`, or the export's string
    twin), so the SavedModel export and every caller of ``BiLM`` use it unchanged. Output: ``word_emb`` [b,t,P],
    ``forward`` and ``backward`` lists of two [b,t,P] layers, ``mask`` [b,t]; zero past each sentence's length.
    """

    def __init__(self, options: ElmoFileOptions, **kwargs):
        super().__init__(**kwargs)
        self.file_options = options
        self.encoder = FileCharEncoder(options, name="char_encoder")
        # TF's LSTMCell clips only when a clip is given (None: no clip), and the projection clip only with a projection.
        cell_clip = NO_CLIP if options.cell_clip is None else options.cell_clip
        projection_clip = NO_CLIP if options.projection_clip is None or not options.lstm_projection else \
            options.projection_clip
        lstm_args = (options.cell_dim, options.projection_dim, cell_clip, projection_clip)
        self.forward_layers = [FileLSTM(*lstm_args, name=f"forward_lstm_{k}") for k in (1, 2)]
        self.backward_layers = [FileLSTM(*lstm_args, name=f"backward_lstm_{k}") for k in (1, 2)]
        self.char_id_table = pipeline_to_file_char_ids()
        self.begin_ids = boundary_token_char_ids(FILE_BEGIN_OF_SENTENCE, options.max_chars_per_token)
        self.end_ids = boundary_token_char_ids(FILE_END_OF_SENTENCE, options.max_chars_per_token)

    def direction_layers(self, direction: str) -> list[FileLSTM]:
        """The two LSTM layers of ``forward`` (the file's RNN_0) or ``backward`` (RNN_1)."""
        return self.forward_layers if direction == "forward" else self.backward_layers

    def run_direction(self, layers: Sequence[FileLSTM], inputs, mask) -> list:
        """Two layers; the second adds its input when the options ask for skip connections."""
        first = layers[0](inputs, mask=mask)
        second = layers[1](first, mask=mask)
        return [first, second + first if self.file_options.skip_connections else second]

    def call(self, char_ids, training=False):
        char_ids = ops.cast(char_ids, "int32")  # Keras traces a default serving function with float inputs on export
        mask = char_ids[:, :, 0] > 0
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        file_ids = ops.take(ops.convert_to_tensor(self.char_id_table), char_ids)
        run_lengths = lengths
        if self.file_options.sentence_boundaries:
            file_ids = add_sentence_boundaries(file_ids, lengths, self.begin_ids, self.end_ids)
            run_lengths = lengths + 2
        run_mask = ops.expand_dims(ops.arange(ops.shape(file_ids)[1], dtype="int32"), 0) < ops.expand_dims(run_lengths, 1)
        tokens = self.encoder(file_ids)
        forward = self.run_direction(self.forward_layers, tokens, run_mask)
        backward = self.run_direction(self.backward_layers, reverse_within_length(tokens, run_lengths), run_mask)
        layers = [tokens, *forward, *[reverse_within_length(layer, run_lengths) for layer in backward]]
        if self.file_options.sentence_boundaries:
            layers = [layer[:, 1:-1] for layer in layers]  # drop <S>; </S> falls past each length (or off the end)
        keep = ops.expand_dims(ops.cast(mask, "float32"), -1)
        layers = [layer * keep for layer in layers]
        return {"word_emb": layers[0], "forward": layers[1:3], "backward": layers[3:5], "mask": mask}


# -- reading and writing the weight file -------------------------------------------------------------------------------


def lstm_prefix(direction: str, layer: int) -> str:
    """HDF5 group of one LSTM layer, as bilm-tf's dump names it (RNN_0 forward, RNN_1 backward; Cell0, Cell1)."""
    return f"RNN_{DIRECTIONS.index(direction)}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"


def reorder_gates(values: np.ndarray) -> np.ndarray:
    """Swap the j/g and f gate blocks of the last axis: TF (i, j, f, o) <-> ours (i, f, g, o)."""
    blocks = np.split(values, GATES, axis=-1)
    return np.concatenate([blocks[k] for k in SWAP_NEW_INPUT_AND_FORGET], axis=-1)


def expected_shapes(options: ElmoFileOptions) -> dict[str, tuple[int, ...]]:
    """Every dataset the options imply, with its shape: the file must hold exactly these (and may hold more)."""
    width, cells, filters = options.projection_dim, options.cell_dim, options.n_filters
    shapes: dict[str, tuple[int, ...]] = {"char_embed": (FILE_CHARACTERS, options.char_embedding_dim)}
    for i, (kernel_width, count) in enumerate(options.filters):
        shapes[f"CNN/W_cnn_{i}"] = (1, kernel_width, options.char_embedding_dim, count)
        shapes[f"CNN/b_cnn_{i}"] = (count,)
    for i in range(options.highway_layers):
        for part in ("carry", "transform"):
            shapes[f"CNN_high_{i}/W_{part}"] = (filters, filters)
            shapes[f"CNN_high_{i}/b_{part}"] = (filters,)
    if options.char_projection:
        shapes["CNN_proj/W_proj"] = (filters, width)
        shapes["CNN_proj/b_proj"] = (width,)
    for direction in DIRECTIONS:
        for layer in range(LSTM_LAYERS):
            prefix = lstm_prefix(direction, layer)
            shapes[f"{prefix}/W_0"] = (width + width, GATES * cells)
            shapes[f"{prefix}/B"] = (GATES * cells,)
            if options.lstm_projection:
                shapes[f"{prefix}/W_P_0"] = (cells, width)
    return shapes


def read_datasets(path: str | Path, options: ElmoFileOptions) -> dict[str, np.ndarray]:
    """Every dataset the options need, as float32, checked against the options' shapes."""
    path = Path(path)
    shapes = expected_shapes(options)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ElmoFilesError(f"{path}: cannot open the weight file as HDF5 ({exc})") from None
    values = {}
    with handle:
        for name, shape in shapes.items():
            if name not in handle or not isinstance(handle[name], h5py.Dataset):
                raise ElmoFilesError(f"{path}: dataset {name!r} is missing (the options {options.source} need it, "
                                     f"shape {list(shape)})")
            found = tuple(handle[name].shape)
            if found != shape:
                raise ElmoFilesError(f"{path}: dataset {name!r} has shape {list(found)} but the options "
                                     f"{options.source} imply {list(shape)}")
            values[name] = np.asarray(handle[name][...], dtype=np.float32)
    return values


def build(model: keras.Model, max_chars: int) -> None:
    """Create every variable by one call on a one-token batch (Keras builds layers on their first call)."""
    from pipeline.bilm.vocab import batch_char_ids

    model(batch_char_ids([["probe"]], max_chars), training=False)


def assign_file_weights(model: ElmoFilesBiLM, values: dict[str, np.ndarray]) -> None:
    """Copy the file's datasets into the built model, converting the conventions the module docstring lists."""
    options = model.file_options
    encoder = model.encoder
    table = np.zeros((RUN_TIME_CHARACTERS, options.char_embedding_dim), dtype=np.float32)
    table[ID_SHIFT:] = values["char_embed"]  # row 0: "no token here"
    encoder.char_embedding.embeddings.assign(table)
    for i, conv in enumerate(encoder.convolutions):
        conv.kernel.assign(values[f"CNN/W_cnn_{i}"][0])
        conv.bias.assign(values[f"CNN/b_cnn_{i}"])
    for i, (carry, transform) in enumerate(zip(encoder.highway_carry, encoder.highway_transform)):
        carry.kernel.assign(values[f"CNN_high_{i}/W_carry"])
        carry.bias.assign(values[f"CNN_high_{i}/b_carry"])
        transform.kernel.assign(values[f"CNN_high_{i}/W_transform"])
        transform.bias.assign(values[f"CNN_high_{i}/b_transform"])
    if encoder.projection is not None:
        encoder.projection.kernel.assign(values["CNN_proj/W_proj"])
        encoder.projection.bias.assign(values["CNN_proj/b_proj"])
    width = options.projection_dim
    for direction in DIRECTIONS:
        for layer, lstm in enumerate(model.direction_layers(direction)):
            prefix = lstm_prefix(direction, layer)
            kernel = reorder_gates(values[f"{prefix}/W_0"])
            bias = reorder_gates(values[f"{prefix}/B"]).reshape(GATES, -1)
            bias[FORGET_BLOCK] += FORGET_GATE_BIAS  # TF's LSTMCell adds it at run time; ProjectedLSTM stores it
            lstm.input_gates.kernel.assign(kernel[:width])
            lstm.input_gates.bias.assign(bias.reshape(-1))
            cell = lstm.recurrence.cell
            cell.recurrent_kernel.assign(kernel[width:])
            projection = values.get(f"{prefix}/W_P_0")
            cell.projection_kernel.assign(projection if projection is not None else np.eye(width, dtype=np.float32))


def load_elmo_files(options_path: str | Path, weights_path: str | Path) -> ElmoFilesBiLM:
    """The biLM of a bilm-tf options + weights pair, every variable loaded from the file."""
    options = read_options(options_path)
    values = read_datasets(weights_path, options)  # before building: a bad file fails before the slow part
    model = ElmoFilesBiLM(options, name="elmo_files_bilm")
    build(model, options.max_chars_per_token)
    assign_file_weights(model, values)
    return model


def write_elmo_files(out_dir: str | Path, options: ElmoFileOptions, values: dict[str, np.ndarray]) -> Path:
    """Write ``options.json`` and ``weights.hdf5`` (bilm-tf's names and layout) into ``out_dir``, atomically."""
    missing = sorted(set(expected_shapes(options)) - set(values))
    if missing:
        raise ElmoFilesError(f"cannot write {out_dir}: no values for {missing}")
    with atomic_path(out_dir, directory=True) as tmp:
        (Path(tmp) / OPTIONS_FILE).write_text(json.dumps(options.to_json(), indent=1))
        with h5py.File(Path(tmp) / WEIGHTS_FILE, "w") as handle:
            for name, value in values.items():
                handle.create_dataset(name, data=np.asarray(value, dtype=np.float32))
    return Path(out_dir)


def bilm_file_options(options: dict) -> ElmoFileOptions:
    """The file options of our biLM (pretrain's ``options``): relu CNN, skip connections, no sentence boundaries."""
    file_options = ElmoFileOptions(
        filters=[list(pair) for pair in options["filters"]], highway_layers=options["highway_layers"],
        char_embedding_dim=options["char_embedding_dim"], max_chars_per_token=options["max_chars_per_token"],
        n_characters=RUN_TIME_CHARACTERS, activation="relu", cell_dim=options["cell_dim"],
        projection_dim=options["projection_dim"], cell_clip=options["cell_clip"],
        projection_clip=options["projection_clip"], skip_connections=True, sentence_boundaries=False,
        source="the trained biLM's options",
    )
    file_options.check(LSTM_LAYERS)
    if not (file_options.char_projection and file_options.lstm_projection):
        raise ElmoFilesError("this biLM cannot be written in the bilm-tf layout: bilm-tf has no projection when the "
                             f"filters sum to projection_dim ({file_options.n_filters} vs {file_options.projection_dim})"
                             f" or when projection_dim equals cell_dim ({file_options.cell_dim}); ours always has one")
    return file_options


def bilm_datasets(bilm: BiLM, file_options: ElmoFileOptions) -> dict[str, np.ndarray]:
    """Our biLM's weights in the file's layout (the inverse of :func:`assign_file_weights`'s conversions)."""
    encoder = bilm.encoder
    numpy = keras.ops.convert_to_numpy
    ours = numpy(encoder.char_embedding.embeddings)
    char_embed = np.zeros((FILE_CHARACTERS, file_options.char_embedding_dim), dtype=np.float32)
    char_embed[pipeline_to_file_char_ids()[ID_SHIFT:] - ID_SHIFT] = ours[ID_SHIFT:]  # sentence characters stay zero
    values = {"char_embed": char_embed}
    for i, conv in enumerate(encoder.convolutions):
        values[f"CNN/W_cnn_{i}"] = numpy(conv.kernel)[np.newaxis]
        values[f"CNN/b_cnn_{i}"] = numpy(conv.bias)
    for i, (transform, gate) in enumerate(zip(encoder.highway_transforms, encoder.highway_gates)):
        # Ours: c * x + (1 - c) * T(x); bilm-tf: g * T(x) + (1 - g) * x, so g = 1 - c = sigmoid(-(x W + b)).
        values[f"CNN_high_{i}/W_carry"] = -numpy(gate.kernel)
        values[f"CNN_high_{i}/b_carry"] = -numpy(gate.bias)
        values[f"CNN_high_{i}/W_transform"] = numpy(transform.kernel)
        values[f"CNN_high_{i}/b_transform"] = numpy(transform.bias)
    values["CNN_proj/W_proj"] = numpy(encoder.projection.kernel)
    values["CNN_proj/b_proj"] = numpy(encoder.projection.bias)
    for direction, layers in zip(DIRECTIONS, (bilm.forward_layers, bilm.backward_layers)):
        for layer, lstm in enumerate(layers):
            prefix = lstm_prefix(direction, layer)
            kernel = np.concatenate([numpy(lstm.input_gates.kernel), numpy(lstm.recurrence.cell.recurrent_kernel)])
            bias = numpy(lstm.input_gates.bias).reshape(GATES, -1).copy()
            bias[FORGET_BLOCK] -= FORGET_GATE_BIAS
            values[f"{prefix}/W_0"] = reorder_gates(kernel)
            values[f"{prefix}/B"] = reorder_gates(bias.reshape(-1))
            values[f"{prefix}/W_P_0"] = numpy(lstm.recurrence.cell.projection_kernel)
    return values


def write_bilm_as_elmo_files(bilm: BiLM, options: dict, out_dir: str | Path) -> Path:
    """Our trained biLM as bilm-tf's two files, loadable by other ELMo tools and by :func:`load_elmo_files`."""
    file_options = bilm_file_options(options)
    return write_elmo_files(out_dir, file_options, bilm_datasets(bilm, file_options))
