"""Configurations, one per model, and ``key=value`` overrides from the command line.

config = get_config("cnn_lstm")
config = apply_overrides(config, ["train.steps=200", "flows.bytes_per_packet=64"])
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import ml_collections

from stfe_jax.configs import cnn, cnn_lstm, lstm, mlp, tiny

MODELS = {"mlp": mlp, "cnn": cnn, "lstm": lstm, "cnn_lstm": cnn_lstm}


class ConfigOverrideError(ValueError):
    """An override names no config field, or its value does not fit the field."""


def get_config(model: str, tiny: bool = False) -> ml_collections.ConfigDict:
    """The configuration of ``model`` ("mlp", "cnn", "lstm", "cnn_lstm").

    With ``tiny=True`` the flows, layers and step count shrink so that the whole
    pipeline runs in seconds on a CPU (for tests and smoke runs).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    if tiny:
        return _tiny_config(model)
    return MODELS[model].get_config()


def _tiny_config(model: str) -> ml_collections.ConfigDict:
    return tiny.get_config(model)


def _parse_value(key: str, text: str, current):
    """``text`` converted to the type of the field's current value."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigOverrideError(f"{key}: expected a boolean, found {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigOverrideError(
                f"{key}: expected an integer, found {text!r}"
            ) from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigOverrideError(
                f"{key}: expected a number, found {text!r}"
            ) from None
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(
                text if "(" in text or "[" in text else f"({text},)"
            )
        except (ValueError, SyntaxError):
            raise ConfigOverrideError(
                f"{key}: expected a sequence like (32, 64) or 32,64, found {text!r}"
            ) from None
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return tuple(value)
    if isinstance(current, str):
        return text
    raise ConfigOverrideError(f"{key}: cannot override a field of type {type(current)}")


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
    """``config`` with each ``section.field=value`` of ``overrides`` applied in place.

    The value is converted to the type of the field it replaces (bool, int, float,
    tuple, str). Raises ``ConfigOverrideError`` naming the key when the field does not
    exist or the value does not fit. Returns ``config`` for chaining.
    """
    for override in overrides:
        if "=" not in override:
            raise ConfigOverrideError(
                f"override {override!r}: expected section.field=value"
            )
        key, text = override.split("=", 1)
        key = key.strip()
        *path, field = key.split(".")
        section = config
        for part in path:
            if part not in section or not isinstance(
                section[part], ml_collections.ConfigDict
            ):
                raise ConfigOverrideError(f"unknown config key {key!r}")
            section = section[part]
        if field not in section or isinstance(
            section[field], ml_collections.ConfigDict
        ):
            raise ConfigOverrideError(f"unknown config key {key!r}")
        section[field] = _parse_value(key, text, section[field])
    return config
