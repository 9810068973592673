"""Load and validate the pipeline configuration outside Snakemake (CLI, tests, benchmarks).

Snakemake validates the same file with the same schema (``config/schema.yaml``); keeping one schema means a bad key
fails the same way whichever entry point a user starts from.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "config" / "schema.yaml"
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "config.yaml"


class ConfigError(ValueError):
    """A configuration file or override that does not satisfy the schema."""


def _fill_defaults(instance: dict, schema: dict) -> None:
    """Insert schema defaults for missing keys, recursively (jsonschema validates but never fills)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def load_schema() -> dict:
    """The JSON schema of the configuration."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: dict, source: str = "<config>") -> dict:
    """Return a copy of ``config`` with defaults filled in, or raise ConfigError naming the key and the fix."""
    schema = load_schema()
    filled = copy.deepcopy(config or {})
    _fill_defaults(filled, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"  {key}: {err.message}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(lines))
    return filled


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Read a YAML config (default: config/config.yaml), apply ``overrides`` (nested dict) and validate."""
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return validate_config(raw, str(path))


def settings_json(settings: dict[str, Any]) -> str:
    """Canonical JSON of a settings dict: stable across runs, so it can be hashed and compared."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
