"""Durations in the spec: "500ms", "1s", "1.5s", "15m", "2h", or a plain number of seconds.

Pure parsing; the spec model turns every duration into float seconds once, at load time.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
DURATION_PATTERN = r"^\d+(\.\d+)?(ms|s|m|h|d)$"


def parse_duration(value: object) -> float:
    """Seconds in a duration.

    >>> parse_duration("500ms"), parse_duration("1.5s"), parse_duration("15m"), parse_duration(2)
    (0.5, 1.5, 900.0, 2.0)
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
    raise ValueError(
        f"{value!r} is not a duration; write a number and a unit: "
        "\"500ms\", \"10s\", \"15m\", \"1h\""
    )
