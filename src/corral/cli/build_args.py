"""`--build-arg NAME=VALUE` of `corral build`: parsed into a dict, as docker build does.

`NAME` alone takes the value from the environment and is dropped when it is unset.
Parsing only; the engine decides what the values do.
"""

from __future__ import annotations

import os
import re

from corral.errors import SpecError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_build_args(values: tuple[str, ...] | list[str],
                     environ: dict[str, str] | None = None) -> dict[str, str]:
    """{NAME: VALUE} of repeated --build-arg options; a later one wins.

    >>> parse_build_args(["A=1", "B=x=y", "A=2", "HOME_X"], {"HOME_X": "h"})
    {'A': '2', 'B': 'x=y', 'HOME_X': 'h'}
    """
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for value in values:
        name, has_value, given = value.partition("=")
        if not _NAME.fullmatch(name):
            raise SpecError(f"--build-arg {value!r}: {name!r} is not an ARG name",
                            hint="write --build-arg NAME=VALUE")
        if has_value:
            found[name] = given
        elif name in env:
            found[name] = env[name]
    return found
