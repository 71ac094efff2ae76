"""Shell-like word splitting for Dockerfile arguments, with or without the quotes.

ENV, LABEL and ARG arguments are split into words keeping their quotes and escapes (they are
removed when the value is expanded); a heredoc name is read both ways to learn whether it was
quoted. Pure text functions; no variable expansion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


def shell_words(text: str, *, raw_quotes: bool, escape: str = "\\",
                keep_escapes: bool = False) -> list[str]:
    """Words split at unquoted whitespace.

    >>> shell_words('a "b c" d\\\\ e', raw_quotes=True, keep_escapes=True)
    ['a', '"b c"', 'd\\\\ e']
    >>> shell_words('a "b c" d\\\\ e', raw_quotes=False)
    ['a', 'b c', 'd e']

    Inside single quotes the escape character is literal; an escape character at the very
    end is dropped. A word made only of quotes ("") is kept as an empty word.
    """
    words: list[str] = []
    chars: list[str] = []
    quote, in_word, position = "", False, 0
    while position < len(text):
        char = text[position]
        position += 1
        if not quote and char.isspace():
            if in_word:
                words.append("".join(chars))
            chars, in_word = [], False
            continue
        in_word = True
        if char in "'\"" and (not quote or char == quote):
            quote = "" if quote else char
            if raw_quotes:
                chars.append(char)
            continue
        if char == escape and quote != "'":
            if position == len(text):
                continue
            if keep_escapes:
                chars.append(char)
            char = text[position]
            position += 1
        chars.append(char)
    if in_word:
        words.append("".join(chars))
    return words


def expand_word(word: str, values: Mapping[str, str], escape: str = "\\") -> str:
    """One word as Docker reads it: quotes removed, escapes applied, variables expanded
    ($NAME, ${NAME}, ${NAME:-default}, ${NAME:+alternative}); nothing inside '…' expands.

    >>> expand_word('"$A b"\\\\$A${B:-x}', {"A": "1"})
    '1 b$Ax'
    """
    out: list[str] = []
    quote, position = "", 0
    while position < len(word):
        char = word[position]
        position += 1
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                out.append(char)
        elif char == '"' or (char == "'" and not quote):
            quote = "" if quote else char
        elif char == escape and position < len(word):
            following = word[position]
            if quote and following not in ('"', escape, "$"):
                out.append(char)  # inside "…" only ", $ and the escape itself are escaped
            out.append(following)
            position += 1
        elif char == "$":
            text, position = _variable(word, position, values, escape)
            out.append(text)
        elif char != escape:
            out.append(char)
    return "".join(out)


def _variable(word: str, position: int, values: Mapping[str, str],
              escape: str) -> tuple[str, int]:
    """The value of the variable that starts at `position` (just after '$'), and where the
    word goes on."""
    if word.startswith("{", position):
        end = _closing_brace(word, position + 1)
        if end < 0:
            raise ValueError(f"{word!r}: missing '}}'")
        inner = word[position + 1:end]
        name = _NAME.match(inner)
        if name is None:
            raise ValueError(f"{word!r}: ${{{inner}}} is not a variable")
        value = values.get(name.group(0))
        rest = inner[name.end():]
        if not rest:
            return value or "", end + 1
        colon = rest.startswith(":")
        kind, alternative = rest[int(colon)], rest[int(colon) + 1:]
        is_set = value is not None and (bool(value) or not colon)
        if kind == "-":
            return (value or "") if is_set else expand_word(alternative, values, escape), end + 1
        if kind == "+":
            return expand_word(alternative, values, escape) if is_set else "", end + 1
        raise ValueError(f"{word!r}: ${{{inner}}} uses an operator corral does not support "
                         "(only :-, :+, - and +)")
    name = _NAME.match(word, position)
    if name is None:
        return "$", position
    return values.get(name.group(0), ""), name.end()


def _closing_brace(word: str, position: int) -> int:
    depth = 1
    while position < len(word):
        if word[position] == "{":
            depth += 1
        elif word[position] == "}":
            depth -= 1
            if depth == 0:
                return position
        position += 1
    return -1


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
