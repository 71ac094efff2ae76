"""Find where a key path sits in TOML text, so validation errors can name line and column.

tomllib reports positions only for syntax errors; this scans the text once and maps each
`a.b.c` key path (tables, dotted keys and inline tables on one line) to its (line, column).
It is a locator, not a parser: a key it cannot place simply has no position. It also
names the closest known key (or service) for a misspelled one: `did_you_mean`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\".]+)\s*=")
_INLINE_KEY = re.compile(r"([A-Za-z0-9_\-]+)\s*=")


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"') for part in dotted.split("."))


def locate_keys(text: str) -> dict[tuple[str, ...], tuple[int, int]]:
    """Map key paths to 1-based (line, column).

    >>> spots = locate_keys('[services.web]\\nhealth = { path = "/h" }\\n')
    >>> spots[("services", "web", "health", "path")]
    (2, 12)
    """
    spots: dict[tuple[str, ...], tuple[int, int]] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split(header.group(1))
            spots.setdefault(table, (number, line.index("[") + 1))
            continue
        key = _KEY.match(line)
        if not key:
            continue
        path = table + _split(key.group(1))
        spots.setdefault(path, (number, key.start(1) + 1))
        if "{" in line[key.end():]:
            _locate_inline(line, key.end(), path, number, spots)
    return spots


def _locate_inline(line: str, start: int, path: tuple[str, ...], number: int,
                   spots: dict[tuple[str, ...], tuple[int, int]]) -> None:
    """Place the keys of inline tables on one line, also inside arrays (`copy = [{ src =
    …}, {…}]` gives `copy.0.src`, `copy.1.src`)."""
    # One entry per open bracket: its key path, and for an array a one-item list counting
    # the items seen so far (None for a table).
    stack: list[tuple[tuple[str, ...], list[int] | None]] = []
    pending: tuple[str, ...] = path
    position = start
    while position < len(line):
        char = line[position]
        inner, items = stack[-1] if stack else (path, None)
        if char in "{[":
            opened = pending
            if items is not None:  # an item of an array: copy.0
                opened = (*inner, str(items[0]))
                spots.setdefault(opened, (number, position + 1))
            stack.append((opened, None if char == "{" else [0]))
        elif char in "}]":
            if stack:
                stack.pop()
            if not stack:
                return
        elif char == "," and items is not None:
            items[0] += 1
        elif char in "\"'":
            end = line.find(char, position + 1)
            position = len(line) if end < 0 else end
        elif char == "#" and not stack:
            return
        elif stack and items is None:
            match = _INLINE_KEY.match(line, position)
            if match and line[position - 1] in " ,{":
                pending = (*inner, match.group(1))
                spots.setdefault(pending, (number, position + 1))
                position = match.end()
                continue
        position += 1


def nearest_spot(spots: dict[tuple[str, ...], tuple[int, int]],
                 path: tuple[str, ...]) -> tuple[int, int] | None:
    """The position of `path`, or of its closest located parent."""
    for cut in range(len(path), 0, -1):
        spot = spots.get(path[:cut])
        if spot:
            return spot
    return None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """A hint naming the closest known names, or listing them all.

    >>> did_you_mean("wbe", ["web", "worker"])
    'did you mean web?'
    >>> did_you_mean("zzz", ["web", "worker"])
    'known: web, worker'
    """
    names = sorted(set(known))
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(close)}?"
    return f"known: {', '.join(names)}" if names else "none is known yet"
