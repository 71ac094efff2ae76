"""Which environment a command acts on: `--env`, else the spec's default.

Apart from spec/environments.py so that commands which only talk to a controller (and
read the TOML without pydantic) can name the environment's folder cheaply. Pure.
"""

from __future__ import annotations


def choose_environment(names: list[str], default: str | None,
                       requested: str | None) -> str | None:
    """The environment a command acts on: `--env`, else the default; None for a spec
    without environments. Raises ValueError saying what to pass.

    >>> choose_environment([], None, None) is None
    True
    >>> choose_environment(["prod", "staging"], "staging", None)
    'staging'
    >>> choose_environment(["prod", "staging"], "staging", "prod")
    'prod'
    """
    if requested is None:
        if names and default is None:
            raise ValueError(f"this spec has environments ({', '.join(sorted(names))}) and "
                             "none is the default: pass --env NAME")
        return default
    if requested not in names:
        known = ", ".join(sorted(names)) or "none: add [environments.NAME] to the spec"
        raise ValueError(f"no environment {requested!r} in the spec (known: {known})")
    return requested
