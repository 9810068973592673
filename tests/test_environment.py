"""Packaging: environment.yml installs this project (so conda users get the same dependencies as pyproject.toml)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent


def test_environment_yml_pins_python_311_and_installs_this_project_with_pip():
    environment = yaml.safe_load((PROJECT / "environment.yml").read_text())
    dependencies = environment["dependencies"]
    assert "python=3.11" in dependencies
    pip_section = next(d["pip"] for d in dependencies if isinstance(d, dict))
    assert any(line.startswith("-e .") for line in pip_section)


def test_pyproject_requires_every_chosen_dependency():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    chosen = {"tensorflow", "tensorflow-hub", "h5py", "numpy", "pandas", "scikit-learn", "dask", "seqeval",
              "snakemake"}
    assert chosen <= names
    assert project["requires-python"].startswith(">=3.11")


def test_config_file_satisfies_its_schema():
    from pipeline.config import load_config

    config = load_config(PROJECT / "config" / "config.yaml")
    assert config["embedder"]["kind"] == "bilm"


def test_an_unknown_config_key_fails_with_its_name(tmp_path):
    import pytest

    from pipeline.config import ConfigError, load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  unitz: 5\n")
    with pytest.raises(ConfigError, match="unitz"):
        load_config(bad)
