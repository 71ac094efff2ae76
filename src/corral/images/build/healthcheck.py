"""An image's healthcheck: the spec key and Dockerfile HEALTHCHECK, as Docker's config object.

Parses `HEALTHCHECK [--interval= --timeout= --start-period= --retries=] CMD …|NONE`, writes
the `Healthcheck` object of the image config (durations in nanoseconds, as Docker does) and
reads it back into an ImageHealthcheck record. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from corral.ports.records import ImageHealthcheck
from corral.spec.model import ImageHealthcheckSpec

_NS = 1_000_000_000
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_FLAGS = {"interval": "interval", "timeout": "timeout", "start-period": "start_grace",
          "retries": "retries"}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration, the syntax of Docker's --interval and friends.

    >>> parse_go_duration("1m30s"), parse_go_duration("500ms"), parse_go_duration("0")
    (90.0, 0.5, 0.0)
    """
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _GO_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration (write 30s, 1m30s or 500ms)")
    return total


def parse_instruction(args: str) -> ImageHealthcheckSpec:
    """The healthcheck of a Dockerfile `HEALTHCHECK …` line (`args` after the keyword)."""
    rest = args.strip()
    values: dict[str, Any] = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, has_value, value = flag[2:].partition("=")
        if name not in _FLAGS or not has_value:
            raise ValueError(f"{flag!r}: use --interval=, --timeout=, --start-period= or "
                             "--retries=")
        if name == "retries":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"--retries={value}: use a whole number of at least 1")
            values["retries"] = int(value)
        else:
            values[_FLAGS[name]] = parse_go_duration(value)
        rest = rest.lstrip()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() == "NONE":
        if values or command.strip():
            raise ValueError("HEALTHCHECK NONE takes no flags and no command")
        return ImageHealthcheckSpec(command=("NONE",))
    if keyword.upper() != "CMD" or not command.strip():
        raise ValueError("write HEALTHCHECK [flags] CMD command, or HEALTHCHECK NONE")
    return ImageHealthcheckSpec.model_validate({**values, "command": _command(command)})


def _command(text: str) -> tuple[str, ...] | str:
    text = text.strip()
    if not text.startswith("["):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text  # as Docker does: a line that is not JSON is the shell form
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError("the exec form must be a non-empty JSON array of strings")
    return tuple(value)


def docker_healthcheck(spec: ImageHealthcheckSpec) -> dict[str, Any]:
    """The `Healthcheck` object of an OCI/Docker image config."""
    if spec.command == ("NONE",):
        return {"Test": ["NONE"]}
    test = ["CMD-SHELL", spec.command] if isinstance(spec.command, str) \
        else ["CMD", *spec.command]
    found: dict[str, Any] = {"Test": test, "Interval": round(spec.interval * _NS),
                             "Timeout": round(spec.timeout * _NS)}
    if spec.start_grace:
        found["StartPeriod"] = round(spec.start_grace * _NS)
    found["Retries"] = spec.retries
    return found


def read_healthcheck(document: object) -> ImageHealthcheck | None:
    """The ImageHealthcheck in a config's `Healthcheck` object (None when absent or bad)."""
    if not isinstance(document, dict):
        return None
    test = document.get("Test")
    if not isinstance(test, list) or not test or not all(isinstance(t, str) for t in test):
        return None

    def seconds(key: str) -> float:
        value = document.get(key)
        return value / _NS if isinstance(value, int) and value > 0 else 0.0

    retries = document.get("Retries")
    return ImageHealthcheck(test=tuple(test), interval=seconds("Interval"),
                            timeout=seconds("Timeout"), start_period=seconds("StartPeriod"),
                            retries=retries if isinstance(retries, int) and retries > 0 else 0)
