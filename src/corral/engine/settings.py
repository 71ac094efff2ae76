"""Operator settings read from the process environment (CORRAL_DRIFT_PERIOD and the like):
one reading and one refusal for all of them. Nothing here decides what a setting does."""

from __future__ import annotations

import os

from corral.errors import CorralError


def seconds_from_env(name: str, default: float) -> float:
    """The seconds set in `name`, else `default`; anything but a number above 0 is refused
    with what to write (a traceback is no answer to a typo)."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise CorralError(f"{name}={value!r} is not a number of seconds above 0",
                          hint=f"e.g. {name}=2, or unset it for the default ({default:g} s)")
    return seconds
