"""The syntax of a Dockerfile, apart from what each instruction means: logical lines
(comments, continuations, parser directives), Docker's variable expansion, `--flag` words,
KEY=VALUE pairs and the exec/shell command forms. Text in, values out: a malformed
instruction is a ValueError, to which dockerfile.py adds the file and line; an unreadable
file or an unsupported parser directive is an ImageError.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ImageError

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}"
                  r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def read_instructions(path: Path) -> list[Instruction]:
    """Logical lines: comments dropped, backslash continuations joined, 1-based lines."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ImageError(f"dockerfile {path}: cannot be read ({exc.strerror})",
                         hint="`dockerfile` is a path relative to the spec's folder") from None
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if number == 1 or (not found and not pending):
            check_directive(path, number, stripped)
        if stripped.startswith("#") or (not stripped and pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        if text:
            keyword, _, args = text.partition(" ")
            found.append(Instruction(start, keyword.upper(), args.strip()))
    if pending.strip():
        keyword, _, args = pending.strip().partition(" ")
        found.append(Instruction(start, keyword.upper(), args.strip()))
    return found


def check_directive(path: Path, number: int, line: str) -> None:
    match = re.match(r"#\s*(escape|syntax)\s*=\s*(\S+)", line, re.IGNORECASE)
    if match and (match.group(1).lower() == "syntax" or match.group(2) != "\\"):
        raise ImageError(f"{path.name}:{number}: the parser directive {line!r} is not "
                         "supported", hint="remove it; corral reads the classic syntax with "
                         "'\\' as the escape character")


def substitute(text: str, values: dict[str, str]) -> str:
    """$VAR, ${VAR}, ${VAR:-default} and ${VAR:+alternative}, as Docker expands them."""
    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        value = values.get(name, "")
        if match.group("op") == ":-":
            return value or match.group("word")
        if match.group("op") == ":+":
            return match.group("word") if value else ""
        return value

    return _VAR.sub(one, text)



def split_flags(words: list[str], allowed: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        if name not in allowed:
            raise ValueError(f"the flag --{name} is not supported (only "
                             f"{', '.join('--' + a for a in allowed) or 'none'})")
        flags[name] = value
    return flags, words


def pairs(args: str, values: dict[str, str], *, legacy: bool) -> dict[str, str]:
    words = shlex.split(args)
    if legacy and words and "=" not in words[0]:
        if len(words) < 2:
            raise ValueError("needs KEY=VALUE or KEY VALUE")
        return {words[0]: substitute(args.split(None, 1)[1].strip(), values)}
    pairs = {}
    for word in words:
        key, has_value, value = word.partition("=")
        if not has_value or not key:
            raise ValueError(f"{word!r} is not KEY=VALUE")
        pairs[key] = substitute(value, values)
    return pairs


def command_form(args: str) -> tuple[str, ...]:
    text = args.strip()
    if text.startswith("["):
        return tuple(json_list(text))
    if not text:
        raise ValueError("needs a command")
    return ("/bin/sh", "-c", text)


def json_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError("the exec form must be a JSON array of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ValueError("the exec form must be a non-empty JSON array of strings")
    return value
