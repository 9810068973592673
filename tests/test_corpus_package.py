"""The corpus package's layout: one reader a format behind one interface, and no module importing in a circle."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.corpus as corpus
from pipeline.config import PROJECT_ROOT
from pipeline.corpus import ConllReader, CorpusReader, KaggleCsvReader, reader_for

from conftest import write_tiny_corpus

PACKAGE = PROJECT_ROOT / "pipeline" / "corpus"


def corpus_imports(module: Path) -> set[str]:
    """The modules of the corpus package that a module imports (at any depth of its code); the package is
    ``__init__``."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {"__init__" if name == "pipeline.corpus" else name.removeprefix("pipeline.corpus.")
            for name in names if name == "pipeline.corpus" or name.startswith("pipeline.corpus.")}


def test_no_module_of_the_package_imports_in_a_circle():
    graph = {path.stem: corpus_imports(path) for path in PACKAGE.glob("*.py")}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import circle: {' -> '.join(trail + (name,))}"
        if name not in done:
            for imported in graph.get(name, ()):
                visit(imported, trail + (name,))
            done.add(name)

    for name in graph:
        visit(name, ())


@pytest.mark.parametrize("fmt, reader", [("kaggle_csv", KaggleCsvReader), ("conll", ConllReader), (None, KaggleCsvReader)])
def test_each_format_has_its_reader_behind_one_interface(fmt, reader):
    cfg = {"format": fmt, "path": None, "encoding": "utf-8", "files": {}, "tag_column": -1, "pos_column": None}
    chosen: CorpusReader = reader_for(cfg)
    assert isinstance(chosen, reader) and callable(chosen.read)


def test_the_public_names_are_importable_from_the_package():
    assert all(hasattr(corpus, name) for name in corpus.__all__)


def test_python_dash_m_runs_the_stage(tmp_path):
    path = write_tiny_corpus(tmp_path / "ner_dataset.csv")
    settings = json.dumps({"path": str(path), "shard_size": 16})
    result = subprocess.run([sys.executable, "-m", "pipeline.corpus", "--settings", settings, "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert sum(meta["sizes"].values()) == 40 and (tmp_path / "out" / "shards" / "train-0000.conll").is_file()
