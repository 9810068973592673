"""Benchmarks of the pipeline (one script each; see bench/README.md). Importable so tests can exercise their cores."""
