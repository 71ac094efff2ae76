"""Durations in the spec: "500ms", "1s", "1.5s", "15m", "2h", "7d", "1w", or a plain number of
seconds. The one duration grammar of corral: the CLI's --since/--interval options parse with
it too (cli/params.py), and plans print durations back in it.

Pure parsing and formatting; the spec model turns every duration into float seconds once, at
load time.
"""

from __future__ import annotations

import re
from functools import cache

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
DURATION_PATTERN = r"^\d+(\.\d+)?(ms|s|m|h|d|w)$"
DURATION_HINT = 'write a number and a unit: "500ms", "10s", "15m", "2h", "7d", "1w"'


def parse_duration(value: object) -> float:
    """Seconds in a duration.

    >>> parse_duration("500ms"), parse_duration("1.5s"), parse_duration("15m"), parse_duration(2)
    (0.5, 1.5, 900.0, 2.0)
    >>> parse_duration("1w") == 7 * parse_duration("1d")
    True
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a string such as \"500ms\", \"10s\" or \"15m\"")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")


def format_duration(seconds: float) -> str:
    """A duration written back in the spec's grammar, in the largest unit that is exact.

    >>> format_duration(900.0), format_duration(0.25), format_duration(90), format_duration(1.5)
    ('15m', '250ms', '90s', '1.5s')
    >>> format_duration(86400 * 14), format_duration(0)
    ('2w', '0s')
    """
    for unit in ("w", "d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    if seconds >= 1 or seconds == 0:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


@cache
def duration_keys(model: type) -> frozenset[str]:
    """The dotted key paths of `model` (a spec model class) whose values are durations, so a
    plan can print `15m` where the release config holds `900.0`. Walks nested models."""
    keys: set[str] = set()
    for name, field in getattr(model, "model_fields", {}).items():
        key = field.alias or name
        if _is_duration([*field.metadata, field.annotation]):
            keys.add(key)
        for inner in _models_in(field.annotation):
            keys.update(f"{key}.{sub}" for sub in duration_keys(inner))
    return frozenset(keys)


def _is_duration(parts: list[object]) -> bool:
    """Whether these field metadata or annotations carry the duration parser (also inside
    `Duration | None`)."""
    for part in parts:
        if getattr(part, "func", None) is parse_duration:
            return True
        inner = [*getattr(part, "__metadata__", ()), *getattr(part, "__args__", ())]
        if inner and _is_duration(inner):
            return True
    return False


def _models_in(annotation: object) -> list[type]:
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]
