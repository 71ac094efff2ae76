"""Sizes in the spec: "256M", "1.5G", "512k", "1T" or a plain number of bytes (binary units,
as Docker's and Nomad's memory flags read them). The one size grammar of corral.

Pure parsing and formatting; the spec model turns every size into an int of bytes once.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
SIZE_PATTERN = r"^\d+(\.\d+)?\s*([kKmMgGtT](i?[bB])?|[bB])?$"
SIZE_HINT = 'write a number and a unit: "512k", "256M", "1.5G", "1T"'


def parse_size(value: object) -> int:
    """Bytes in a size.

    >>> parse_size("256M"), parse_size("1.5G"), parse_size("512k"), parse_size(4096)
    (268435456, 1610612736, 524288, 4096)
    >>> parse_size("64MiB") == parse_size("64m") == 64 << 20
    True
    """
    if isinstance(value, bool):
        raise ValueError(f"a size is a string such as \"256M\"; {SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    raise ValueError(f"{value!r} is not a size; {SIZE_HINT}")


def format_size(size: float) -> str:
    """A byte count the way a human reads it, in binary units.

    >>> format_size(268435456), format_size(1610612736), format_size(512), format_size(1536)
    ('256M', '1.5G', '512B', '1.5K')
    """
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if abs(size) >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + unit
    return f"{int(size)}B"
