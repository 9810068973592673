"""The published ELMo's file form (bilm-tf ``options.json`` + ``weights.hdf5``): loaded into the pipeline, written from
it, and checked against an independent numpy forward pass written here from the published equations.

The reference below shares no code with :mod:`pipeline.bilm.elmo_files`: it builds the file's character ids from the
token strings itself, writes the weight file with bilm-tf's dataset names and shapes itself, and runs the CNN, the
highway layers and TensorFlow's LSTMCell (gate order i, j, f, o; forget bias 1.0 added at run time; clipping; the
projection; the skip connection) step by step.
"""
from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

# A small model that uses every feature: relu CNN, two highway layers, the CNN projection, projected and clipped LSTMs
# with the skip connection, the published n_characters 262.
SMALL_OPTIONS = {
    "lstm": {"dim": 12, "projection_dim": 6, "n_layers": 2, "cell_clip": 3.0, "proj_clip": 3.0,
             "use_skip_connections": True},
    "char_cnn": {"activation": "relu", "filters": [[1, 4], [2, 5], [3, 6]], "n_highway": 2, "embedding": {"dim": 4},
                 "n_characters": 262, "max_characters_per_token": 10},
    "n_tokens_vocab": 1000, "unroll_steps": 20, "bidirectional": True,  # training keys a loader ignores
}
# The other branches: tanh, no highway, filters summing to the LSTM width (no CNN projection), dim == projection_dim
# (no W_P_0), no skip connection, no clipping, n_characters as trained (261).
PLAIN_OPTIONS = {
    "lstm": {"dim": 8, "projection_dim": 8, "n_layers": 2, "use_skip_connections": False},
    "char_cnn": {"activation": "tanh", "filters": [[1, 3], [2, 5]], "embedding": {"dim": 3}, "n_characters": 261,
                 "max_characters_per_token": 7},
}
ORIGINAL_PARAMETERS_MILLIONS = 93.6
ORIGINAL_WIDTH = 1024

# Multi-byte UTF-8, a token longer than max_characters_per_token - 2 (cut), one-token and longer sentences.
SENTENCES = [["The", "Zürich", "talks", "東京", "ended"], ["a"], ["supercalifragilistic", "x", "NATO", "said", "."]]
WEIGHT_SCALE = 0.8  # large enough that the cell and projection clips are reached (the reference counts them)
TOLERANCE = 1e-4

# bilm-tf's character ids (before the +1 shift that makes 0 "no token").
BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = 256, 257, 258, 259, 260


# -- the file layout and the reference forward pass, from bilm-tf's conventions ------------------------------------


def file_layout(options: dict) -> dict[str, tuple[int, ...]]:
    """Dataset name -> shape, as bilm-tf's dump_weights writes them."""
    cnn, lstm = options["char_cnn"], options["lstm"]
    n_filters = sum(count for _, count in cnn["filters"])
    width, cells = lstm["projection_dim"], lstm["dim"]
    layout = {"char_embed": (261, cnn["embedding"]["dim"])}
    for i, (kernel, count) in enumerate(cnn["filters"]):
        layout[f"CNN/W_cnn_{i}"] = (1, kernel, cnn["embedding"]["dim"], count)
        layout[f"CNN/b_cnn_{i}"] = (count,)
    for i in range(cnn.get("n_highway") or 0):
        layout |= {f"CNN_high_{i}/W_carry": (n_filters, n_filters), f"CNN_high_{i}/b_carry": (n_filters,),
                   f"CNN_high_{i}/W_transform": (n_filters, n_filters), f"CNN_high_{i}/b_transform": (n_filters,)}
    if n_filters != width:
        layout |= {"CNN_proj/W_proj": (n_filters, width), "CNN_proj/b_proj": (width,)}
    for direction in (0, 1):
        for cell in (0, 1):
            prefix = f"RNN_{direction}/RNN/MultiRNNCell/Cell{cell}/LSTMCell"
            layout |= {f"{prefix}/W_0": (2 * width, 4 * cells), f"{prefix}/B": (4 * cells,)}
            if width < cells:
                layout[f"{prefix}/W_P_0"] = (cells, width)
    return layout


def write_random_files(directory, options: dict, seed: int = 0, scale: float = WEIGHT_SCALE) -> tuple:
    """options.json and weights.hdf5 with random float32 weights; returns (options path, weights path, weights)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))
               for name, shape in file_layout(options).items()}
    (directory / "options.json").write_text(json.dumps(options))
    with h5py.File(directory / "weights.hdf5", "w") as handle:
        for name, value in weights.items():
            handle.create_dataset(name, data=value)
    return directory / "options.json", directory / "weights.hdf5", weights


def token_ids(token: str, max_chars: int) -> np.ndarray:
    body = list(token.encode("utf-8"))[: max_chars - 2]
    return np.array([BOW_CHAR, *body, EOW_CHAR] + [PAD_CHAR] * (max_chars - 2 - len(body))) + 1


def boundary_ids(character: int, max_chars: int) -> np.ndarray:
    return np.array([BOW_CHAR, character, EOW_CHAR] + [PAD_CHAR] * (max_chars - 3)) + 1


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def char_cnn(options: dict, weights: dict, ids: np.ndarray) -> np.ndarray:
    """[n, max_chars] ids -> [n, projection_dim] token vectors."""
    cnn = options["char_cnn"]
    table = np.vstack([np.zeros((1, cnn["embedding"]["dim"]), np.float32), weights["char_embed"]])
    chars = table[ids]
    pooled = []
    for i, (kernel, _) in enumerate(cnn["filters"]):
        w, b = weights[f"CNN/W_cnn_{i}"][0], weights[f"CNN/b_cnn_{i}"]
        windows = [np.einsum("nwd,wdk->nk", chars[:, s : s + kernel], w) + b for s in range(ids.shape[1] - kernel + 1)]
        pooled.append(np.max(windows, axis=0))
    x = np.concatenate(pooled, axis=-1)
    x = np.maximum(x, 0.0) if cnn["activation"] == "relu" else np.tanh(x)
    for i in range(cnn.get("n_highway") or 0):
        carry = sigmoid(x @ weights[f"CNN_high_{i}/W_carry"] + weights[f"CNN_high_{i}/b_carry"])
        transform = np.maximum(x @ weights[f"CNN_high_{i}/W_transform"] + weights[f"CNN_high_{i}/b_transform"], 0.0)
        x = carry * transform + (1.0 - carry) * x
    if "CNN_proj/W_proj" in weights:
        x = x @ weights["CNN_proj/W_proj"] + weights["CNN_proj/b_proj"]
    return x


def lstm_cell_run(options: dict, weights: dict, prefix: str, inputs: np.ndarray, clipped: dict) -> np.ndarray:
    """TensorFlow's LSTMCell(num_units=dim, num_proj, cell_clip, proj_clip, forget_bias=1.0) over [n, width]."""
    lstm = options["lstm"]
    kernel, bias, projection = weights[f"{prefix}/W_0"], weights[f"{prefix}/B"], weights.get(f"{prefix}/W_P_0")
    cells = lstm["dim"]
    output = np.zeros(projection.shape[1] if projection is not None else cells)
    cell = np.zeros(cells)
    outputs = []
    for x in inputs:
        i, j, f, o = np.split(np.concatenate([x, output]) @ kernel + bias, 4)
        cell = sigmoid(f + 1.0) * cell + sigmoid(i) * np.tanh(j)
        if lstm.get("cell_clip"):
            clipped["cell"] += int(np.sum(np.abs(cell) > lstm["cell_clip"]))
            cell = np.clip(cell, -lstm["cell_clip"], lstm["cell_clip"])
        output = sigmoid(o) * np.tanh(cell)
        if projection is not None:
            output = output @ projection
            if lstm.get("proj_clip"):
                clipped["projection"] += int(np.sum(np.abs(output) > lstm["proj_clip"]))
                output = np.clip(output, -lstm["proj_clip"], lstm["proj_clip"])
        outputs.append(output)
    return np.array(outputs)


def reference_layers(options: dict, weights: dict, sentence: list[str], clipped: dict,
                     boundaries: bool = True) -> np.ndarray:
    """[n, 3, 2P]: [x, x], then forward|backward of each LSTM layer; <S> and </S> run through and are cut after."""
    max_chars = options["char_cnn"]["max_characters_per_token"]
    ids = [token_ids(token, max_chars) for token in sentence]
    if boundaries:
        ids = [boundary_ids(BOS_CHAR, max_chars), *ids, boundary_ids(EOS_CHAR, max_chars)]
    x = char_cnn(options, weights, np.array(ids))
    directions = []
    for direction, order in ((0, slice(None)), (1, slice(None, None, -1))):
        first = lstm_cell_run(options, weights, f"RNN_{direction}/RNN/MultiRNNCell/Cell0/LSTMCell", x[order], clipped)
        second = lstm_cell_run(options, weights, f"RNN_{direction}/RNN/MultiRNNCell/Cell1/LSTMCell", first, clipped)
        if options["lstm"]["use_skip_connections"]:
            second = second + first
        directions.append((first[order], second[order]))
    layers = np.stack([np.concatenate([x, x], -1), np.concatenate([directions[0][0], directions[1][0]], -1),
                       np.concatenate([directions[0][1], directions[1][1]], -1)], axis=1)
    return layers[1:-1] if boundaries else layers


def model_layers(model, sentences: list[list[str]], max_chars: int) -> list[np.ndarray]:
    """Each sentence's [n, 3, 2P] layers from a BiLM-like model called on the pipeline's character ids."""
    from pipeline.bilm.vocab import batch_char_ids

    out = {k: (np.asarray(v) if not isinstance(v, list) else [np.asarray(x) for x in v])
           for k, v in model(batch_char_ids(sentences, max_chars), training=False).items()}
    word = np.concatenate([out["word_emb"], out["word_emb"]], -1)
    stack = np.stack([word] + [np.concatenate([out["forward"][k], out["backward"][k]], -1) for k in (0, 1)], axis=2)
    return [stack[row, : len(sentence)] for row, sentence in enumerate(sentences)]


def max_difference(ours: list[np.ndarray], reference: list[np.ndarray]) -> float:
    assert [a.shape for a in ours] == [b.shape for b in reference]
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ours, reference))


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    return write_random_files(tmp_path_factory.mktemp("elmo_small"), SMALL_OPTIONS, seed=1)


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory, small_files):
    """The small files exported through the CLI the Snakemake rule runs."""
    from pipeline.bilm import export

    options_path, weights_path, _ = small_files
    out = tmp_path_factory.mktemp("elmo_small_hub") / "hub"
    assert export.main(["--options", str(options_path), "--weights", str(weights_path), "--out", str(out)]) == 0
    return out


# -- tests ---------------------------------------------------------------------------------------------------------


def test_loaded_files_match_the_numpy_forward_pass_through_the_elmo_signature(small_files, small_hub):
    """The SavedModel's ``tokens`` signature, as the embed stage reads it, against the reference (three layers)."""
    from pipeline.embed import embed_batch, load_embedder

    _, _, weights = small_files
    clipped = {"cell": 0, "projection": 0}
    reference = [reference_layers(SMALL_OPTIONS, weights, sentence, clipped) for sentence in SENTENCES]
    assert clipped["cell"] > 0 and clipped["projection"] > 0, f"the weights never reach the clips: {clipped}"
    layers = embed_batch(load_embedder(str(small_hub)), SENTENCES)
    ours = [layers[row, : len(sentence)] for row, sentence in enumerate(SENTENCES)]
    difference = max_difference(ours, reference)
    print(f"max abs difference to the numpy reference (small options, via the signature): {difference:.2e}")
    assert difference < TOLERANCE
    assert np.all(layers[1, 1:] == 0.0), "positions past a sentence's length must be zero"
    module = json.loads((small_hub / "elmo_module.json").read_text())
    assert module["producer"] == "pipeline.bilm.elmo_files" and module["options"]["sentence_boundaries"] is True


def test_the_other_option_branches_match_the_numpy_forward_pass(tmp_path):
    """tanh, no highway, no projections, no skip connection, no clipping, n_characters 261."""
    from pipeline.bilm.elmo_files import load_elmo_files

    options_path, weights_path, weights = write_random_files(tmp_path, PLAIN_OPTIONS, seed=2)
    model = load_elmo_files(options_path, weights_path)
    assert "CNN_proj/W_proj" not in weights and not any(name.endswith("W_P_0") for name in weights)
    reference = [reference_layers(PLAIN_OPTIONS, weights, s, {"cell": 0, "projection": 0}) for s in SENTENCES]
    difference = max_difference(model_layers(model, SENTENCES, 7), reference)
    print(f"max abs difference to the numpy reference (plain options): {difference:.2e}")
    assert difference < TOLERANCE


def test_a_swapped_convention_would_be_caught(small_files):
    """The comparison can fail: the same files with RNN_0 and RNN_1 swapped differ from the reference."""
    from pipeline.bilm.elmo_files import load_elmo_files

    options_path, weights_path, weights = small_files
    swapped = {name.replace("RNN_0", "RNN_x").replace("RNN_1", "RNN_0").replace("RNN_x", "RNN_1"): value
               for name, value in weights.items()}
    reference = [reference_layers(SMALL_OPTIONS, swapped, s, {"cell": 0, "projection": 0}) for s in SENTENCES]
    model = load_elmo_files(options_path, weights_path)
    assert max_difference(model_layers(model, SENTENCES, 10), reference) > 0.1


def test_our_trained_bilm_round_trips_through_the_two_files(exported_bilm, tmp_path):
    """Trained tiny biLM -> ``--elmo-files`` -> loaded back: the same three layers; and the written files follow the
    layout (the numpy reference over them, without sentence boundaries, agrees too)."""
    from pipeline.bilm import export
    from pipeline.bilm.elmo_files import load_elmo_files
    from pipeline.bilm.pretrain import load_trained_lm

    model_dir = exported_bilm.parent / "model"  # the fixture's pretrain output, next to its SavedModel
    assert export.main(["--bilm", str(model_dir), "--elmo-files", str(tmp_path / "files")]) == 0
    written = json.loads((tmp_path / "files" / "options.json").read_text())
    assert written["char_cnn"]["n_characters"] == 262 and written["sentence_boundaries"] is False
    with h5py.File(tmp_path / "files" / "weights.hdf5", "r") as handle:
        weights = {name: handle[name][...] for name in file_layout(written)}
    lm, options, _ = load_trained_lm(model_dir)
    max_chars = options["max_chars_per_token"]
    loaded = load_elmo_files(tmp_path / "files" / "options.json", tmp_path / "files" / "weights.hdf5")
    ours, back = model_layers(lm.bilm, SENTENCES, max_chars), model_layers(loaded, SENTENCES, max_chars)
    difference = max_difference(back, ours)
    print(f"round trip max abs difference: {difference:.2e}")
    assert difference < 1e-5
    reference = [reference_layers(written, weights, s, {"cell": 0, "projection": 0}, boundaries=False)
                 for s in SENTENCES]
    assert max_difference(ours, reference) < TOLERANCE


def test_an_options_file_that_is_not_json_says_where(tmp_path):
    from pipeline.bilm.elmo_files import ElmoFilesError, read_options

    path = tmp_path / "options.json"
    path.write_text('{"lstm": {"dim": 8,\n  "projection_dim": 8,,\n}}')
    with pytest.raises(ElmoFilesError, match=r"options\.json: not JSON at line 2, column 23"):
        read_options(path)
    path.write_text(json.dumps({"lstm": {"dim": 8}, "char_cnn": {}}))
    with pytest.raises(ElmoFilesError, match="no char_cnn.embedding"):
        read_options(path)


def test_options_this_architecture_cannot_take_are_refused_with_every_reason(tmp_path):
    from pipeline.bilm.elmo_files import ElmoFilesError, read_options

    options = json.loads(json.dumps(SMALL_OPTIONS))
    options["lstm"]["n_layers"], options["char_cnn"]["n_characters"] = 3, 300
    (tmp_path / "options.json").write_text(json.dumps(options))
    with pytest.raises(ElmoFilesError, match=r"n_layers is 3, the ELMo signature needs 2; char_cnn.n_characters is 300"):
        read_options(tmp_path / "options.json")


def test_a_missing_dataset_names_it_and_the_file(small_files, tmp_path):
    from pipeline.bilm.elmo_files import ElmoFilesError, load_elmo_files

    options_path, _, weights = small_files
    missing = "RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0"
    with h5py.File(tmp_path / "weights.hdf5", "w") as handle:
        for name, value in weights.items():
            if name != missing:
                handle.create_dataset(name, data=value)
    with pytest.raises(ElmoFilesError) as error:
        load_elmo_files(options_path, tmp_path / "weights.hdf5")
    assert missing in str(error.value) and str(tmp_path / "weights.hdf5") in str(error.value)


def test_a_shape_that_disagrees_with_the_options_names_both_shapes(small_files, tmp_path):
    from pipeline.bilm.elmo_files import ElmoFilesError, load_elmo_files

    options_path, _, weights = small_files
    name = "RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0"
    with h5py.File(tmp_path / "weights.hdf5", "w") as handle:
        for key, value in weights.items():
            handle.create_dataset(key, data=value[:-1] if key == name else value)
    with pytest.raises(ElmoFilesError, match=rf"'{name}' has shape \[11, 48\] but the options .*options\.json imply "
                                             r"\[12, 48\]"):
        load_elmo_files(options_path, tmp_path / "weights.hdf5")


def test_the_export_command_refuses_bad_files_with_status_2(small_files, tmp_path, capsys):
    """What the Snakemake rule shows: an ``error:`` line naming the dataset and both shapes, and no SavedModel."""
    from pipeline.bilm import export

    options_path, _, weights = small_files
    with h5py.File(tmp_path / "weights.hdf5", "w") as handle:
        for key, value in weights.items():
            handle.create_dataset(key, data=value[:, :-1] if key == "CNN/W_cnn_2" else value)
    code = export.main(["--options", str(options_path), "--weights", str(tmp_path / "weights.hdf5"),
                        "--out", str(tmp_path / "hub")])
    assert code == 2 and not (tmp_path / "hub").exists()
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "'CNN/W_cnn_2' has shape [1, 2, 4, 6]" in error
    assert "imply [1, 3, 4, 6]" in error


def test_original_size_files_run_through_the_embed_stage(tmp_path):
    """elmo_2x4096_512_2048cnn_2xhighway (93.6 M parameters, random weights): export, embed a shard of two sentences,
    1024-wide layers. The weights are small so the layers stay informative rather than saturated."""
    from pipeline.bilm import export
    from pipeline.cache import EMBEDDINGS
    from pipeline.corpus import Sentence, write_conll
    from pipeline.bilm.elmo_files import ORIGINAL_ELMO_OPTIONS
    from pipeline.embed import embed_shard

    sizes = file_layout(ORIGINAL_ELMO_OPTIONS).values()
    assert round(sum(math.prod(shape) for shape in sizes) / 1e6, 1) == ORIGINAL_PARAMETERS_MILLIONS
    options_path, weights_path, weights = write_random_files(tmp_path / "files", ORIGINAL_ELMO_OPTIONS, scale=0.02)
    del weights
    assert export.main(["--options", str(options_path), "--weights", str(weights_path),
                        "--out", str(tmp_path / "hub")]) == 0
    sentences = [Sentence("s1", ["Merkel", "met", "Obama", "in", "Berlin", "."], ["NNP"] * 6, ["B-per"] + ["O"] * 5),
                 Sentence("s2", ["Reuters"], ["NNP"], ["B-org"])]
    write_conll(tmp_path / "shard.conll", sentences)
    provenance = {"embedder_kind": "elmo_files", "corpus_sha256": "test", "settings": "{}"}
    attrs = embed_shard(tmp_path / "shard.conll", str(tmp_path / "hub"), tmp_path / "shard.h5", 8, "float32",
                        provenance)
    assert attrs["width"] == ORIGINAL_WIDTH
    with h5py.File(tmp_path / "shard.h5", "r") as handle:
        layers = handle[EMBEDDINGS][...]
    assert layers.shape == (7, 3, ORIGINAL_WIDTH) and np.all(np.isfinite(layers))
    half = ORIGINAL_WIDTH // 2
    assert np.array_equal(layers[:, 0, :half], layers[:, 0, half:])  # word_emb repeated as ELMo does
    assert all(np.abs(layers[:, k]).max() > 0 for k in range(3))


def test_the_benchmark_extrapolates_to_the_whole_corpus():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import elmo_files as bench

    result = bench.summarise(sentences=10, tokens=200, seconds=4.0, corpus_tokens=1_000, cpu_seconds=2.0, cores=2)
    assert result["sentences_per_s"] == 2.5 and result["tokens_per_s"] == 50.0 and result["cores_busy"] == 0.5
    assert result["corpus_hours_by_sentences"] == pytest.approx(bench.CORPUS_SENTENCES / 2.5 / 3600)
    assert result["corpus_hours_by_tokens"] == pytest.approx(1_000 / 50.0 / 3600)
    assert result["corpus_cpu_hours"] == pytest.approx(bench.CORPUS_SENTENCES * 0.2 / 3600)
    assert result["corpus_hours_on_idle_cores"] == pytest.approx(result["corpus_cpu_hours"] / 2)
    assert "corpus_hours_by_tokens" not in bench.summarise(10, 200, 4.0, None, 2.0, 2)
