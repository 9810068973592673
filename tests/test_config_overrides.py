"""Command-line overrides (``snakemake --config``) read back as the schema's types before validation."""
from __future__ import annotations

import pytest
from snakemake.cli import parse_config

from pipeline.config import ConfigError, coerce_overrides, load_config, validate_config


def overrides(*entries: str) -> dict:
    """What Snakemake 9 makes of ``--config ENTRY ...`` (nested values arrive as strings), coerced."""
    return coerce_overrides(parse_config(list(entries)))


def test_snakemake_hands_nested_values_over_as_strings():
    # The reason for the coercion: without it this fails validation with "'0' is not of type 'integer'".
    assert parse_config(['train={"word_embedding_dim": 0}']) == {"train": {"word_embedding_dim": "0"}}


def test_the_readme_override_becomes_typed_and_validates():
    parsed = overrides('train={"word_embedding_dim": 0, "learning_rate": 0.001, "dropout": 0.3, "max_epochs": 8}')
    assert parsed == {"train": {"word_embedding_dim": 0, "learning_rate": 0.001, "dropout": 0.3, "max_epochs": 8}}
    assert type(parsed["train"]["word_embedding_dim"]) is int and type(parsed["train"]["dropout"]) is float
    config = load_config(overrides=parsed)
    assert config["train"]["max_epochs"] == 8 and config["train"]["word_embedding_dim"] == 0


def test_booleans_nulls_lists_and_exponents():
    parsed = overrides('train={"bucket_by_length": false, "max_train_sentences": null, "learning_rate": 1e-3}',
                       'bilm={"filters": [[1, 4], [2, 8]], "unlabelled_text": ["a.txt"]}',
                       'corpus={"path": null, "encoding": "utf-8"}')
    assert parsed["train"] == {"bucket_by_length": False, "max_train_sentences": None, "learning_rate": 0.001}
    assert parsed["bilm"] == {"filters": [[1, 4], [2, 8]], "unlabelled_text": ["a.txt"]}
    assert parsed["corpus"] == {"path": None, "encoding": "utf-8"}


def test_strings_stay_strings_where_the_schema_allows_them():
    # Digits in a file name or an encoding stay text; a top-level value Snakemake already typed is kept.
    parsed = overrides('corpus={"path": "2018.csv", "encoding": "latin-1"}', "task=pos")
    assert parsed == {"corpus": {"path": "2018.csv", "encoding": "latin-1"}, "task": "pos"}


@pytest.mark.parametrize("entry, message", [
    ('train={"max_epochs": "eight"}', r"--config train.max_epochs: 'eight' is not an integer"),
    ('train={"dropout": "half"}', r"--config train.dropout: 'half' is not a number"),
    ('train={"bucket_by_length": "maybe"}', r"--config train.bucket_by_length: 'maybe' is not true or false"),
    ('train={"max_vectors": "all"}', r"--config train.max_vectors: 'all' is not an integer or null"),
    ('bilm={"filters": [[1, "x"]]}', r"--config bilm.filters\[0\]\[1\]: 'x' is not an integer"),
    ('train={"max_epochs": 1.5}', r"--config train.max_epochs: '1.5' is not an integer"),
])
def test_a_value_of_the_wrong_type_names_the_key_and_the_type(entry, message):
    with pytest.raises(ConfigError, match=message):
        overrides(entry)


def test_unknown_keys_are_left_for_validation_to_name():
    parsed = overrides('train={"unitz": 5}')
    with pytest.raises(ConfigError, match="unitz"):
        validate_config({"train": parsed["train"]})
