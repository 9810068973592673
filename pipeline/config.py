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
EXPERIMENTS_SCHEMA_PATH = PROJECT_ROOT / "config" / "experiments.schema.yaml"
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


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The JSON schema of the configuration (or of its experiments section)."""
    return yaml.safe_load(path.read_text())


def validate_config(config: dict, source: str = "<config>", schema: dict | None = None) -> dict:
    """Return a copy of ``config`` with defaults filled in, or raise ConfigError naming the key and the fix.

    ``schema`` defaults to the configuration's; the experiments section passes its own."""
    schema = load_schema() if schema is None else schema
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


# Spellings of null and of the booleans accepted in a --config override (YAML's, plus Python's None/True/False).
_NULLS = {"null", "Null", "NULL", "~", "None"}
_BOOLEANS = {"true": True, "false": False}
_NOT_COERCED = object()


def _types(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _coerce_string(text: str, types: list[str]) -> Any:
    """``text`` as the first of the schema's types it spells (null, boolean, integer, number), else unchanged."""
    stripped = text.strip()
    if "null" in types and stripped in _NULLS:
        return None
    if "string" in types:
        return text
    if "boolean" in types and stripped.lower() in _BOOLEANS:
        return _BOOLEANS[stripped.lower()]
    if "integer" in types or "number" in types:
        try:
            return int(stripped)
        except ValueError:
            pass
    if "number" in types:
        try:
            number = float(stripped)
        except ValueError:
            pass
        else:
            if number == number and abs(number) != float("inf"):  # JSON has no NaN or infinity
                return number
    return _NOT_COERCED


def _describe(types: list[str]) -> str:
    names = {"integer": "an integer", "number": "a number", "boolean": "true or false", "null": "null",
             "string": "a string", "object": "a mapping", "array": "a list"}
    return " or ".join(names.get(t, t) for t in types)


def coerce_overrides(overrides: Any, schema: dict | None = None, key: str = "") -> Any:
    """Command-line overrides converted to the types the schema asks for, before validation.

    Snakemake parses ``--config 'train={"max_epochs": 8}'`` with YAML's BaseLoader, so every value nested in a mapping
    or a list arrives as a string ('8'). Each string is read back as the type its key has in the schema: an integer,
    a number, true/false, or null where the key allows null (``corpus={"path": null}``); strings stay strings where
    the schema allows a string. Keys the schema does not know are left for validation to report. A string that
    spells none of the key's types raises ConfigError naming the key, the value and what it should be.
    """
    schema = load_schema() if schema is None else schema
    types = _types(schema)
    if isinstance(overrides, dict):
        properties = schema.get("properties", {})
        return {name: coerce_overrides(value, properties[name], f"{key}.{name}" if key else name)
                if name in properties else value for name, value in overrides.items()}
    if isinstance(overrides, list) and isinstance(schema.get("items"), dict):
        return [coerce_overrides(item, schema["items"], f"{key}[{index}]") for index, item in enumerate(overrides)]
    if isinstance(overrides, str) and types:
        value = _coerce_string(overrides, types)
        if value is _NOT_COERCED:
            raise ConfigError(f"--config {key}: {overrides!r} is not {_describe(types)}")
        return value
    return overrides
