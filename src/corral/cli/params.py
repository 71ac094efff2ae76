"""Option types shared by the commands: durations in the spec's one grammar, release
numbers, positive counts, and the "did you mean" check of service names.

Parsing only: a bad value is a usage error (exit 2) naming the option and the accepted forms,
never a traceback. Durations parse with spec/duration.py, so `--since 1w`, `--interval 5s`
and the spec's `interval = "5s"` mean the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

from corral.errors import NotFound
from corral.spec.duration import DURATION_HINT, parse_duration
from corral.spec.locate import did_you_mean

if TYPE_CHECKING:  # click >= 8.2 types ParamType by its value; older clicks cannot subscript
    _FloatParam = click.ParamType[float, Any]
    _IntParam = click.ParamType[int, Any]
else:
    _FloatParam = _IntParam = click.ParamType


class DurationType(_FloatParam):
    """Seconds from "500ms", "5s", "15m", "2h", "7d", "1w" (or a plain number of seconds)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            text = str(value).strip()
            return parse_duration(float(text) if _is_number(text) else text)
        except ValueError:
            self.fail(f"{value!r} is not a duration; {DURATION_HINT}", param, ctx)


class ReleaseType(_IntParam):
    """A release number from "v7" or "7"."""

    name = "vN"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        match = re.fullmatch(r"v?(\d+)", str(value).strip())
        if not match or int(match.group(1)) < 1:
            self.fail(f"{value!r} is not a release; write a release number such as v3 "
                      "(see `corral releases SERVICE`)", param, ctx)
        return int(match.group(1))


DURATION = DurationType()
RELEASE = ReleaseType()
POSITIVE = click.IntRange(min=1)


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)?", text) is not None


def check_service(service: str | None, known: Iterable[str]) -> None:
    """Raise NotFound for a service that neither the spec nor the store knows, with the
    closest names as the hint (a typo must not look like a service without logs)."""
    names = set(known)
    if service is not None and service not in names:
        raise NotFound(f"no service {service!r} in the spec or the store",
                       hint=did_you_mean(service, names))
