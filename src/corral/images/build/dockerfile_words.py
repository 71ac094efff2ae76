"""Shell-like word splitting for Dockerfile arguments, with or without the quotes.

ENV, LABEL and ARG arguments are split into words keeping their quotes and escapes (they are
removed when the value is expanded); a heredoc name is read both ways to learn whether it was
quoted. Pure text functions; no variable expansion.
"""

from __future__ import annotations


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
