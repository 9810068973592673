"""Tagging new text with a trained run: raw text in, entity spans with exact character offsets out."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.decode import is_valid_bio

from pipeline.batching import LENGTH_ROUNDING
from pipeline.tagger import (MAX_BATCH_TOKENS, Entity, Tagger, TaggerError, bounded_batches, entities_from_tags,
                             entity_spans, load, resolve_handle, tokens_from_words)
from pipeline.tokenize import Token

from conftest import FILLER, PLACES, TINY_TRAIN

NEWS = ("Mr. Smith said the talks were held in London on Monday. Reuters reported that officials met "
        "Mr. Obama in Paris on Friday.")
LONG_SENTENCE_TOKENS = 500


@pytest.fixture(scope="module")
def run_dir(trained_run) -> Path:
    return trained_run


@pytest.fixture(scope="module")
def tagger(run_dir):
    return load(run_dir)


# A stand-in embedder and model with known behaviour, so that spans, offsets, confidences and batching are checked
# against exact expectations (the tiny trained model is too weak to promise any particular entity).
STUB_TAGS = ["O", "B-name", "I-name", "B-num", "I-num"]
STUB_WIDTH = 4
START_PROBABILITY, CONTINUE_PROBABILITY, OUTSIDE_PROBABILITY = 0.9, 0.6, 0.8


class ShapeEmbedder:
    """An ELMo-signature stand-in: layer 0 flags capitalised tokens (feature 0) and numbers (feature 1)."""

    def __call__(self, tokens, sequence_len):
        import tensorflow as tf

        words = tokens.numpy()
        flags = np.zeros(words.shape + (STUB_WIDTH // 2,), np.float32)
        for (row, column), word in np.ndenumerate(words):
            first = word.decode()[:1]
            flags[row, column, 0], flags[row, column, 1] = first.isupper(), first.isdigit()
        lstm = tf.zeros(words.shape + (STUB_WIDTH,))
        return {"word_emb": tf.constant(flags), "lstm_outputs1": lstm, "lstm_outputs2": lstm}


class ShapeModel:
    """A model stand-in: a capitalised token is a name, a number a num, and a run of them one entity."""

    def __init__(self):
        self.calls: list[tuple[tuple[int, ...], np.dtype, np.dtype]] = []

    def predict_on_batch(self, inputs):
        layers, lengths = inputs["layers"], inputs["lengths"]
        self.calls.append((layers.shape, layers.dtype, lengths.dtype))
        flags = layers[:, :, 0, :2] != 0  # [b, t, (capitalised, number)]
        previous = np.zeros_like(flags)
        previous[:, 1:] = flags[:, :-1]
        probabilities = np.broadcast_to(spread(STUB_TAGS.index("O"), OUTSIDE_PROBABILITY),
                                        flags.shape[:2] + (len(STUB_TAGS),)).copy()
        for flag, kind in ((1, "num"), (0, "name")):  # a capitalised flag wins over a number flag, as a name
            starts, continues = flags[..., flag] & ~previous[..., flag], flags[..., flag] & previous[..., flag]
            probabilities[starts] = spread(STUB_TAGS.index(f"B-{kind}"), START_PROBABILITY)
            probabilities[continues] = spread(STUB_TAGS.index(f"I-{kind}"), CONTINUE_PROBABILITY)
        return probabilities


def spread(index: int, probability: float) -> np.ndarray:
    """``probability`` on ``index``, the rest shared equally by the other tags."""
    row = np.full(len(STUB_TAGS), (1 - probability) / (len(STUB_TAGS) - 1))
    row[index] = probability
    return row


def stub_tagger(batch_size: int = 64) -> Tagger:
    """A Tagger around the stand-ins (tests of test_cli use it too)."""
    return Tagger(ShapeModel(), ShapeEmbedder(), STUB_TAGS, {"width": STUB_WIDTH, "dtype": "float32"},
                  Path("stub-run"), batch_size=batch_size)


def copy_run(run_dir: Path, destination: Path, **embedder_changes) -> Path:
    """A copy of the run whose embedder.json has ``embedder_changes`` applied."""
    shutil.copytree(run_dir, destination, ignore=shutil.ignore_patterns("checkpoint"))
    record = json.loads((destination / "embedder.json").read_text())
    (destination / "embedder.json").write_text(json.dumps(record | embedder_changes))
    return destination


# --- spans and offsets (pure functions) ------------------------------------------------------------------------------


def test_entity_spans_follow_bio_and_a_stray_inside_tag_starts_an_entity():
    tags = ["B-per", "I-per", "O", "I-geo", "B-org", "B-org", "I-org", "I-tim"]
    assert entity_spans(tags) == [("per", 0, 2), ("geo", 3, 4), ("org", 4, 5), ("org", 5, 7), ("tim", 7, 8)]
    assert entity_spans([]) == [] and entity_spans(["O", "O"]) == []


def test_entity_offsets_slice_the_text_and_confidence_is_the_mean_chosen_probability():
    text = "Mr.  Smith went to New York"
    tokens = [Token("Mr.", 0, 3), Token("Smith", 5, 10), Token("went", 11, 15), Token("to", 16, 18),
              Token("New", 19, 22), Token("York", 23, 27)]
    tags = ["B-per", "I-per", "O", "O", "B-geo", "I-geo"]
    entities = entities_from_tags(text, tokens, tags, [0.9, 0.7, 1.0, 1.0, 0.6, 0.4])
    assert entities == [Entity("Mr.  Smith", "per", 0, 10, 0, 2, pytest.approx(0.8)),
                        Entity("New York", "geo", 19, 27, 4, 6, pytest.approx(0.5))]
    assert all(text[e.start : e.end] == e.text for e in entities)


def test_pretokenized_words_become_a_space_joined_text_with_exact_offsets():
    text, tokens = tokens_from_words(["Mr.", "Smith", "visited", "U.S.", "."])
    assert text == "Mr. Smith visited U.S. ."
    assert [text[t.start : t.end] for t in tokens] == ["Mr.", "Smith", "visited", "U.S.", "."]
    with pytest.raises(TaggerError, match="empty"):
        tokens_from_words(["Mr.", ""])


def test_batches_are_bucketed_bounded_in_tokens_and_never_cut_a_sentence():
    lengths = [3, 900, 5, 4, MAX_BATCH_TOKENS * 2, 7]
    batches = bounded_batches(lengths, batch_size=4)
    assert sorted(int(i) for b in batches for i in b) == list(range(len(lengths)))
    assert [4] in [b.tolist() for b in batches]  # the longest sentence alone, whole
    assert all(len(b) <= 4 for b in batches)


# --- the tagger's plumbing, with the stand-ins ---------------------------------------------------------------------


def test_raw_text_becomes_entities_with_offsets_into_the_input_and_mean_confidence():
    text = "Yesterday  Mr. Smith met Angela Merkel in Paris on 12 May.\nIt rained."
    sentences = stub_tagger().tag([text])
    assert [s.text for s in sentences] == ["Yesterday  Mr. Smith met Angela Merkel in Paris on 12 May.", "It rained."]
    entities = sentences[0].entities
    assert [(e.text, e.type) for e in entities] == [("Yesterday  Mr. Smith", "name"), ("Angela Merkel", "name"),
                                                    ("Paris", "name"), ("12", "num"), ("May", "name")]
    assert entities[0].confidence == pytest.approx((START_PROBABILITY + 2 * CONTINUE_PROBABILITY) / 3)
    assert entities[1].confidence == pytest.approx((START_PROBABILITY + CONTINUE_PROBABILITY) / 2)
    assert entities[2].confidence == pytest.approx(START_PROBABILITY)
    assert (entities[1].token_start, entities[1].token_end) == (4, 6)
    for sentence in sentences:
        for entity in sentence.entities:
            assert sentence.text[entity.start : entity.end] == entity.text
            assert text[sentence.offset + entity.start : sentence.offset + entity.end] == entity.text
    assert sentences[1].offset == text.index("It rained") and [e.text for e in sentences[1].entities] == ["It"]


def test_sentences_are_batched_by_length_padded_to_the_rounding_and_returned_in_input_order():
    tagger = stub_tagger(batch_size=2)
    texts = ["A b c d e f g h i j k l m n o p q r s t u v w x y z", "Paris", "x Kenya y", "Obama met Annan"]
    together = tagger.tag(texts)
    alone = [tagger.tag([t])[0] for t in texts]
    assert [s.tags for s in together] == [s.tags for s in alone]
    calls = tagger.model.calls[: len(tagger.model.calls) - len(texts)]
    assert len(calls) == 2  # 4 sentences, 2 per batch
    assert all(shape[1] % LENGTH_ROUNDING == 0 and layers == np.float32 and lengths == np.int32
               for shape, layers, lengths in calls)
    assert sorted(shape[1] for shape, _, _ in calls) == [LENGTH_ROUNDING, 4 * LENGTH_ROUNDING]  # short ones together


def test_tagger_options_change_without_reloading():
    tagger = stub_tagger()
    other = tagger.with_options(batch_size=1, decode="argmax")
    assert other.model is tagger.model and (other.batch_size, other.decode) == (1, "argmax")
    assert tagger.entity_types == ["name", "num"]
    with pytest.raises(TaggerError, match="at least 1"):
        tagger.with_options(batch_size=0)


# --- the trained run ----------------------------------------------------------------------------------------------


def test_raw_text_round_trips_to_entities_whose_offsets_slice_back(tagger):
    sentences = tagger.tag([NEWS])
    assert len(sentences) == 2
    for sentence in sentences:
        assert sentence.text_index == 0 and NEWS[sentence.offset :].startswith(sentence.text)
        assert len(sentence.tags) == len(sentence.tokens) and set(sentence.tags) <= set(tagger.tags)
        assert all(sentence.text[t.start : t.end] == t.text for t in sentence.tokens)
        assert is_valid_bio(sentence.tags)  # bio_viterbi is the default
        assert [(e.type, e.token_start, e.token_end) for e in sentence.entities] == entity_spans(sentence.tags)
        for entity in sentence.entities:
            assert sentence.text[entity.start : entity.end] == entity.text
            assert NEWS[sentence.offset + entity.start : sentence.offset + entity.end] == entity.text
            assert 0.0 < entity.confidence <= 1.0


def test_several_texts_keep_their_index_and_sentences_never_cross_texts(tagger):
    texts = ["Mr. Smith went to Paris", "", "Hamas said talks were held in Gaza. Officials met in Kenya."]
    sentences = tagger.tag(texts)
    assert [s.text_index for s in sentences] == [0, 2, 2]
    assert [s.text for s in sentences] == ["Mr. Smith went to Paris", "Hamas said talks were held in Gaza.",
                                           "Officials met in Kenya."]


def test_the_models_tags_do_not_depend_on_the_padding_of_the_batch(tagger):
    texts = ["Mr. Smith said talks were held in London on Monday .", "NATO met in Iraq .",
             "the officials said " * 6 + "Mr. Putin in Belgrade ."]
    together = tagger.tag(texts)
    one_per_batch = tagger.with_options(batch_size=1).tag(texts)
    assert [s.tags for s in together] == [s.tags for s in one_per_batch]


def test_a_500_token_sentence_is_tagged_whole(tagger):
    words = [(FILLER + PLACES)[i % len(FILLER + PLACES)] for i in range(LONG_SENTENCE_TOKENS)]
    [sentence] = tagger.tag([" ".join(words)])
    assert sentence.words == words and len(sentence.tags) == LONG_SENTENCE_TOKENS


def test_tokens_longer_than_the_embedders_character_limit_are_tagged(tagger):
    long_word = "Supercalifragilistic" * 5
    [sentence] = tagger.tag([f"Mr. {long_word} went to Paris"])
    assert sentence.words[1] == long_word and len(sentence.tags) == 5


def test_empty_and_whitespace_only_input_gives_nothing(tagger):
    assert tagger.tag([]) == []
    assert tagger.tag(["", "  \n\t "]) == []
    assert list(tagger.tag_stream(["\n", "   \n"])) == []
    [empty] = tagger.tag_tokens([[]])
    assert empty.tags == [] and empty.entities == []


def test_a_single_string_is_refused_rather_than_tagged_character_by_character(tagger):
    with pytest.raises(TypeError, match="list"):
        tagger.tag("Mr. Smith went to Paris")


def test_pretokenized_sentences_are_tagged_as_given(tagger):
    words = ["Mr.", "Smith", "said", "talks", "were", "held", "in", "London", "."]
    [tagged] = tagger.tag_tokens([words])
    assert tagged.words == words and tagged.text == " ".join(words)
    assert tagged.tags == tagger.tag([" ".join(words)])[0].tags  # same tokens, same tags
    assert all(tagged.text[e.start : e.end] == e.text for e in tagged.entities)


def test_streaming_reads_lazily_and_matches_tagging_the_whole_text(tagger):
    paragraphs = ["Mr. Smith said talks were held in London on Monday.", "NATO met in Iraq. Reuters said so.",
                  "Officials met Mr. Obama in Paris."] * 3
    lines = [line for p in paragraphs for line in (p + "\n", "\n")]
    consumed = []

    def reading(source):
        for line in source:
            consumed.append(line)
            yield line

    stream = tagger.tag_stream(reading(lines), chunk_sentences=2)
    first = next(stream)
    assert len(consumed) < len(lines)  # only the first chunk has been read
    streamed = [first, *stream]
    whole = tagger.tag(paragraphs)
    assert [(s.text, s.tags) for s in streamed] == [(s.text, s.tags) for s in whole]


def test_streaming_pretokenized_conll_uses_the_first_column(tagger):
    lines = ["Mr.\tNNP\n", "Smith\tNNP\n", "\n", "\n", "NATO\n", "met\n", "\n"]
    sentences = list(tagger.tag_stream(lines, pretokenized=True))
    assert [s.words for s in sentences] == [["Mr.", "Smith"], ["NATO", "met"]]


def test_argmax_decoding_is_available_and_unknown_methods_are_refused(tagger, run_dir):
    [sentence] = tagger.with_options(decode="argmax").tag(["Mr. Smith went to Paris on Monday."])
    assert len(sentence.tags) == len(sentence.tokens)
    with pytest.raises(TaggerError, match="bio_viterbi"):
        load(run_dir, decode="beam")


# --- a run that cannot be used fails at once, saying what to rerun ------------------------------------------------


def test_a_missing_run_directory_says_to_train(tmp_path):
    with pytest.raises(TaggerError, match="snakemake --cores all"):
        load(tmp_path / "no-run")


def test_a_run_without_tags_json_says_to_train(run_dir, tmp_path):
    broken = copy_run(run_dir, tmp_path / "run")
    (broken / "tags.json").unlink()
    with pytest.raises(TaggerError, match=r"tags\.json is missing.*snakemake --cores all"):
        load(broken)


def test_a_missing_embedder_says_to_rerun_the_export(run_dir, tmp_path):
    broken = copy_run(run_dir, tmp_path / "run", embedder_handle=str(tmp_path / "gone" / "hub"))
    with pytest.raises(TaggerError, match="export_bilm"):
        load(broken)


def test_an_embedder_of_another_width_is_refused(run_dir, tmp_path):
    other = tmp_path / "other-hub"
    save_constant_embedder(other, width=6)
    broken = copy_run(run_dir, tmp_path / "run", embedder_handle=str(other))
    with pytest.raises(TaggerError, match=r"width 6.*export_bilm"):
        load(broken)


def test_an_embedder_json_that_disagrees_with_the_model_is_refused(run_dir, tmp_path):
    width = json.loads((run_dir / "embedder.json").read_text())["width"]
    broken = copy_run(run_dir, tmp_path / "run", width=width + 2)
    with pytest.raises(TaggerError, match="width"):
        load(broken)


def test_relative_embedder_handles_resolve_from_the_current_then_the_project_directory(exported_bilm, monkeypatch):
    monkeypatch.chdir(exported_bilm.parent)
    assert resolve_handle(exported_bilm.name) == exported_bilm.name
    assert Path(resolve_handle("pipeline")) == Path(__file__).resolve().parent.parent / "pipeline"
    assert resolve_handle("https://tfhub.dev/google/elmo/3") == "https://tfhub.dev/google/elmo/3"


def save_constant_embedder(path: Path, width: int) -> None:
    """A SavedModel with the ELMo ``tokens`` signature whose LSTM layers are ``width`` wide (all zeros)."""
    import tensorflow as tf

    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens"),
                                      tf.TensorSpec([None], tf.int32, name="sequence_len")])
        def tokens(self, tokens, sequence_len):
            shape = tf.shape(tokens)
            half = tf.zeros(tf.concat([shape, [width // 2]], 0))
            full = tf.zeros(tf.concat([shape, [width]], 0))
            return {"word_emb": half, "lstm_outputs1": full, "lstm_outputs2": full}

    module = Constant()
    tf.saved_model.save(module, str(path), signatures={"tokens": module.tokens})


def peak_memory_growth(consume) -> int:
    """Bytes by which memory peaked above its level at the start while ``consume()`` ran.

    Linux: the process's resident high-water mark, reset through /proc/self/clear_refs, so the count costs nothing
    and includes native buffers. Elsewhere: tracemalloc, which sees Python allocations only and slows them about
    fourfold.
    """
    import tracemalloc

    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current resident size
        baseline = _proc_status_kb("VmRSS")
    except OSError:
        tracemalloc.start()
        consume()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak
    consume()
    return (_proc_status_kb("VmHWM") - baseline) * 1024


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def test_a_10_mb_input_is_streamed_with_bounded_memory():
    clause = "Mr. Smith flew from London to Paris on Monday with 3 officials of NATO"
    line = " ; ".join([clause] * 12) + " .\n"  # long sentences: 10 MB in ~12,000 sentences keeps the test fast
    total_lines = (10 * 1024 * 1024) // len(line) + 1
    consumed = {"lines": 0}

    def ten_megabytes():
        for _ in range(total_lines):
            consumed["lines"] += 1
            yield line

    tagger = stub_tagger(batch_size=256)
    stream = tagger.tag_stream(ten_megabytes(), chunk_sentences=512)
    first = next(stream)
    assert first.entities and consumed["lines"] < total_lines  # output starts before the input is read whole
    # Memory is measured over the last 8 MB, once the first chunks have warmed the allocators: a tagger that kept
    # what it read would hold those 8 MB of text with their ~1,400,000 tokens and tags, far over the bound, by the end.
    count = 1 + sum(1 for _ in itertools.islice(stream, int(total_lines * 0.2) - 1))
    rest = {"count": 0}

    def tag_the_rest() -> None:
        rest["count"] = sum(1 for _ in stream)

    growth = peak_memory_growth(tag_the_rest)
    print(f"peak memory growth over the last 8 MB: {growth / 2**20:.1f} MiB")
    assert count + rest["count"] == total_lines
    assert growth < 64 * 1024 * 1024  # one chunk in flight, not the stream read so far


def test_inference_threads_are_set_before_tensorflow_starts_and_left_alone_after():
    """One thread per op for tagging, set in a fresh process; once TensorFlow has run, the call changes nothing."""
    import subprocess
    import sys

    script = (
        "from pipeline.tagger import use_inference_threads\n"
        "import tensorflow as tf\n"
        "first = use_inference_threads(3)\n"
        "threads = (tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
        "tf.constant(1.0) + 1.0\n"
        "print(first, threads, use_inference_threads(5), tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "True (1, 3) False 3"
