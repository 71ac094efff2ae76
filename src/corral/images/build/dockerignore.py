"""`.dockerignore`: which paths of the build context a Dockerfile build leaves out.

Docker's rules (moby/patternmatcher): `#` comments, `!` exceptions, `*` and `?` within one
path element, `**` across any number of them, a leading `/` ignored, the last matching line
wins, and a pattern matching a folder matches everything in it. `Dockerfile.dockerignore`
beside the Dockerfile takes precedence over the context's `.dockerignore`. Reads that file;
never walks the context (context.py does).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class _Rule:
    pattern: str
    regex: re.Pattern[str]
    exception: bool


class IgnoreRules:
    """The rules of one ignore file; `ignored(path)` takes a context-relative path."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            pattern = _clean(line[1:].strip() if exception else line)
            if pattern:
                self.rules.append(_Rule(pattern, _compile(pattern), exception))
        self.has_exceptions = any(rule.exception for rule in self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def ignored(self, path: str) -> bool:
        """True when the last rule matching `path` (or one of its folders) excludes it."""
        path = _clean(path)
        parents = path.split("/")[:-1]
        verdict = False
        for rule in self.rules:
            hit = bool(rule.regex.match(path)) or any(
                rule.regex.match("/".join(parents[:i + 1])) for i in range(len(parents)))
            if hit:
                verdict = not rule.exception
        return verdict


def read_ignore_file(context: Path, dockerfile: Path) -> IgnoreRules:
    """The rules for a build of `dockerfile` in `context` (empty when there is no file)."""
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"),
                      context / ".dockerignore"):
        if candidate.is_file():
            return IgnoreRules(candidate.read_text().splitlines())
    return IgnoreRules([])


def _clean(pattern: str) -> str:
    cleaned = posixpath.normpath(pattern)
    cleaned = cleaned.lstrip("/")
    return "" if cleaned == "." else cleaned


def _compile(pattern: str) -> re.Pattern[str]:
    """A pattern as a regular expression, translated as moby/patternmatcher does."""
    out, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*" and pattern[i + 1:i + 2] == "*":
            i += 2
            if pattern[i:i + 1] == "/":
                i += 1
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif char == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            out += pattern[i:end + 1]  # a character class, as in filepath.Match
            i = end
        else:
            out += re.escape(char)
        i += 1
    try:
        return re.compile(out + "$")
    except re.error:
        raise ValueError(f".dockerignore pattern {pattern!r} is not valid") from None
